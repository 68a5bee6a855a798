"""``tuneforge compare``'s picture, drawn with matplotlib and returned as PNG bytes (the report's
own are interactive: :mod:`._figures`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["comparison_png", "is_wide"]

_DPI = 100
_WIDE = 100.0  # max / min of positive values from which a y axis goes logarithmic


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=_DPI)


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def is_wide(values: np.ndarray) -> bool:
    """Whether the finite values are positive and span two orders of magnitude or more (a loss, a
    test function's value), so that their axis goes logarithmic: on a linear one, the early, bad
    trials flatten the rest."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() > 0 and finite.max() >= _WIDE * finite.min())


def _log_scale_if_wide(axes: Any, values: np.ndarray) -> None:
    if is_wide(values):
        axes.set_yscale("log")


def _whole_trials(axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def comparison_png(curves: Mapping[str, np.ndarray], metric: str) -> bytes:
    """Best-so-far curves per algorithm: the mean over its searches and the min-max band.

    ``curves`` maps an algorithm to an array of shape (n_searches, n_trials), NaN-padded.
    """
    figure, axes = _figure(7, 3.6)
    for index, (algo, runs) in enumerate(sorted(curves.items())):
        order = np.arange(1, runs.shape[1] + 1)
        mean = np.nanmean(runs, axis=0)
        axes.plot(order, mean, color=f"C{index}", label=f"{algo} (n={runs.shape[0]})")
        if runs.shape[0] > 1:
            axes.fill_between(order, np.nanmin(runs, axis=0), np.nanmax(runs, axis=0),
                              color=f"C{index}", alpha=0.15)
    _log_scale_if_wide(axes, np.concatenate([runs.ravel() for runs in curves.values()]))
    _whole_trials(axes)
    axes.set(xlabel="trial", ylabel=f"best {metric} so far", title="Algorithms compared: best so far")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)
