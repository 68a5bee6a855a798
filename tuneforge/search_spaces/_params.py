"""The three kinds of searched parameter, and how each maps to the unit cube.

Glossary
    v   a parameter value in the user's units (int, float or a categorical choice)
    u   its coordinates in the unit cube, a float array of shape (width,)

Bounds are inclusive for every kind. The unit-cube encoding follows Optuna's
``optuna/_gp/search_space.py``: numbers are scaled linearly (or in log space) to [0, 1];
ints, and floats with a ``step``, widen their bounds by half a step so that every value owns an
equal share of [0, 1]; a categorical with k choices takes k one-hot coordinates and decodes to
its largest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from tuneforge._checks import is_int, is_number

__all__ = ["CategoricalParam", "FloatParam", "IntParam", "Param"]



def _to_unit(value: float, low: float, high: float, log: bool) -> float:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low)


def _from_unit(u: float, low: float, high: float, log: bool) -> float:
    u = min(max(float(u), 0.0), 1.0)
    if log:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def _to_unit_array(values: np.ndarray, low: float, high: float, log: bool) -> np.ndarray:
    if log:
        values, low, high = np.log(values), math.log(low), math.log(high)
    return (values - low) / (high - low)


def _from_unit_array(u: np.ndarray, low: float, high: float, log: bool) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    if log:
        return np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def _snap_array(raw: np.ndarray, low: float, high: float, step: float) -> np.ndarray:
    """Vectorised :func:`_snap`."""
    k = np.clip(np.round((raw - low) / step), 0, math.floor((high - low) / step + 1e-9))
    return np.minimum(low + k * step, high)


def _snap(raw: float, low: float, high: float, step: float) -> float:
    """The value of ``low + k * step`` (k an integer) nearest to ``raw``, kept in [low, high]."""
    n_steps = math.floor((high - low) / step + 1e-9)
    k = min(max(round((raw - low) / step), 0), n_steps)
    return min(low + k * step, high)  # low + k * step can pass high by an ulp


def _decimals(*numbers: float) -> int:
    """Decimal places needed to write every one of ``numbers`` exactly as its repr does."""
    return max(max(0, -Decimal(repr(x)).normalize().as_tuple().exponent) for x in numbers)


def n_values(low: float, high: float, step: float) -> int:
    """How many values ``low, low + step, ..., <= high`` there are."""
    return math.floor((high - low) / step + 1e-9) + 1


@dataclass(frozen=True)
class FloatParam:
    """A real number in [low, high]; log-scaled if ``log``, or on the grid ``low + k * step``.

    ``grid`` lists the values a grid search tries; without it, grid search spaces
    ``--grid-points`` values over the range.
    """

    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    grid: tuple[float, ...] | None = None

    width = 1

    def contains(self, value: Any) -> bool:
        if not is_number(value, finite=False):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-6

    def nearest(self, value: Any) -> float | None:
        """The valid value nearest to ``value`` (clipped to the bounds, on the step); None for
        a value that is not a finite number."""
        if not is_number(value):
            return None
        clipped = min(max(float(value), self.low), self.high)
        if self.step is None or self.contains(clipped):
            return clipped
        return self.decode(np.array(self.encode(clipped)))

    def encode(self, value: float) -> list[float]:
        if self.step is None:
            return [_to_unit(value, self.low, self.high, self.log)]
        half = 0.5 * self.step
        return [_to_unit(value, self.low - half, self.high + half, False)]

    def decode(self, u: np.ndarray) -> float:
        if self.step is None:
            return float(min(max(_from_unit(u[0], self.low, self.high, self.log), self.low), self.high))
        half = 0.5 * self.step
        raw = _from_unit(u[0], self.low - half, self.high + half, False)
        value = _snap(raw, self.low, self.high, self.step)
        # Rounded to the decimals of low and step: 0.1 + 3 * 0.1 comes back as 0.4. The steps'
        # count tolerates 1e-9 of rounding, so the last step can pass high by as much: clamp.
        return min(max(round(value, _decimals(self.low, self.step)), self.low), self.high)

    def neighbours(self, value: float) -> list[float]:
        """The values one step away (none when the float is continuous)."""
        if self.step is None:
            return []
        k = round((value - self.low) / self.step)
        steps = (self.low + j * self.step for j in (k - 1, k + 1))
        return [round(v, _decimals(self.low, self.step)) for v in steps if self.low <= v <= self.high + 1e-9]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates [m, 1] moved onto valid encodings (clipped; on the step)."""
        if self.step is None:
            return np.clip(u, 0.0, 1.0)
        half = 0.5 * self.step
        low, high = self.low - half, self.high + half
        values = _snap_array(_from_unit_array(u, low, high, False), self.low, self.high, self.step)
        return _to_unit_array(values, low, high, False)

    def describe(self) -> str:
        scale = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"float [{self.low:g}, {self.high:g}]{scale}"


@dataclass(frozen=True)
class IntParam:
    """An integer in [low, high] on the grid ``low + k * step``; log-scaled if ``log``.

    Grid search enumerates it (``--grid-points`` evenly spaced values where it has more),
    or tries exactly ``grid`` when given.
    """

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    grid: tuple[int, ...] | None = None

    width = 1

    def _unit_bounds(self) -> tuple[float, float]:
        half = 0.5 * self.step
        return self.low - half, self.high + half

    def contains(self, value: Any) -> bool:
        if not is_int(value):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def nearest(self, value: Any) -> int | None:
        """The valid value nearest to ``value`` (clipped to the bounds, rounded onto the step);
        None for a value that is not a finite number."""
        if not is_number(value):
            return None
        return self.decode(np.array(self.encode(min(max(value, self.low), self.high))))

    def encode(self, value: int) -> list[float]:
        return [_to_unit(value, *self._unit_bounds(), self.log)]

    def decode(self, u: np.ndarray) -> int:
        raw = _from_unit(u[0], *self._unit_bounds(), self.log)
        return int(_snap(raw, self.low, self.high, self.step))

    def neighbours(self, value: int) -> list[int]:
        """The values one step away, inside the bounds."""
        return [v for v in (value - self.step, value + self.step) if self.low <= v <= self.high]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates [m, 1] moved onto the encodings of ints (``encode(decode(u))``)."""
        bounds = self._unit_bounds()
        values = _snap_array(_from_unit_array(u, *bounds, self.log), self.low, self.high, self.step)
        return _to_unit_array(values, *bounds, self.log)

    def describe(self) -> str:
        scale = " log" if self.log else (f" step {self.step}" if self.step != 1 else "")
        return f"int   [{self.low}, {self.high}]{scale}"


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type, so that ``True`` is not taken for choice ``1``."""
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class CategoricalParam:
    """One of ``choices`` (any YAML scalars, ``null`` included), one-hot in the unit cube."""

    name: str
    choices: tuple[Any, ...]

    @property
    def width(self) -> int:
        return len(self.choices)

    def index(self, value: Any) -> int:
        for i, choice in enumerate(self.choices):
            if _same(choice, value):
                return i
        raise ValueError(f"{self.name}: {value!r} is not one of {list(self.choices)}")

    def contains(self, value: Any) -> bool:
        return any(_same(choice, value) for choice in self.choices)

    def nearest(self, value: Any) -> Any | None:
        """``value`` if it is a choice, else the numeric choice nearest to a numeric ``value``;
        None when there is no such choice."""
        if self.contains(value):
            return value
        numbers = [c for c in self.choices if is_number(c)]
        if not is_number(value) or not numbers:
            return None
        return min(numbers, key=lambda choice: abs(choice - value))

    def encode(self, value: Any) -> list[float]:
        one_hot = [0.0] * self.width
        one_hot[self.index(value)] = 1.0
        return one_hot

    def decode(self, u: np.ndarray) -> Any:
        return self.choices[int(np.argmax(u))]

    def neighbours(self, value: Any) -> list[Any]:
        """Every other choice."""
        return [choice for choice in self.choices if not _same(choice, value)]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates [m, k] to the one-hot of each row's largest."""
        return np.eye(self.width)[np.argmax(u, axis=1)]

    def describe(self) -> str:
        return f"categorical {list(self.choices)}"


Param = FloatParam | IntParam | CategoricalParam

