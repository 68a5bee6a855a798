"""The search-space model: one declaration that every search algorithm reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.search_spaces._params import Param

__all__ = ["SearchSpace"]


@dataclass(frozen=True)
class SearchSpace:
    """What to search: a trainable, the metric it optimises, fixed settings and searched params.

    A trial's config is ``config`` (handed to the trainable as is) updated with one value per
    entry of ``params``. ``encode``/``decode`` map the searched values to the unit cube
    ``[0, 1]^n_dims`` and back; ``decode(encode(values)) == values`` for every valid point.
    """

    name: str
    trainable: str
    metric: str
    mode: str
    params: tuple[Param, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: Path | None = None
    max_epochs: int | None = None
    """The longest a trial runs, in training iterations (epochs), for a scheduler
    (``--scheduler``); None: the config's ``epochs``."""
    grace_period: int | None = None
    """Iterations every trial runs before a scheduler may stop it; None: 1."""
    start_from: tuple[Mapping[str, Any], ...] = ()
    """Configurations to evaluate first (``start_from:``), each of searched values inside the
    space; a param one leaves out takes the family's default (see
    :mod:`tuneforge.platform.starting_points`)."""
    trial_minutes: float | None = None
    """What one trial of the family's default config costs, in minutes on 2 CPUs (measured, for
    ``tuneforge show``); None: not known."""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    @property
    def n_dims(self) -> int:
        """Width of the unit-cube encoding (a categorical takes one column per choice)."""
        return sum(param.width for param in self.params)

    def columns(self) -> Iterator[tuple[Param, slice]]:
        """Each param with the slice of unit-cube columns that encodes it."""
        start = 0
        for param in self.params:
            yield param, slice(start, start + param.width)
            start += param.width

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """Searched values (extra keys ignored) -> a point of shape ``(n_dims,)`` in [0, 1]."""
        missing = [name for name in self.param_names if name not in values]
        if missing:
            raise ValueError(f"cannot encode: no value for {missing}")
        point = [u for param in self.params for u in param.encode(values[param.name])]
        return np.asarray(point, dtype=float)

    def decode(self, point: np.ndarray) -> dict[str, Any]:
        """A point of shape ``(n_dims,)`` (clipped to [0, 1]) -> searched values, native types."""
        point = np.asarray(point, dtype=float)
        assert point.shape == (self.n_dims,), f"expected shape ({self.n_dims},), got {point.shape}"
        return {param.name: param.decode(point[cols]) for param, cols in self.columns()}

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Points [m, n_dims] moved to the nearest valid encodings, i.e. ``encode(decode(x))``
        row by row (ints and steps rounded, categoricals one-hot, all in [0, 1]), vectorised."""
        points = np.asarray(points, dtype=float)
        return np.hstack([param.snap(points[:, cols]) for param, cols in self.columns()])

    def neighbours(self, point: np.ndarray) -> np.ndarray:
        """The encodings [k, n_dims] of the points one discrete move away from ``point``: one
        int or stepped float one step up or down, or one categorical set to another choice."""
        values = self.decode(point)
        moved = [{**values, param.name: other} for param in self.params
                 for other in param.neighbours(values[param.name])]
        return np.array([self.encode(m) for m in moved]).reshape(len(moved), self.n_dims)

    def contains(self, values: Mapping[str, Any]) -> bool:
        """Whether ``values`` holds a valid value for every searched param."""
        return all(p.name in values and p.contains(values[p.name]) for p in self.params)
