"""Checks of config values, defined once: what counts as an integer, a number, a flag.

A bool is never an integer or a number here, though Python's ``True`` is an ``int``: ``dropout:
true`` in a space file is a slip, not a rate of 1. A number is an int or a finite float.

The ``check_*`` functions raise :class:`~tuneforge.errors.ConfigError` with one message,
``<name>: <value!r> is not allowed; it must <rule>``::

    check_int("n_critic", 0, minimum=1)   # n_critic: 0 is not allowed; it must be a positive integer
    check_number("beta1", 1.0, at_least=0, below=1)   # ...; it must satisfy 0 <= beta1 < 1

The ``is_*`` predicates serve the places whose messages read otherwise (a space file's
``<where>: <key>: expected ..., got ...``) or that only filter values.

This module imports nothing but the standard library and :mod:`tuneforge.errors`, so that every
layer (search spaces, trainables, platform, dashboards) can import it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["check_bool", "check_int", "check_number", "check_positive_ints", "did_you_mean", "is_int",
           "is_number", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """"; did you mean 'X'?" with the choice closest to a mistyped ``value`` (difflib's ratio of
    at least 0.6), or "" where none is close: the tail of a refusal's one line."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def is_int(value: Any, minimum: int | None = None) -> bool:
    """An ``int`` that is not a ``bool``, and at least ``minimum`` when one is given."""
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def is_number(value: Any, *, finite: bool = True) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``; finite unless ``finite`` is False (an int
    always is: ``math.isfinite`` would overflow on one of 400 digits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not finite or isinstance(value, int) or math.isfinite(value)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` if it is an integer of at least ``minimum`` (any integer when None), else
    ConfigError: "it must be a positive integer" (minimum 1), "an integer >= 2", "an integer"."""
    if not is_int(value, minimum):
        rule = ("be an integer" if minimum is None else "be a positive integer" if minimum == 1
                else f"be an integer >= {minimum}")
        raise _refused(name, value, rule)
    return value


def check_positive_ints(config: Any, names: Iterable[str]) -> None:
    """:func:`check_int` with minimum 1 on each of ``names``, attributes of ``config`` (a model's
    frozen dataclass); the first bad one is named."""
    for name in names:
        check_int(name, getattr(config, name), minimum=1)


def check_number(name: str, value: Any, *, above: float | None = None, at_least: float | None = None,
                 below: float | None = None) -> float:
    """``value`` if it is a finite number within the bounds given (``above``: > it, ``at_least``:
    >= it, ``below``: < it), else ConfigError: "it must be a number > 0" ("a finite number > 0"
    for inf or nan), "a number >= 0", "satisfy 0 <= dropout < 1"."""
    assert above is None or at_least is None, "give one lower bound, above or at_least"
    is_allowed = (is_number(value) and (above is None or value > above)
                  and (at_least is None or value >= at_least) and (below is None or value < below))
    if not is_allowed:
        noun = "a finite number" if isinstance(value, float) and not math.isfinite(value) else "a number"
        raise _refused(name, value, _number_rule(name, noun, above, at_least, below))
    return value


def _number_rule(name: str, noun: str, above: float | None, at_least: float | None,
                 below: float | None) -> str:
    lower = [(op, bound) for op, bound in (("<", above), ("<=", at_least)) if bound is not None]
    if lower and below is not None:
        [(op, bound)] = lower
        return f"satisfy {bound:g} {op} {name} < {below:g}"
    bounds = [(">", above), (">=", at_least), ("<", below)]
    return f"be {noun}" + "".join(f" {op} {bound:g}" for op, bound in bounds if bound is not None)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0 or 1), else ConfigError."""
    if not isinstance(value, bool):
        raise _refused(name, value, "be true or false")
    return value


def _refused(name: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{name}: {value!r} is not allowed; it must {rule}")


def parse_duration(name: str, text: Any) -> float:
    """Seconds in ``90s``, ``45m``, ``2h`` or ``600`` (seconds); ConfigError with one line,
    ``<name>: expected a duration like 90s, 45m or 2h, got '10q'``, for anything else or a
    duration that is not positive."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{name}: expected a duration above 0 like 90s, 45m or 2h, got {text!r}")
    return seconds
