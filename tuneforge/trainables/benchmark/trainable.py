"""The ``benchmark`` trainable: one evaluation of a standard test function per trial.

Config: ``function`` (a name in :data:`FUNCTIONS`); searched params ``x1`` .. ``xd`` in the
function's domain (floats, ints or categorical numbers alike). Reports ``value`` (to minimise)
and ``regret`` (value minus the known minimum), both in the function's own units (plain numbers,
no time). One evaluation takes tens of microseconds (one NumPy call; 13-40 us on a 2-core CI
machine), so that comparing searchers compares the searchers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuneforge._checks import is_number
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import CategoricalParam, SearchSpace
from tuneforge.trainables._session import report
from tuneforge.trainables.benchmark.functions import FUNCTIONS, TestFunction

__all__ = ["check", "metrics", "prepare", "train_benchmark"]


_CONFIG_KEYS = ("function",)
"""The only fixed setting; every other value of a trial's config is a searched x_i."""


def _function(config: Mapping[str, Any]) -> TestFunction:
    name = config.get("function")
    if not isinstance(name, str) or name not in FUNCTIONS:
        raise ConfigError(f"config.function: {name!r} is not a benchmark function; "
                          f"valid: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name]


def train_benchmark(config: dict[str, Any]) -> None:
    """Evaluate the function at (x1, ..., xd) and report value and regret once."""
    function = _function(config)
    x = np.array([[float(config[f"x{i + 1}"]) for i in range(function.dims)]])
    value = float(function.evaluate(x)[0])
    report({"value": value, "regret": value - function.minimum})


def _values(param: Any) -> list[float]:
    """The extreme values of a searched x_i (every choice of a categorical one)."""
    if not isinstance(param, CategoricalParam):
        return [param.low, param.high]
    for choice in param.choices:
        if not is_number(choice, finite=False):
            raise ConfigError(f"params.{param.name}: choices: {choice!r} is not a number; a benchmark "
                              "function takes numbers only")
    return list(param.choices)


def check(space: SearchSpace) -> None:
    """The function exists, the config has no other key, the params are exactly x1..xd and
    stay inside its domain; ConfigError naming the first problem."""
    unknown = sorted(str(key) for key in space.config if key not in _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"config.{unknown[0]}: not a setting of trainable 'benchmark'; valid: "
                          f"{', '.join(_CONFIG_KEYS)} (searched params go under params: x1, x2, ...)")
    function = _function(space.config)
    expected = tuple(f"x{i + 1}" for i in range(function.dims))
    if space.param_names != expected:
        raise ConfigError(f"params: {function.name} takes {', '.join(expected)}; "
                          f"got {', '.join(space.param_names)}")
    for param, (low, high) in zip(space.params, function.bounds, strict=True):
        if not all(low <= v <= high for v in _values(param)):
            raise ConfigError(f"params.{param.name}: outside {function.name}'s domain [{low}, {high}]")


def prepare(space: SearchSpace) -> dict[str, Any]:
    """:func:`check`, then the config as is: nothing to fill in."""
    check(space)
    return dict(space.config)


def metrics(config: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"value", "regret"})
