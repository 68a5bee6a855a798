"""Starting points: the configurations a search evaluates before its algorithm's own.

A search starts from known-good configurations, as SMAC does with its default config, Optuna with
``enqueue_trial`` and Ray Tune with ``points_to_evaluate``: with a budget of a few trials, the
family's default config is a better first trial than a corner of the space. ``--start-from``:

- ``defaults``: the family's default config (:attr:`Trainable.defaults`), then the space's own
  ``start_from:`` list. The default for a family that reports every epoch (vit, the GANs, ...).
- ``space``: the space's ``start_from:`` list only. The default for the others.
- ``none``: no starting points.

Each point holds a value for every searched param. A param the family's defaults leave outside
the space (a learning rate below the searched range) is moved to the nearest value in it, with
one warning; a param with no default (a user's function, ``gamma='scale'``) takes the space's
centre. A ``start_from:`` entry leaves out what it takes from that same default point. Every
algorithm evaluates the points first and counts them in ``--trials``: the searchers' setup
(:mod:`tuneforge.platform.searchers`) receives them in :class:`~.searchers.Budget`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import SearchSpace
from tuneforge.trainables._base import Trainable

__all__ = ["START_FROM", "Gain", "StartingPoints", "plan_starting_points", "start_scores"]

START_FROM = ("defaults", "space", "none")
DEFAULT_CONFIG = "the default config"


@dataclass(frozen=True)
class StartingPoints:
    """The points a search evaluates first, in order, each named for the summary."""

    points: tuple[dict[str, Any], ...] = ()
    labels: tuple[str, ...] = ()
    """``the default config``, or ``starting point N`` (N counts the space's ``start_from:``)."""
    warning: str | None = None
    """One line, where the family's defaults had to be moved into the space."""

    def __len__(self) -> int:
        return len(self.points)

    def without(self, scored: Sequence[Mapping[str, Any]]) -> StartingPoints:
        """These points less those in ``scored`` (an earlier search evaluated them)."""
        kept = [(point, label) for point, label in zip(self.points, self.labels, strict=True)
                if point not in scored]
        return StartingPoints(tuple(p for p, _ in kept), tuple(label for _, label in kept), self.warning)


def default_start_from(trainable: Trainable) -> str:
    """``defaults`` for a family that reports every epoch and has defaults, else ``space``."""
    return "defaults" if trainable.iterative is True and trainable.defaults is not None else "space"


def plan_starting_points(choice: str | None, space: SearchSpace, trainable: Trainable) -> StartingPoints:
    """The starting points of ``--start-from choice`` (None: :func:`default_start_from`);
    ConfigError with one line for an unknown choice, or ``defaults`` for a family without any."""
    choice = choice or default_start_from(trainable)
    if choice not in START_FROM:
        raise ConfigError(f"--start-from: expected one of {', '.join(START_FROM)}, got {choice!r}")
    if choice == "none":
        return StartingPoints()
    if choice == "defaults" and trainable.defaults is None:
        raise ConfigError(f"--start-from defaults: trainable {trainable.name!r} has no default config; "
                          "list starting points under start_from: in the space, or use --start-from none")
    base, moved = _default_point(space, trainable)
    points, labels = [], []
    if choice == "defaults":
        points.append(base)
        labels.append(DEFAULT_CONFIG)
    for i, point in enumerate(space.start_from, start=1):
        full = {**base, **point}
        if full not in points:
            points.append(full)
            labels.append(f"starting point {i}")
    warning = None
    if moved and choice == "defaults":
        warning = (f"{space.name}: the default config lies outside the space for "
                   f"{', '.join(moved)}; the first trial starts from the nearest values instead")
    return StartingPoints(tuple(points), tuple(labels), warning)


def _default_point(space: SearchSpace, trainable: Trainable) -> tuple[dict[str, Any], list[str]]:
    """A value for every searched param from the family's defaults, moved into the space where
    needed (the space's centre where there is no default); the moves, described."""
    from tuneforge.platform.progress import format_value

    defaults: Mapping[str, Any] = trainable.defaults(space.config) if trainable.defaults else {}
    centre = space.decode(np.full(space.n_dims, 0.5))
    point, moved = {}, []
    for param in space.params:
        default = defaults.get(param.name)
        value = param.nearest(default) if param.name in defaults else None
        if value is None:
            value = centre[param.name]
            if param.name in defaults:
                moved.append(f"{param.name} ({default!r}: the space's centre {format_value(value)})")
        elif not param.contains(default):
            moved.append(f"{param.name} ({format_value(default)} -> {format_value(value)})")
        point[param.name] = value
    return point, moved


@dataclass(frozen=True)
class Gain:
    """The best trial against the best starting point: what the search found beyond it."""

    metric: str
    mode: str
    best: float
    start: float
    start_label: str
    best_trial: str
    """The best trial's name in the search (``trial 14``)."""
    after_s: float
    """Seconds from the search's first trial's start to the best trial's end."""

    @property
    def gain(self) -> float:
        """``best - start`` in the metric's better direction (positive: better)."""
        return self.best - self.start if self.mode == "max" else self.start - self.best

    def text(self) -> str:
        """``best val_accuracy 0.9012, the default config 0.8886 (+1.26 points), found by trial 14
        after 31 min``: points for a maximised metric in [0, 1] (accuracy), else the difference."""
        from tuneforge.platform.progress import format_value

        if self.mode == "max" and 0 <= self.start <= 1 and 0 <= self.best <= 1:
            change = f"{100 * self.gain:+.2f} points"
        else:
            direction = "better" if self.gain > 0 else "worse"
            change = f"{abs(self.gain):.4g} {direction}" if self.gain else "no better"
        return (f"best {self.metric} {format_value(self.best)}, {self.start_label} "
                f"{format_value(self.start)} ({change}), found by {self.best_trial} after "
                f"{_minutes(self.after_s)}")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def start_scores(start: StartingPoints, scored: Sequence[tuple[Mapping[str, Any], float]]
                 ) -> list[tuple[str, float]]:
    """Each starting point's label and score, where ``scored`` (searched values and score, in
    trial order: this search's, then a warm start's) holds it (its first match)."""
    found = []
    for point, label in zip(start.points, start.labels, strict=True):
        score = next((value for values, value in scored if _same_point(point, values)), None)
        if score is not None:
            found.append((label, score))
    return found


def _same_point(point: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether a trial's ``values`` are the starting ``point`` (floats within rounding)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
            return numbers and math.isclose(a, b, rel_tol=1e-9)
        return type(a) is type(b) and a == b

    return all(name in values and same(value, values[name]) for name, value in point.items())
