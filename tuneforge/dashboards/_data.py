"""Searches as MLflow recorded them: parent runs, their trials, and the space they searched."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.schema import Artifacts, Roles, Tags
from tuneforge.search_spaces import CategoricalParam, FloatParam, IntParam, SearchSpace, parse_space

__all__ = ["SearchData", "TrialRow", "best_so_far", "load_searches"]


@dataclass(frozen=True)
class TrialRow:
    """One trial: its child run, searched values (typed by the space) and final metrics."""

    run_id: str
    name: str
    status: str
    start_ms: int
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass(frozen=True)
class SearchData:
    """One search (a parent run) and its trials in the order they started."""

    run_id: str
    run_name: str
    experiment_id: str
    algo: str
    seed: str
    metric: str
    mode: str
    status: str
    start_ms: int
    space: SearchSpace | None
    trials: tuple[TrialRow, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    """The parent run's own metrics (best_<metric>, searcher_seconds_per_suggestion...)."""

    def values(self) -> np.ndarray:
        """The metric of each trial, in start order; NaN where it has none. Shape (n_trials,)."""
        return np.array([t.metrics.get(self.metric, math.nan) for t in self.trials], dtype=float)

    def best(self) -> TrialRow | None:
        scored = [t for t in self.trials if math.isfinite(t.metrics.get(self.metric, math.nan))]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda t: t.metrics[self.metric])

    def ranked(self) -> list[TrialRow]:
        """Scored trials, best first."""
        scored = [t for t in self.trials if math.isfinite(t.metrics.get(self.metric, math.nan))]
        return sorted(scored, key=lambda t: t.metrics[self.metric], reverse=self.mode == "max")


def best_so_far(values: np.ndarray, mode: str) -> np.ndarray:
    """Running best of ``values`` (NaN until the first finite one), shape preserved."""
    signed = np.where(np.isfinite(values), values if mode == "max" else -values, -np.inf)
    running = np.maximum.accumulate(signed)
    running = np.where(np.isfinite(running), running, np.nan)
    return running if mode == "max" else -running


def _typed(param: Any, text: str) -> Any:
    """A param value back from the text MLflow stores (``str`` of the value)."""
    if isinstance(param, CategoricalParam):
        return next((c for c in param.choices if str(c) == text), text)
    if isinstance(param, IntParam):
        return int(float(text))
    if isinstance(param, FloatParam):
        return float(text)
    return text


def _space_of(client: Any, run_id: str) -> SearchSpace | None:
    """The space the search logged (``space.yaml``); None if it is missing or unreadable."""
    import tempfile
    from pathlib import Path

    import yaml

    if Artifacts.SPACE not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        text = Path(client.download_artifacts(run_id, Artifacts.SPACE, folder)).read_text()
    try:
        return parse_space(yaml.safe_load(text), name="space")
    except (ConfigError, yaml.YAMLError):
        return None


def _trial_rows(client: Any, experiment_id: str, parent_id: str, space: SearchSpace | None) -> tuple:
    runs = client.search_runs([experiment_id], f"tags.`{Tags.PARENT_RUN_ID}` = '{parent_id}'",
                              max_results=50_000)
    params = {p.name: p for p in space.params} if space else {}
    rows = [TrialRow(run_id=run.info.run_id, name=run.info.run_name, status=run.info.status,
                     start_ms=int(run.info.start_time or 0),
                     params={name: _typed(params.get(name), text) for name, text in run.data.params.items()},
                     metrics=dict(run.data.metrics)) for run in runs]
    return tuple(sorted(rows, key=lambda row: (row.start_ms, row.name)))


def load_searches(experiment: str, tracking_uri: str, *, run_ids: Sequence[str] = ()) -> list[SearchData]:
    """Every search recorded in ``experiment`` (or only the parent runs ``run_ids``), oldest
    first. ConfigError if the experiment does not exist or holds no search."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"experiment {experiment!r} not found in {tracking_uri}; "
                          f"experiments: {', '.join(names) or 'none'}")
    parents = client.search_runs([found.experiment_id], f"tags.`{Tags.ROLE}` = '{Roles.SEARCH}'",
                                 max_results=10_000)
    if run_ids:
        parents = [run for run in parents if run.info.run_id in set(run_ids)]
    if not parents:
        raise ConfigError(f"experiment {experiment!r} holds no tuneforge search")
    searches = []
    for parent in sorted(parents, key=lambda run: run.info.start_time):
        space = _space_of(client, parent.info.run_id)
        params = parent.data.params
        searches.append(SearchData(
            run_id=parent.info.run_id, run_name=parent.info.run_name,
            experiment_id=found.experiment_id, algo=params.get("algo", "?"),
            seed=params.get("seed", "?"), metric=params.get("metric", space.metric if space else "?"),
            mode=params.get("mode", space.mode if space else "max"), status=parent.info.status,
            start_ms=int(parent.info.start_time), space=space,
            trials=_trial_rows(client, found.experiment_id, parent.info.run_id, space),
            metrics=dict(parent.data.metrics)))
    return searches
