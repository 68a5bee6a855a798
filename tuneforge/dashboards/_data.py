"""Searches as MLflow recorded them: parent runs, their trials, and the space they searched."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.schema import Artifacts, Metrics, Roles, Tags, TrialStatus, interrupted
from tuneforge.search_spaces import CategoricalParam, FloatParam, IntParam, SearchSpace, parse_space

__all__ = ["BestTrialFiles", "SearchData", "TrialRow", "best_so_far", "load_searches"]

_MAX_PICTURES = 30
"""Pictures a report shows of one artifact folder (a GAN's samples of each epoch)."""
_MAX_TABLE_ROWS = 50
"""Rows a report shows of a trial's CSV artifact."""


@dataclass(frozen=True)
class TrialRow:
    """One trial: its child run, searched values (typed by the space) and final metrics."""

    run_id: str
    name: str
    status: str
    start_ms: int
    params: dict[str, Any]
    metrics: dict[str, float]
    curve: tuple[float, ...] = ()
    """The metric at each step (epoch) of a per-epoch trial, in step order; empty otherwise."""
    stopped: bool = False
    """Stopped early by a scheduler (tag ``tuneforge.status=STOPPED``)."""
    trial_id: str = ""
    """Ray Tune's trial id (``5d747_00010``), as the CLI names the trial."""
    end_ms: int = 0
    """When the run ended (ms since the epoch); 0 while it runs."""

    @property
    def label(self) -> str:
        """The trial's name as the CLI prints it: its Ray trial id, else its run's name."""
        return self.trial_id or self.name


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
    """MLflow's status of the parent run, or INTERRUPTED (see :func:`_search_status`)."""
    start_ms: int
    space: SearchSpace | None
    trials: tuple[TrialRow, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    """The parent run's own metrics (best_<metric>, searcher_seconds_per_suggestion...)."""
    results: str | None = None
    """The search's Ray results folder, which ``tuneforge resume`` continues."""
    start_point: str | None = None
    """The starting point the best trial is compared with (``the default config``), where one
    scored; its score and the gain are ``metrics``' ``start_score`` and ``gain_over_start``."""
    best_files: BestTrialFiles = field(default_factory=lambda: BestTrialFiles())
    """The best trial's pictures and tables (its family's: a confusion matrix, GAN samples of
    each epoch, DARTS' cells, the Transformer's decoded words)."""

    def values(self) -> np.ndarray:
        """The metric of each trial, in start order; NaN where it has none. Shape (n_trials,)."""
        return np.array([t.metrics.get(self.metric, math.nan) for t in self.trials], dtype=float)

    def best(self) -> TrialRow | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def ranked(self) -> list[TrialRow]:
        """Scored trials, best first: ended FINISHED (stopped ones too) with a finite metric, as
        the runner ranks them; a failed or killed trial's last value is no score."""
        scored = [t for t in self.trials if t.status == TrialStatus.FINISHED.value
                  and math.isfinite(t.metrics.get(self.metric, math.nan))]
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


def _curve(client: Any, run: Any, metric: str) -> tuple[float, ...]:
    """A per-epoch trial's metric at each epoch (trials that report ``epoch``); else empty."""
    if Metrics.EPOCH not in run.data.metrics:
        return ()
    history = client.get_metric_history(run.info.run_id, metric)
    return tuple(m.value for m in sorted(history, key=lambda m: m.step))


def _trial_rows(client: Any, experiment_id: str, parent_id: str, space: SearchSpace | None,
                metric: str) -> tuple:
    runs = client.search_runs([experiment_id], f"tags.`{Tags.PARENT_RUN_ID}` = '{parent_id}'",
                              max_results=50_000)
    params = {p.name: p for p in space.params} if space else {}
    rows = [TrialRow(run_id=run.info.run_id, name=run.info.run_name, status=run.info.status,
                     start_ms=int(run.info.start_time or 0),
                     params={name: _typed(params.get(name), text) for name, text in run.data.params.items()},
                     metrics=dict(run.data.metrics), curve=_curve(client, run, metric),
                     stopped=run.data.tags.get(Tags.STATUS) == TrialStatus.STOPPED.value,
                     trial_id=run.data.tags.get(Tags.TRIAL_ID, ""), end_ms=int(run.info.end_time or 0))
            for run in runs]
    return tuple(sorted(rows, key=lambda row: (row.start_ms, row.name)))


@dataclass(frozen=True)
class BestTrialFiles:
    """What a report shows of the best trial's own artifacts (never its model)."""

    pictures: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    """PNGs by artifact folder (the ViT's ``confusion_matrix``, a GAN's ``samples``), each
    folder's as (path, bytes), oldest first (one an epoch), at most ``_MAX_PICTURES`` of them
    spread evenly, the last always the newest; a PNG at the top level (DARTS' ``cells.png``)
    is a folder of its own, named by its path."""
    tables: dict[str, tuple[str, list[list[str]]]] = field(default_factory=dict)
    """The newest CSV of each artifact folder (the Transformer's ``decoded`` words of the last
    epoch): its path and rows, the header first, at most ``_MAX_TABLE_ROWS`` rows after it."""


def _best_trial_files(client: Any, run_id: str) -> BestTrialFiles:
    import csv
    import io
    import tempfile
    from pathlib import Path

    files = BestTrialFiles()
    with tempfile.TemporaryDirectory() as tmp:
        def read(path: str) -> bytes:
            return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()

        for entry in client.list_artifacts(run_id):
            if entry.path == Artifacts.MODEL:
                continue
            if not entry.is_dir:
                if entry.path.endswith(".png"):
                    files.pictures[entry.path] = [(entry.path, read(entry.path))]
                continue
            paths = sorted(f.path for f in client.list_artifacts(run_id, entry.path))
            pngs = [path for path in paths if path.endswith(".png")]
            if len(pngs) > _MAX_PICTURES:
                pngs = [pngs[round(i)] for i in np.linspace(0, len(pngs) - 1, _MAX_PICTURES)]
            if pngs:
                files.pictures[entry.path] = [(path, read(path)) for path in pngs]
            csvs = [path for path in paths if path.endswith(".csv")]
            if csvs:
                rows = list(csv.reader(io.StringIO(read(csvs[-1]).decode("utf-8", errors="replace"))))
                files.tables[entry.path] = (csvs[-1], rows[:_MAX_TABLE_ROWS + 1])
    return files


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
    searches, now = [], time.time()
    for parent in sorted(parents, key=lambda run: run.info.start_time):
        space = _space_of(client, parent.info.run_id)
        params = parent.data.params
        metric = params.get("metric", space.metric if space else "?")
        best_run_id = parent.data.tags.get(Tags.BEST_RUN_ID)
        searches.append(SearchData(
            run_id=parent.info.run_id, run_name=parent.info.run_name,
            experiment_id=found.experiment_id, algo=params.get("algo", "?"),
            seed=params.get("seed", "?"), metric=metric,
            mode=params.get("mode", space.mode if space else "max"),
            status=_search_status(parent.info.status, parent.data.tags, now),
            start_ms=int(parent.info.start_time), space=space,
            trials=_trial_rows(client, found.experiment_id, parent.info.run_id, space, metric),
            metrics=dict(parent.data.metrics), results=parent.data.tags.get(Tags.RAY_RESULTS),
            start_point=parent.data.tags.get(Tags.START_POINT),
            best_files=_best_trial_files(client, best_run_id) if best_run_id else BestTrialFiles()))
    return searches


def _search_status(status: str, tags: dict[str, str], now: float) -> str:
    """A search's status as the report shows it: INTERRUPTED (``tuneforge resume`` continues
    it) for a RUNNING one whose driver is gone, or a KILLED one; else MLflow's."""
    return "INTERRUPTED" if interrupted(status, tags, now) else status
