"""The report's interactive figures (plotly): Optuna's visualisations of an in-memory study made
from a search's MLflow runs, and ours where Optuna has none (best so far against wall time,
learning curves with stopped trials marked, algorithms compared).

Every trial is named as the CLI names it (its Ray trial id, ``5d747_00010``): a point's hover
shows that name, its MLflow run, its status and its params.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tuneforge.dashboards._data import SearchData, TrialRow, best_so_far
from tuneforge.dashboards._plots import is_wide

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "best_over_time", "comparison", "importances", "learning_curves",
           "optuna_figures", "study_of"]

MIN_TRIALS_FOR_IMPORTANCE = 8
"""Importance evaluators say little about fewer scored trials."""
_MOST_FOR_FANOVA = 300
"""fANOVA's forest on more trials costs seconds a hundred (30 s at 2,000): a larger search's
fANOVA reads a seeded sample of this many (PED-ANOVA, which is fast, reads them all)."""
_MOST_FOR_CONTOUR = 200
"""Optuna's contour grids the trials' own values (2,000 trials made a 50 MB plot): a larger
search's contour is drawn from a seeded sample of this many."""
_HEIGHT = 420
_BEST = "#d62728"
_MINUTES_FROM_S = 180  # a search longer than this is timed in minutes, a shorter one in seconds


def study_of(search: SearchData) -> Any | None:
    """An in-memory Optuna study of the search's scored trials that lie in its recorded space
    (their value the metric; user attrs: the trial's name, run and status); None without a
    recorded space or a scored trial."""
    import optuna

    from tuneforge.search_spaces import to_optuna_distributions

    if search.space is None or not search.ranked():
        return None
    distributions = to_optuna_distributions(search.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=search.run_name,
                                direction="maximize" if search.mode == "max" else "minimize")
    scored = {t.run_id for t in search.ranked()}
    study.add_trials([optuna.trial.create_trial(
        params={name: trial.params[name] for name in distributions}, distributions=distributions,
        value=trial.metrics[search.metric], user_attrs=_attrs(trial))
        for trial in search.trials if trial.run_id in scored and search.space.contains(trial.params)])
    return study if study.get_trials(deepcopy=False) else None


def _attrs(trial: TrialRow) -> dict[str, str]:
    return {"trial": trial.label, "run": trial.name, "status": _status(trial)}


def _status(trial: TrialRow) -> str:
    return "STOPPED early" if trial.stopped else trial.status


def importances(study: Any) -> dict[str, dict[str, float]]:
    """Each param's importance (shares summing to 1) by PED-ANOVA (Optuna's default) and by
    fANOVA, keyed by the evaluator's name; empty below MIN_TRIALS_FOR_IMPORTANCE trials or with
    one param."""
    from optuna.importance import FanovaImportanceEvaluator as Fanova
    from optuna.importance import PedAnovaImportanceEvaluator as PedAnova
    from optuna.importance import get_param_importances

    trials = study.get_trials(deepcopy=False) if study is not None else []
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE or len(trials[0].params) < 2:
        return {}
    return {"PED-ANOVA": get_param_importances(study, evaluator=PedAnova()),
            "fANOVA": get_param_importances(_sample(study, _MOST_FOR_FANOVA), evaluator=Fanova(seed=0))}


def _sample(study: Any, most: int) -> Any:
    """``study``, or an in-memory study of a seeded sample of ``most`` of its trials."""
    import optuna

    trials = study.get_trials(deepcopy=False)  # ``study.trials`` copies every trial at each call
    if len(trials) <= most:
        return study
    sample = optuna.create_study(study_name=study.study_name, directions=study.directions)
    picked = np.random.default_rng(0).choice(len(trials), size=most, replace=False)
    sample.add_trials([trials[index] for index in sorted(picked)])
    return sample


def optuna_figures(search: SearchData, study: Any, shares: Mapping[str, Mapping[str, float]]) -> list[Any]:
    """Optuna's optimisation history, parallel coordinates, slice, contour of the two most
    important params, importances and empirical distribution, as plotly figures (those the
    study's trials allow)."""
    import optuna.visualization as vis

    if study is None:
        return []
    name = search.metric
    figures = [vis.plot_optimization_history(study, target_name=name)]
    trials = study.get_trials(deepcopy=False)
    n_params = len(trials[0].params)
    if len(trials) >= 2:
        figures += [vis.plot_parallel_coordinate(study, target_name=name),
                    vis.plot_slice(study, target_name=name)]
        if n_params >= 2:
            ranked = list(next(iter(shares.values()))) if shares else list(trials[0].params)
            sample = _sample(study, _MOST_FOR_CONTOUR)
            figures.append(vis.plot_contour(sample, params=ranked[:2], target_name=name))
    if shares:
        figures.append(_importances_figure(shares))
    figures.append(vis.plot_edf(study, target_name=name))
    for figure in figures:  # the page's width, not Optuna's fixed one (300 px a param in a slice)
        figure.update_layout(height=max(_HEIGHT, figure.layout.height or 0), template="plotly_white")
        figure.layout.width = None
    return figures


def _importances_figure(shares: Mapping[str, Mapping[str, float]]) -> Any:
    import plotly.graph_objects as go

    names = list(next(iter(shares.values())))[::-1]  # most important on top
    figure = go.Figure([go.Bar(name=evaluator, y=names, x=[values.get(n, 0.0) for n in names],
                               orientation="h", hovertemplate=f"%{{y}}: %{{x:.3f}}<extra>{evaluator}</extra>")
                        for evaluator, values in shares.items()])
    return figure.update_layout(title="Hyperparameter importances", barmode="group",
                                xaxis_title="share of the metric's variance", yaxis_title=None,
                                height=max(_HEIGHT, 60 + 40 * len(names)))


def _hover(search: SearchData, trial: TrialRow) -> str:
    value = trial.metrics.get(search.metric, math.nan)
    lines = [f"<b>{trial.label}</b> ({trial.name})", f"{search.metric}: {value:.6g}",
             f"status: {_status(trial)}"]
    return "<br>".join(lines + [f"{k}: {_short(v)}" for k, v in trial.params.items()])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _log_if_wide(values: np.ndarray) -> str:
    return "log" if is_wide(values) else "linear"


def best_over_time(search: SearchData) -> Any:
    """Each trial's metric when it ended (since the search's first trial started), and
    the best so far as a step line: what the wall-clock budget bought."""
    import plotly.graph_objects as go

    ended = sorted((t for t in search.trials if t.end_ms), key=lambda t: t.end_ms)
    origin = min((t.start_ms for t in search.trials), default=search.start_ms)
    seconds = np.array([(t.end_ms - origin) / 1000 for t in ended])
    unit, per = ("minutes", 60) if len(seconds) and seconds.max() >= _MINUTES_FROM_S else ("seconds", 1)
    elapsed = seconds / per
    values = np.array([t.metrics.get(search.metric, math.nan) for t in ended])
    scored = {t.run_id for t in search.ranked()}
    values = np.where([t.run_id in scored for t in ended], values, np.nan)
    figure = go.Figure([
        go.Scatter(x=elapsed, y=values, mode="markers", name="trial", marker={"size": 8, "opacity": 0.7},
                   hovertext=[_hover(search, t) for t in ended], hoverinfo="text"),
        go.Scatter(x=elapsed, y=best_so_far(values, search.mode), mode="lines", name="best so far",
                   line={"shape": "hv", "color": _BEST}, hoverinfo="skip")])
    start = search.metrics.get("start_score")
    if start is not None and search.start_point:
        figure.add_hline(y=start, line_dash="dot", annotation_text=search.start_point)
    return figure.update_layout(title=f"Best {search.metric} so far against wall time", height=_HEIGHT,
                                xaxis_title=f"{unit} since the first trial started",
                                yaxis_title=search.metric, yaxis_type=_log_if_wide(values),
                                template="plotly_white")


def learning_curves(search: SearchData) -> Any:
    """The metric at each epoch of every per-epoch trial; a trial stopped early by a scheduler is
    dashed and ends in a cross; the best trial is drawn thick and red."""
    import plotly.graph_objects as go

    best = search.best()
    figure = go.Figure()
    for trial in search.trials:
        if not trial.curve:
            continue
        is_best = best is not None and trial.run_id == best.run_id
        epochs = list(range(1, len(trial.curve) + 1))
        figure.add_trace(go.Scatter(
            x=epochs, y=list(trial.curve), mode="lines", name=trial.label + (" (best)" if is_best else ""),
            legendgroup=trial.label, opacity=1.0 if is_best else 0.6,
            line={"width": 3 if is_best else 1.2, "dash": "dash" if trial.stopped else "solid",
                  **({"color": _BEST} if is_best else {})},
            hovertemplate=f"{trial.label}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
        if trial.stopped:
            figure.add_trace(go.Scatter(x=epochs[-1:], y=list(trial.curve[-1:]), mode="markers",
                                        marker={"symbol": "x", "size": 9, "color": "black"},
                                        legendgroup=trial.label, showlegend=False,
                                        hovertemplate=f"{trial.label} stopped at epoch %{{x}}"
                                                      "<extra></extra>"))
    values = np.concatenate([np.asarray(t.curve, dtype=float) for t in search.trials if t.curve])
    longest = max(len(t.curve) for t in search.trials)
    return figure.update_layout(title=f"Learning curves ({search.mode} {search.metric}; dashed and x: "
                                      "stopped early)", height=_HEIGHT, xaxis_title="epoch",
                                yaxis_title=search.metric, yaxis_type=_log_if_wide(values),
                                template="plotly_white", xaxis={"dtick": 1} if longest <= 30 else {})


def comparison(curves: Mapping[str, np.ndarray], metric: str) -> Any:
    """Best-so-far curves per algorithm: the mean over its searches and the min-max band.
    ``curves`` maps an algorithm to an array (n_searches, n_trials), NaN-padded."""
    import plotly.colors
    import plotly.graph_objects as go

    figure = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for index, (algo, runs) in enumerate(sorted(curves.items())):
        colour = palette[index % len(palette)]
        order = np.arange(1, runs.shape[1] + 1)
        if runs.shape[0] > 1:
            band = np.concatenate([np.nanmax(runs, axis=0), np.nanmin(runs, axis=0)[::-1]])
            figure.add_trace(go.Scatter(x=np.concatenate([order, order[::-1]]), y=band,
                                        fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0},
                                        legendgroup=algo, showlegend=False, hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=order, y=np.nanmean(runs, axis=0), mode="lines", legendgroup=algo,
                                    name=f"{algo} (n={runs.shape[0]})", line={"color": colour},
                                    hovertemplate=f"{algo}: trial %{{x}}, mean best %{{y:.4g}}"
                                                  "<extra></extra>"))
    values = np.concatenate([runs.ravel() for runs in curves.values()])
    return figure.update_layout(title="Algorithms compared: best so far (mean, min-max band)", height=_HEIGHT,
                                xaxis_title="trial", yaxis_title=f"best {metric} so far",
                                yaxis_type=_log_if_wide(values), template="plotly_white")
