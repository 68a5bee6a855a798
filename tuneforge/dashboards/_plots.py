"""The report's pictures, drawn with matplotlib and returned as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneforge.dashboards._data import SearchData, best_so_far
from tuneforge.search_spaces import CategoricalParam

__all__ = ["comparison_png", "effects_png", "history_png", "learning_curves_png", "parallel_png"]

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


def _log_scale_if_wide(axes: Any, values: np.ndarray) -> None:
    """A log y axis when the values are positive and span two orders of magnitude or more (a
    loss, a test function's value): on a linear one, the early, bad trials flatten the rest."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() >= _WIDE * finite.min():
        axes.set_yscale("log")


def _whole_trials(axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curves_png(search: SearchData) -> bytes:
    """The metric at each epoch of every per-epoch trial; a trial stopped early by a scheduler
    ends in a cross where it stopped; the best trial is drawn thick."""
    best = search.best()
    figure, axes = _figure(7, 3.4)
    for trial in search.trials:
        if not trial.curve:
            continue
        epochs = np.arange(1, len(trial.curve) + 1)
        is_best = best is not None and trial.run_id == best.run_id
        axes.plot(epochs, trial.curve, lw=2.2 if is_best else 0.9, alpha=1.0 if is_best else 0.55,
                  color="C3" if is_best else None, label=f"best: {trial.name}" if is_best else None)
        if trial.stopped:
            axes.scatter(epochs[-1:], trial.curve[-1:], marker="x", color="k", s=30, zorder=3)
    if any(trial.stopped for trial in search.trials):
        axes.scatter([], [], marker="x", color="k", label="stopped early")
    _log_scale_if_wide(axes, np.concatenate([np.asarray(t.curve) for t in search.trials if t.curve]))
    _whole_trials(axes)
    axes.set_xlabel("epoch")
    axes.set_ylabel(search.metric)
    axes.set_title(f"Learning curves ({search.mode} {search.metric})")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)


def history_png(search: SearchData) -> bytes:
    """Each trial's metric in start order, and the best so far."""
    values = search.values()
    order = np.arange(1, len(values) + 1)
    figure, axes = _figure(7, 3.2)
    axes.scatter(order, values, s=18, alpha=0.7, label="trial")
    axes.step(order, best_so_far(values, search.mode), where="post", color="C3", label="best so far")
    failed = ~np.isfinite(values)
    if failed.any():
        axes.scatter(order[failed], np.full(failed.sum(), np.nanmin(values) if np.isfinite(values).any()
                                            else 0.0), marker="x", color="grey", label="no result")
    _log_scale_if_wide(axes, values)
    _whole_trials(axes)
    axes.set(xlabel="trial (in start order)", ylabel=search.metric,
             title=f"Optimisation history ({search.algo}, {search.mode} {search.metric})")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)


def _unit(search: SearchData, name: str, values: Sequence[Any]) -> np.ndarray:
    """A param's values on [0, 1]: the space's own scale (log where log), choices evenly."""
    param = next((p for p in search.space.params if p.name == name), None) if search.space else None
    if isinstance(param, CategoricalParam):
        return np.array([param.index(v) / max(param.width - 1, 1) if param.contains(v) else np.nan
                         for v in values])
    if param is not None:
        return np.array([param.encode(v)[0] if param.contains(v) else np.nan for v in values])
    numbers = np.array([v if isinstance(v, (int, float)) else np.nan for v in values], dtype=float)
    span = np.nanmax(numbers) - np.nanmin(numbers) if np.isfinite(numbers).any() else 0
    return (numbers - np.nanmin(numbers)) / span if span else np.full(len(numbers), 0.5)


def parallel_png(search: SearchData) -> bytes:
    """Parallel coordinates: one line per scored trial across the params, coloured by metric."""
    import matplotlib.pyplot as plt

    trials = search.ranked()[::-1]  # best drawn last, on top
    names = list(search.space.param_names if search.space else trials[0].params)
    columns = np.column_stack([_unit(search, n, [t.params.get(n) for t in trials]) for n in names])
    scores = np.array([t.metrics[search.metric] for t in trials])
    figure, axes = _figure(max(6.0, 1.4 * len(names) + 2), 3.6)
    colours = plt.get_cmap("viridis" if search.mode == "max" else "viridis_r")
    low, high = scores.min(), scores.max()
    for row, score in zip(columns, scores, strict=True):
        shade = (score - low) / (high - low) if high > low else 1.0
        axes.plot(range(len(names)), row, color=colours(shade), alpha=0.6, linewidth=1.2)
    axes.plot(range(len(names)), columns[-1], color="C3", linewidth=2.5, label="best")
    axes.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axes.set(ylim=(-0.05, 1.05), ylabel="position in range (low to high)",
             title=f"Parallel coordinates: params vs {search.metric}")
    mappable = plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(low, high))
    figure.colorbar(mappable, ax=axes, label=search.metric)
    axes.legend(loc="upper right", fontsize=8)
    return _png(figure)


def effects_png(search: SearchData, importances: Mapping[str, float]) -> bytes:
    """Per param: the metric against its value (a marginal view), titled with its importance."""
    import matplotlib.pyplot as plt

    trials = search.ranked()
    names = list(search.space.param_names if search.space else trials[0].params)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), dpi=_DPI, squeeze=False)
    params = {p.name: p for p in search.space.params} if search.space else {}
    scores = [t.metrics[search.metric] for t in trials]
    for axes, name in zip(grid.flat, names, strict=False):
        values = [t.params.get(name) for t in trials]
        param = params.get(name)
        if isinstance(param, CategoricalParam) or not all(isinstance(v, (int, float)) for v in values):
            labels = [str(c) for c in param.choices] if param else sorted({str(v) for v in values})
            positions = [labels.index(str(v)) for v in values]
            axes.scatter(positions, scores, s=16, alpha=0.7)
            axes.set_xticks(range(len(labels)), labels, rotation=15)
        else:
            axes.scatter(values, scores, s=16, alpha=0.7)
            if getattr(param, "log", False):
                axes.set_xscale("log")
        share = importances.get(name)
        axes.set_title(f"{name}" + (f"  (importance {share:.2f})" if share is not None else ""), fontsize=9)
        axes.set_ylabel(search.metric, fontsize=8)
    for axes in list(grid.flat)[len(names):]:
        axes.axis("off")
    return _png(figure)


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
