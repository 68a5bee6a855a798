"""What the GP fits when a scheduler stopped some trials early: values on one common budget.

A scheduler (ASHA, HyperBand, median stopping) stops trials after a few epochs, and Tune tells
the searcher each stopped trial's last result as if it were final. An epoch-1 value is not a
full evaluation: early in training a loss is high and an accuracy low for every config, and for
some metrics (a validation loss that rises as a model over-fits) early values are even *better*
than final ones. Fitting such values beside final ones mixes two scales.

The rule (:func:`comparable_values`): every trial is valued at one *rung*, the highest number of
training iterations that at least ``min_trials`` trials reached. A trial that reached the rung
counts with its value there; a trial stopped before it counts as the worst of those values, since
a scheduler stops only trials that were behind others at the point where it stopped them (the
same way a failed trial counts as the worst result seen). Without a scheduler every trial runs
equally long and the rule gives each its final value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_TRIALS_AT_RUNG", "comparable_values"]

MIN_TRIALS_AT_RUNG = 3
"""The rung is the highest iteration at least this many trials reached."""


def comparable_values(curves: Sequence[Sequence[Sequence[float]]],
                      min_trials: int = MIN_TRIALS_AT_RUNG) -> np.ndarray:
    """One value per trial on a common budget, from each trial's ``[[iteration, value], ...]``
    (ascending iterations; larger values better). A trial's last pair is its final result."""
    lasts = np.array([curve[-1][0] for curve in curves], dtype=float)
    finals = np.array([curve[-1][1] for curve in curves], dtype=float)
    if len(curves) == 0 or np.all(lasts == lasts[0]):
        return finals
    reached = np.sort(lasts)[::-1]
    rung = reached[min(min_trials, len(reached)) - 1]  # at least min_trials trials got this far
    values = np.array([_value_at(curve, rung) for curve in curves])
    survived = lasts >= rung
    values[~survived] = values[survived].min()
    return values


def _value_at(curve: Sequence[Sequence[float]], iteration: float) -> float:
    """The trial's value at ``iteration``: its latest result at or before it."""
    value = curve[0][1]
    for step, step_value in curve:
        if step > iteration:
            break
        value = step_value
    return float(value)
