"""The runner: the one place that builds and runs a ``tune.Tuner``.

A search is validated before anything is created, in two steps. :func:`plan_search` checks the
space, the options, the algorithm and budget, and the tracking store at once.
:func:`prepare_trials` runs the trainable family's own checks (estimator, params, dataset,
metric), which import its library, while Ray starts, since both take seconds. Only when both
passed, and the cluster can hold a trial, are the MLflow experiment and runs and the Ray
results folder created. Bad input therefore leaves nothing behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.platform.cluster import Cluster, check_trial_resources, ray_cluster, resolve_address
from tuneforge.platform.events import SearchStarted, TrialEnded
from tuneforge.platform.searchers import Budget, SearchSetup, setup_search
from tuneforge.platform.tracking import (
    SearchRecorder,
    TrialRecord,
    check_tracking_uri,
    resolve_tracking_uri,
)
from tuneforge.search_spaces import DEFAULT_GRID_POINTS, SearchSpace, load_space, space_document
from tuneforge.trainables import get_trainable
from tuneforge.trainables._base import Trainable

__all__ = ["SearchOptions", "SearchPlan", "SearchResult", "SearchStarted", "TrialEnded",
           "plan_search", "search"]

_DEFAULT_STORAGE = "ray_results"
_TUNE_OUTPUT_ENGINE = "RAY_AIR_NEW_OUTPUT"
_ARTIFACTS_FOLDER = "artifacts"  # in the Tune experiment's folder: each trial's files, by trial id


@dataclass(frozen=True)
class SearchOptions:
    """How to run a search; every field has the CLI flag of the same name."""

    algo: str = "random"
    trials: int | None = None
    """Random: number of trials (default 20). Grid: passes over the grid (default 1)."""
    max_concurrent: int | None = None
    seed: int | None = None
    """None draws one; it is logged on the parent run so the search can be repeated."""
    experiment: str | None = None
    """MLflow experiment; defaults to the space's name."""
    tracking_uri: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    storage: str | Path | None = None
    """Ray Tune's results folder; defaults to ./ray_results."""
    grid_points: int = DEFAULT_GRID_POINTS
    tags: tuple[tuple[str, str], ...] = ()
    """Extra tags of the search's parent run (``tuneforge compare`` groups its searches so)."""


@dataclass(frozen=True)
class SearchPlan:
    """A validated search, ready to run: nothing has been created yet."""

    space: SearchSpace
    trainable: Trainable
    setup: SearchSetup
    options: SearchOptions
    seed: int
    experiment: str
    tracking_uri: str
    address: str | None
    storage_path: Path


@dataclass(frozen=True)
class SearchResult:
    """What a search found, and where to look further."""

    metric: str
    mode: str
    status: str
    """FINISHED, or KILLED when the search was interrupted."""
    trials: tuple[TrialRecord, ...]
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    experiment_path: Path
    cluster: Cluster
    best: TrialRecord | None = field(default=None)

    @property
    def best_config(self) -> dict[str, Any] | None:
        return self.best.params if self.best else None

    @property
    def best_score(self) -> float | None:
        return self.best.metrics[self.metric] if self.best else None

    def ranked(self) -> list[TrialRecord]:
        """Trials that reported the metric, best first."""
        return _ranked(self.trials, self.metric, self.mode)


def _score(record: TrialRecord, metric: str) -> float | None:
    value = record.metrics.get(metric)
    return value if value is not None and math.isfinite(value) else None


def _ranked(trials: Iterable[TrialRecord], metric: str, mode: str) -> list[TrialRecord]:
    scored = [t for t in trials if _score(t, metric) is not None]
    return sorted(scored, key=lambda t: _score(t, metric), reverse=mode == "max")


def _check_options(options: SearchOptions) -> None:
    if options.trials is not None and options.trials < 1:
        raise ConfigError(f"--trials: expected at least 1, got {options.trials}")
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent: expected at least 1, got {options.max_concurrent}")
    if not options.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial: expected a positive number, got {options.cpus_per_trial}")
    if not options.gpus_per_trial >= 0:
        raise ConfigError(f"--gpus-per-trial: expected 0 or more, got {options.gpus_per_trial}")


def plan_search(space: SearchSpace | str | Path, options: SearchOptions | None = None) -> SearchPlan:
    """Check a search's space and options, without side effects; each problem is a ConfigError."""
    options = options or SearchOptions()
    space = space if isinstance(space, SearchSpace) else load_space(space)
    _check_options(options)
    trainable = get_trainable(space.trainable)
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    setup = setup_search(options.algo, space, Budget(trials=options.trials, seed=seed,
                                                     max_concurrent=options.max_concurrent,
                                                     grid_points=options.grid_points))
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    check_tracking_uri(tracking_uri)
    return SearchPlan(space=space, trainable=trainable, setup=setup, options=options,
                      seed=seed, experiment=options.experiment or space.name,
                      tracking_uri=tracking_uri, address=resolve_address(options.address),
                      storage_path=Path(options.storage or _DEFAULT_STORAGE).expanduser().resolve())


def prepare_trials(plan: SearchPlan) -> dict[str, Any]:
    """The trainable's checks of the space; returns the fixed config every trial receives."""
    space, trainable = plan.space, plan.trainable
    config = trainable.prepare(space)
    reported = trainable.metrics(config)
    if space.metric not in reported:
        raise ConfigError(f"{space.source or space.name}: metric: {space.metric!r} is not reported by "
                          f"trainable {trainable.name!r}; it reports: {', '.join(sorted(reported))}")
    return config


def search(space: SearchSpace | str | Path, options: SearchOptions | None = None, *,
           on_event: Callable[[SearchStarted | TrialEnded], None] | None = None,
           **option_values: Any) -> SearchResult:
    """Run a search on Ray Tune and record it in MLflow; returns what it found.

    ``space`` is a :class:`SearchSpace`, a YAML path or a bundled space name. Options come as a
    :class:`SearchOptions` or as keywords (``search("rf-digits", algo="random", trials=20)``).
    ``on_event`` receives :class:`SearchStarted` once and :class:`TrialEnded` per trial.
    Raises ConfigError, with nothing created, for any bad input.
    """
    options = dataclasses.replace(options or SearchOptions(), **option_values)
    plan = plan_search(space, options)
    notify = on_event or (lambda event: None)
    job_name = f"tuneforge search {plan.space.name} ({plan.options.algo})"
    recorder = SearchRecorder(tracking_uri=plan.tracking_uri, experiment=plan.experiment)
    recorder.preload()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-prepare") as background, \
            ray_cluster(plan.address, job_name=job_name) as cluster:
        preparing = background.submit(prepare_trials, plan)
        check_trial_resources(cluster, plan.options.cpus_per_trial, plan.options.gpus_per_trial)
        config = preparing.result()
        experiment_name = f"{plan.space.name}-{plan.options.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
        parent_run_id = recorder.start_search(
            run_name=experiment_name, params=_search_params(plan, config, cluster),
            tags={"tuneforge.ray_results": str(plan.storage_path / experiment_name),
                  **dict(plan.options.tags)},
            artifacts={"space.yaml": _space_document(plan.space)})
        notify(SearchStarted(plan, cluster, parent_run_id, plan.storage_path / experiment_name))
        from tuneforge.platform.searchers._timed import TimedSearch

        timer, status = TimedSearch(plan.setup.search_alg), "FAILED"
        try:
            _fit(plan, config, experiment_name, recorder, timer.algorithm, notify)
            finished = sum(t.status in ("FINISHED", "FAILED") for t in recorder.trials.values())
            status = "FINISHED" if finished == plan.setup.n_trials else "KILLED"
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C twice; SIGTERM (Ray's handler exits)
            status = "KILLED"
            raise
        finally:
            best = _finish(plan, recorder, status, timer.seconds_per_suggestion)
    return SearchResult(metric=plan.space.metric, mode=plan.space.mode, status=status,
                        trials=tuple(recorder.trials.values()), experiment=plan.experiment,
                        experiment_id=recorder.experiment_id, parent_run_id=parent_run_id,
                        tracking_uri=plan.tracking_uri, cluster=cluster,
                        experiment_path=plan.storage_path / experiment_name, best=best)


def _fit(plan: SearchPlan, config: dict[str, Any], name: str, recorder: SearchRecorder,
         searcher: Any, notify: Callable[[TrialEnded], None]) -> None:
    import ray
    from ray import tune

    from tuneforge.platform._callbacks import TrialEvents
    from tuneforge.platform.artifacts import open_inbox

    setup, options = plan.setup, plan.options
    trainable = tune.with_resources(plan.trainable.function,
                                    {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    artifacts = plan.storage_path / name / _ARTIFACTS_FOLDER
    events = TrialEvents(recorder, plan.space, setup.n_trials, notify, artifacts)
    inbox = open_inbox(name, artifacts)
    tuner = tune.Tuner(
        trainable,
        param_space={**config, **setup.param_space},
        tune_config=tune.TuneConfig(
            metric=plan.space.metric, mode=plan.space.mode, search_alg=searcher,
            num_samples=setup.num_samples, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(plan.storage_path), verbose=0,
                                  callbacks=[events]),
    )
    try:
        with _quiet_tune_output():
            tuner.fit()
    finally:
        ray.kill(inbox)


@contextmanager
def _quiet_tune_output() -> Iterator[None]:
    """Tune prints a banner and status tables even at ``verbose=0`` with its new output
    engine; the old engine is silent at 0. Progress is the caller's (``on_event``)."""
    engine = os.environ.get(_TUNE_OUTPUT_ENGINE)
    os.environ[_TUNE_OUTPUT_ENGINE] = "0"
    try:
        yield
    finally:
        if engine is None:
            del os.environ[_TUNE_OUTPUT_ENGINE]
        else:
            os.environ[_TUNE_OUTPUT_ENGINE] = engine


def _finish(plan: SearchPlan, recorder: SearchRecorder, status: str,
            seconds_per_suggestion: float) -> TrialRecord | None:
    """Close the parent run with the best trial, its config, the results table, and the time
    the search algorithm took per suggestion."""
    recorder.flush()
    ranked = _ranked(tuple(recorder.trials.values()), plan.space.metric, plan.space.mode)
    best = ranked[0] if ranked else None
    artifacts = {"results.csv": _results_csv(recorder.trials.values(), plan.space)}
    metrics = {"n_trials_finished": float(len(ranked)),
               "searcher_seconds_per_suggestion": seconds_per_suggestion}
    tags = {}
    if best is not None:
        artifacts["best_config.json"] = json.dumps(best.params, indent=2, default=repr)
        metrics[f"best_{plan.space.metric}"] = best.metrics[plan.space.metric]
        tags = {"tuneforge.best_trial_id": best.trial_id, "tuneforge.best_run_id": best.run_id or ""}
    recorder.end_search(status, metrics=metrics, tags=tags, artifacts=artifacts)
    return best


def _search_params(plan: SearchPlan, config: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    from tuneforge import __version__

    options = plan.options
    params = {"algo": options.algo, "n_trials": plan.setup.n_trials, "seed": plan.seed,
              "max_concurrent": options.max_concurrent, "space": plan.space.name,
              "trainable": plan.space.trainable, "metric": plan.space.metric,
              "mode": plan.space.mode, "cpus_per_trial": options.cpus_per_trial,
              "gpus_per_trial": options.gpus_per_trial, "ray_address": cluster.address,
              "tuneforge_version": __version__}
    if options.algo == "grid":
        params["grid_points"] = options.grid_points
    return {**params, **{f"config.{key}": value for key, value in config.items()}}


def _space_document(space: SearchSpace) -> str:
    """The space file as written (comments kept), or the YAML of a space built in Python."""
    import yaml

    if space.source is not None:
        return space.source.read_text()
    return yaml.safe_dump(space_document(space), sort_keys=False)


def _results_csv(trials: Iterable[TrialRecord], space: SearchSpace) -> str:
    """One row per trial: ids, status, searched params and the last value of every metric."""
    rows = [{"trial_id": t.trial_id, "run_id": t.run_id, "status": t.status, "node_ip": t.node_ip,
             "started_at": t.started_at, "ended_at": t.ended_at,
             **{name: t.params.get(name) for name in space.param_names}, **t.metrics,
             "error": t.error} for t in trials]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

