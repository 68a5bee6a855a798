"""The runner: the one place that builds and runs a ``tune.Tuner``.

A search is validated before anything is created (:mod:`~tuneforge.platform.planning`):
:func:`plan_search` first, then :func:`prepare_trials` and, for a local Ray, this machine's
resources, all before Ray starts (a refusal takes a second, not Ray's start-up). Only when they
passed, and the cluster can hold a trial, are the MLflow experiment and runs and the Ray
results folder created. Bad input therefore leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge._tracking_uri import default_tracking_uri
from tuneforge.dashboards.mlflow_ui import trials_view
from tuneforge.errors import EXIT_TERMINATED, ConfigError, StoreError
from tuneforge.platform.cluster import (
    Cluster,
    TrialResources,
    check_local_resources,
    check_trial_resources,
    concurrent_trials,
    ray_cluster,
    watching_local_ray,
)
from tuneforge.platform.events import RayLost, SearchEvent, SearchStarted, Stage, TrialEnded
from tuneforge.platform.planning import (
    SearchOptions,
    SearchPlan,
    limit_concurrency,
    plan_search,
    prepare_trials,
)
from tuneforge.platform.resume import (
    SavedSearch,
    check_saved_state,
    ended_trials,
    find_search,
    resume_command,
    search_lock,
)
from tuneforge.platform.starting_points import Gain, start_scores
from tuneforge.platform.tracking import ENDED, SCORED, SearchRecorder, TrialRecord, resolve_tracking_uri
from tuneforge.platform.warm_start import typed_params as _typed_params
from tuneforge.schema import Artifacts, Metrics, Tags, TrialStatus
from tuneforge.search_spaces import SearchSpace, parse_space, space_document

__all__ = ["SearchOptions", "SearchPlan", "SearchResult", "SearchStarted", "TrialEnded",
           "plan_search", "resume", "search"]

logger = logging.getLogger(__name__)

_TUNE_OUTPUT_ENGINE = "RAY_AIR_NEW_OUTPUT"
_TUNE_STRICT_METRIC = "TUNE_DISABLE_STRICT_METRIC_CHECKING"

_ARTIFACTS_FOLDER = "artifacts"  # in the Tune experiment's folder: each trial's files, by trial id


@dataclass(frozen=True)
class SearchResult:
    """What a search found, and where to look further."""

    metric: str
    mode: str
    status: TrialStatus
    """FINISHED when at least one trial scored; FAILED when every trial ended and none scored
    (each failed, or none reported a finite metric); KILLED when the search was interrupted."""
    trials: tuple[TrialRecord, ...]
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    experiment_path: str
    """Where Tune keeps the experiment: a folder, or a URI (``--storage``)."""
    cluster: Cluster
    best: TrialRecord | None = field(default=None)
    model_uri: str | None = None
    """The best trial's model (``runs:/<run_id>/model``) where one was logged."""
    gain: Gain | None = None
    """The best trial against the best starting point, where a starting point scored."""
    smoke: bool = False
    """A ``--smoke`` search: its trials ran two epochs on a small subset, so its scores check
    the set-up and say nothing of the configs."""
    stopped_because: str | None = None
    """Why the search was stopped before its budget (a user's trial that never reported the
    space's metric); its status is then FAILED."""

    @property
    def best_config(self) -> dict[str, Any] | None:
        return self.best.params if self.best else None

    @property
    def best_score(self) -> float | None:
        return self.best.metrics[self.metric] if self.best else None

    def ranked(self) -> list[TrialRecord]:
        """Trials that scored (FINISHED or STOPPED, with a finite metric), best first, each by
        its last result: the one rule for a trial's result, which the parent run, the report and
        the searchers follow too (a trial a scheduler stopped counts with its value at the epoch
        it was stopped)."""
        return _ranked(self.trials, self.metric, self.mode)


def _score(record: TrialRecord, metric: str) -> float | None:
    value = record.metrics.get(metric)
    return value if record.status in SCORED and value is not None and math.isfinite(value) else None


def _ranked(trials: Iterable[TrialRecord], metric: str, mode: str) -> list[TrialRecord]:
    scored = [t for t in trials if _score(t, metric) is not None]
    return sorted(scored, key=lambda t: _score(t, metric), reverse=mode == "max")


def search(space: SearchSpace | str | Path, options: SearchOptions | None = None, *,
           trainable: Callable[[dict[str, Any]], None] | None = None,
           on_event: Callable[[SearchEvent], None] | None = None, progress: bool = False,
           **option_values: Any) -> SearchResult:
    """Run a search on Ray Tune and record it in MLflow; returns what it found.

    ``space`` is a :class:`SearchSpace`, a YAML path or a bundled space name. Options come as a
    :class:`SearchOptions` or as keywords (``search("rf-digits", algo="random", trials=20)``).
    ``trainable`` is your own function of ``config``, run instead of the space's trainable.
    ``on_event`` receives every :mod:`~tuneforge.platform.events` event: start-up stages, then
    :class:`SearchStarted` once, and each trial's start, results and end; ``progress=True``
    prints them as a live status (a terminal's progress bar, else plain lines; notebooks too).
    Raises ConfigError, with nothing created, for any bad input.
    """
    options = dataclasses.replace(options or SearchOptions(), **option_values)
    notify = on_event or _progress_printer(progress)
    notify(Stage("checking the space and options"))
    return _execute(plan_search(space, options, trainable=trainable), notify)


def resume(target: str | Path, *, tracking_uri: str | None = None, address: str | None = None,
           trainable: Callable[[dict[str, Any]], None] | None = None,
           on_event: Callable[[SearchEvent], None] | None = None, progress: bool = False) -> SearchResult:
    """Continue an interrupted search (its driver killed, Ctrl-C, a reboot); returns what the
    whole search found, as :func:`search` does.

    ``target`` is the search's Ray results folder, or its MLflow experiment's name (its newest
    interrupted search; ``tracking_uri`` says where, by default as :func:`search`). Ray Tune's
    ``Tuner.restore`` continues the experiment: ended trials are not run again, trials that were
    running resume from their last checkpoint (or start again, for one-shot families), and the
    restored search algorithm suggests the rest. The same parent run continues in MLflow, and
    each trial keeps its one child run. ``trainable``: the user's function the search ran with,
    if it was given from Python. ConfigError, with nothing changed, when there is nothing to
    resume (the search ended, or its driver is still running).
    """
    import yaml


    notify = on_event or _progress_printer(progress)
    notify(Stage("finding the search"))
    saved = find_search(target, resolve_tracking_uri(tracking_uri))
    options = saved.search_options(**({"address": address} if address else {}))
    space = parse_space(yaml.safe_load(saved.space_yaml), name=saved.space_name,
                        source=Path(saved.space_source) if saved.space_source else None)
    with search_lock(Path(saved.local_dir), saved.name):  # one driver at a time: a second is refused
        _check_resumable(saved)
        plan = plan_search(space, options, trainable=trainable)
        state = check_saved_state(saved.experiment_path, saved.name)
        if not state.restorable:  # planned before anything is set aside: a refusal changes nothing
            saved, plan = _rebuilt(space, options, saved, plan, trainable)
        state.set_aside()
        if state.note:
            notify(Stage(state.note))
        plan = dataclasses.replace(plan, tracking_uri=saved.tracking_uri, experiment=saved.experiment,
                                   kept_trials=frozenset(saved.kept_trials))
        return _execute(plan, notify, saved, rebuilt=not state.restorable)


def _rebuilt(space: SearchSpace, options: SearchOptions, saved: SavedSearch, plan: SearchPlan,
             trainable: Callable[[dict[str, Any]], None] | None) -> tuple[SavedSearch, SearchPlan]:
    """The rest of a search whose Ray Tune state is lost, from MLflow and ``search.json``: the
    trials that ended are kept (``kept_trials``), its scored ones warm-start observations
    (GPSearcher and Optuna condition on them; random and grid search do not run them again); the
    trials it had left run anew (of ``--trials``; a grid's cells not yet run), drawn with the
    seed + the number of rebuilds (a random search's draws are not repeated), in the rest of its
    time budget. The plan counts the whole search's trials, as ``plan`` (the search as it was
    planned) does. ConfigError, with nothing changed, where none is left to run."""
    kept = tuple(sorted(set(saved.kept_trials) | ended_trials(saved)))
    trials = options.trials
    if trials is not None and options.algo != "grid":
        if trials <= len(kept):
            raise ConfigError(f"search {saved.name}: its Ray Tune state is damaged and its {len(kept)} "
                              f"ended trials are all it had to run (--trials {trials}); its results stay "
                              "in MLflow")
        trials -= len(kept)
    rebuilds = saved.rebuilds + 1
    rest = dataclasses.replace(options, warm_start=saved.parent_run_id, tracking_uri=saved.tracking_uri,
                               trials=trials, seed=None if options.seed is None else options.seed + rebuilds)
    rebuilt = plan_search(space, rest, trainable=trainable, rebuilding=True)
    whole = dataclasses.replace(rebuilt.setup, n_trials=plan.setup.n_trials)  # kept and new together
    rebuilt = dataclasses.replace(rebuilt, setup=whole)
    return dataclasses.replace(saved, rebuilds=rebuilds, kept_trials=kept), rebuilt


def _execute(plan: SearchPlan, notify: Callable[[SearchEvent], None],
             saved: SavedSearch | None = None, rebuilt: bool = False) -> SearchResult:
    """Run ``plan``: a new search, or the interrupted search ``saved`` again (restored by Ray
    Tune, or ``rebuilt`` from MLflow as a new Tune experiment in its folder). The trainable checks
    its settings and data and a local Ray's resources are checked first (refusals before
    anything starts); then it opens the MLflow store, starts or joins Ray, opens the parent run
    (a new one, or ``saved``'s again), runs the trials, closes the search and logs its report."""
    from tuneforge.platform.budget import live_budget  # imports Ray

    recorder = SearchRecorder(tracking_uri=plan.tracking_uri, experiment=plan.experiment)
    notify(Stage(f"checking trainable {plan.trainable.name!r} (its settings and data)"))
    config = prepare_trials(plan)  # a second or so: its refusals come before Ray's start-up
    check_local_resources(plan.address, _trial_resources(plan))
    notify(Stage(_store_stage(plan.tracking_uri)))
    recorder.preload()
    notify(Stage(f"joining Ray at {plan.address}" if plan.address else "starting a local Ray"))
    with _ray_cluster(plan, saved) as cluster, contextlib.ExitStack() as held:
        if saved is None:  # a resumed search keeps the sizing it started with (its saved options)
            plan = _fit_to_cluster(plan, cluster, notify)
        name, experiment_path = (_start_search(plan, config, cluster, recorder) if saved is None
                                 else _reopen_search(plan, saved, recorder, rebuilt))
        if saved is None:  # a resume holds its lock already
            held.enter_context(search_lock(plan.local_dir / name, name))
        notify(SearchStarted(plan, cluster, recorder.parent_run_id, experiment_path,
                             known=tuple(recorder.trials.values()),
                             time_used_s=saved.time_used_s if saved else 0.0))
        status, best, model_uri, gain = _run(plan, config, name, recorder, notify,
                                             restore=saved.experiment_path if saved and not rebuilt else None,
                                             time_used_s=saved.time_used_s if saved else 0.0,
                                             local_dir=Path(saved.local_dir) if saved else None)
    _log_report(plan, recorder, notify)
    return _result(plan, recorder, cluster, experiment_path, status, best, model_uri, gain,
                   stopped_because=live_budget(name).stopped_because)


def _store_stage(tracking_uri: str) -> str:
    """What opening the store does; a new SQLite store says where it is, once."""
    database = Path(tracking_uri.removeprefix("sqlite:///")).expanduser()
    if not tracking_uri.startswith("sqlite:///") or database.exists():
        return f"opening the MLflow store {tracking_uri}"
    if tracking_uri == default_tracking_uri():
        return (f"creating the MLflow store {tracking_uri}: every tuneforge command's default, from any "
                "folder ($TUNEFORGE_HOME; --tracking-uri or MLFLOW_TRACKING_URI name another)")
    return f"creating the MLflow store {tracking_uri}"


def _log_report(plan: SearchPlan, recorder: SearchRecorder, notify: Callable[[SearchEvent], None]) -> None:
    """The search's interactive report, logged to its parent run as ``report/index.html``
    (MLflow's artifact view shows it). A report that cannot be built is a warning: the search and
    its results stand."""
    from tuneforge.dashboards import REPORT_ARTIFACT, build_report

    notify(Stage(f"writing the report ({REPORT_ARTIFACT} of the parent run)"))
    try:
        with tempfile.TemporaryDirectory() as folder:
            build_report(plan.experiment, tracking_uri=plan.tracking_uri, out_dir=folder,
                         run_ids=[recorder.parent_run_id])
    except Exception as error:  # the report is an extra: the search is done
        logger.warning("the search's report was not written: %s: %s", type(error).__name__, error)


def _ray_cluster(plan: SearchPlan, saved: SavedSearch | None) -> AbstractContextManager[Cluster]:
    """The search's Ray (a Ray job named after it). A resumed search joins it as it always
    has: without the ``ray up`` config of ``--cluster-config``, which only sizing needs."""
    if saved is not None:
        return ray_cluster(plan.address, job_name=f"tuneforge resume {saved.name}",
                           working_dir=plan.trainable.code_dir)
    cluster_config = plan.options.cluster_config
    return ray_cluster(plan.address, job_name=f"tuneforge search {plan.space.name} ({plan.options.algo})",
                       working_dir=plan.trainable.code_dir,
                       cluster_config=Path(cluster_config) if cluster_config else None)


def _trial_resources(plan: SearchPlan) -> TrialResources:
    options = plan.options
    return TrialResources(cpus=options.cpus_per_trial, gpus=options.gpus_per_trial,
                          workers=options.workers_per_trial)


def _fit_to_cluster(plan: SearchPlan, cluster: Cluster, notify: Callable[[SearchEvent], None]) -> SearchPlan:
    """A new search on ``cluster``: refused when no node can hold a trial (a note when the
    autoscaler must add one); a data-parallel search runs only the trials whose workers fit
    at once."""
    resources = _trial_resources(plan)
    scaling = check_trial_resources(cluster, resources)
    if scaling:
        notify(Stage(scaling))
    if resources.workers > 1:
        plan = limit_concurrency(plan, concurrent_trials(cluster, resources))
    return plan


def _start_search(plan: SearchPlan, config: dict[str, Any], cluster: Cluster,
                  recorder: SearchRecorder) -> tuple[str, str]:
    """A new search's parent run and its ``search.json``; the Tune experiment's name and path."""
    name = f"{plan.space.name}-{plan.options.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent_run_id = recorder.start_search(
        run_name=name, params=_search_params(plan, config, cluster),
        tags={Tags.RAY_RESULTS: plan.experiment_path(name), **_warm_start_tags(plan),
              **dict(plan.options.tags)},
        artifacts={Artifacts.SPACE: _space_document(plan.space), **_family_artifacts(plan, config)})
    space = plan.space  # the MLflow UI's view of the trials, which the printed links open
    recorder.set_experiment_tag(*trials_view(parent_run_id, name, space.metric, space.mode,
                                             space.param_names))
    _save_search(plan, name, parent_run_id, recorder)
    return name, plan.experiment_path(name)


def _warm_start_tags(plan: SearchPlan) -> dict[str, str]:
    """Where the search was warm-started from: its sources' parent run ids (the lineage the MLflow
    UI shows as a tag)."""
    if plan.warm_start is None:
        return {}
    return {Tags.WARM_START: ",".join(plan.warm_start.source_run_ids)}


def _reopen_search(plan: SearchPlan, saved: SavedSearch, recorder: SearchRecorder,
                   rebuilt: bool = False) -> tuple[str, str]:
    """The interrupted search's parent run, RUNNING again, with the trials it recorded; the Tune
    experiment's name and path. A ``rebuilt`` search keeps the trials that finished (tag
    :attr:`Tags.REBUILT` says how many) and closes the others as lost: they run anew."""
    tags = {}
    if rebuilt:
        tags[Tags.REBUILT] = (f"its Ray Tune state was damaged: rebuilt from MLflow and search.json "
                              f"({saved.rebuilds} time(s)), {len(saved.kept_trials)} ended trials kept (the "
                              "scored ones as warm-start observations), the rest run anew")
        text = saved.to_json()  # its kept trials and rebuilds, for every later resume
        (Path(saved.local_dir) / Artifacts.SEARCH).write_text(text)
        recorder.log_text(saved.parent_run_id, text, Artifacts.SEARCH)
    recorder.resume_search(saved.parent_run_id, lambda text: _typed_params(plan.space, text), tags)
    if rebuilt:
        for record in [r for r in recorder.trials.values() if r.status not in ENDED]:
            recorder.mark_lost(record.trial_id, "the search's Ray Tune state was damaged when it was "
                                                "resumed; its trial was not continued (others ran anew)")
    return saved.name, saved.experiment_path


def _family_artifacts(plan: SearchPlan, config: dict[str, Any]) -> dict[str, str]:
    """The trainable's own files for the parent run (a dataset's held-out words), if any."""
    return plan.trainable.search_artifacts(config) if plan.trainable.search_artifacts else {}


def _result(plan: SearchPlan, recorder: SearchRecorder, cluster: Cluster, experiment_path: str,
            status: TrialStatus, best: TrialRecord | None, model_uri: str | None,
            gain: Gain | None, stopped_because: str | None = None) -> SearchResult:
    return SearchResult(metric=plan.space.metric, mode=plan.space.mode, status=status,
                        trials=tuple(recorder.trials.values()), experiment=plan.experiment,
                        experiment_id=recorder.experiment_id, parent_run_id=recorder.parent_run_id,
                        tracking_uri=plan.tracking_uri, cluster=cluster,
                        experiment_path=experiment_path, best=best, model_uri=model_uri, gain=gain,
                        smoke=plan.options.smoke, stopped_because=stopped_because)


def _progress_printer(progress: bool) -> Callable[[SearchEvent], None]:
    if not progress:
        return lambda event: None
    from tuneforge.platform.progress import SearchProgress

    return SearchProgress()


def _check_resumable(saved: Any) -> None:
    """ConfigError unless the search's parent run was interrupted (KILLED, or RUNNING with no
    live driver)."""
    from mlflow import MlflowClient

    from tuneforge.schema import interrupted

    run = MlflowClient(saved.tracking_uri).get_run(saved.parent_run_id)
    if not interrupted(run.info.status, run.data.tags, time.time()):
        state = ("is still running (driver " + run.data.tags.get(Tags.DRIVER, "?") + ")"
                 if run.info.status == TrialStatus.RUNNING.value else f"ended {run.info.status}")
        raise ConfigError(f"search {saved.name} {state}: nothing to resume")


def _save_search(plan: SearchPlan, name: str, parent_run_id: str, recorder: SearchRecorder) -> None:
    """What ``tuneforge resume`` needs (``search.json``), in the search's local folder and on
    its parent run."""
    options = {**dataclasses.asdict(plan.options), "seed": plan.seed}
    source = str(plan.space.source.resolve()) if plan.space.source else None
    saved = SavedSearch(name=name, experiment_path=plan.experiment_path(name),
                        local_dir=str(plan.local_dir / name), tracking_uri=plan.tracking_uri,
                        experiment=plan.experiment, parent_run_id=parent_run_id,
                        space_yaml=_space_document(plan.space), space_name=plan.space.name,
                        space_source=source, options=options)
    folder = Path(saved.local_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = saved.to_json()
    (folder / Artifacts.SEARCH).write_text(text)
    recorder.log_text(parent_run_id, text, Artifacts.SEARCH)


def _run(plan: SearchPlan, config: dict[str, Any], name: str, recorder: SearchRecorder,
         notify: Callable[[SearchEvent], None], *, restore: str | None = None, time_used_s: float = 0.0,
         local_dir: Path | None = None) -> tuple[TrialStatus, TrialRecord | None, str | None, Gain | None]:
    """Fit the Tuner (a new one, or the one Tune saved at ``restore``), then close the search
    whatever happened; its status, best trial, the best trial's model URI and its gain over the
    starting points.

    A new search's algorithm is built here, once, with the concurrency settled after Ray
    started; a restored search's is the one Tune saved, whose time per suggestion is unknown.
    A time budget starts with ``time_used_s`` of it spent (a resumed search), and keeps the time
    used in ``search.json`` in ``local_dir`` (default: the plan's folder of the search)."""
    from tuneforge.platform.searchers._timed import TimedSearch

    timer: TimedSearch | None = None
    status = TrialStatus.FAILED
    budget = _time_budget(plan, name, time_used_s, local_dir or plan.local_dir / name)
    recorder.on_store_failure = _interrupt_this_process  # stopped as by Ctrl-C: what did not end resumes
    try:
        if restore is None:
            timer = TimedSearch(plan.setup.make_search_alg(plan.options.max_concurrent))
        lost = functools.partial(_end_without_ray, plan, config, name, recorder, budget, notify)
        with watching_local_ray(lost):
            _fit(plan, config, name, recorder, timer and timer.algorithm, notify, restore=restore,
                 budget=budget)
        status = _search_status(plan, recorder.trials.values(), budget_spent=budget.spent,
                                stopped=budget.stopped_because is not None)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C twice; SIGTERM (Ray's handler exits)
        status = TrialStatus.KILLED
        raise
    finally:
        budget.save()
        if recorder.store_error:
            recorder.abandon()
            raise StoreError(f"the MLflow store {plan.tracking_uri} stopped taking writes "
                             f"({recorder.store_error}), so the search stopped; what its trials did is "
                             f"in {plan.experiment_path(name)}; once the store takes writes again, "
                             f"continue with: {resume_command(plan.experiment_path(name))}")
        seconds_per_suggestion = timer.seconds_per_suggestion if timer else 0.0
        best, model_uri, gain = _finish(plan, config, recorder, status, seconds_per_suggestion,
                                        plan.experiment_path(name), budget_spent=budget.spent,
                                        stopped_because=budget.stopped_because)
    return status, best, model_uri, gain


def _end_without_ray(plan: SearchPlan, config: dict[str, Any], name: str, recorder: SearchRecorder,
                     budget: Any, notify: Callable[[SearchEvent], None], what: str) -> None:
    """The search's local Ray lost its GCS or raylet (``what``; called from the thread that
    watches them): recorded as a search interrupted by SIGTERM, as far as this thread can (the
    time budget used, the running trials and the parent run KILLED with the resume command),
    then this process ends with :data:`~tuneforge.errors.EXIT_TERMINATED`. Its main thread waits
    in a Ray call that would end it 60 s later, recording nothing; Tune's state is the one it
    last saved, as after a SIGKILL, which ``tuneforge resume`` continues."""
    try:
        budget.save()
        _finish(plan, config, recorder, TrialStatus.KILLED, 0.0, plan.experiment_path(name))
        notify(RayLost(what, plan.experiment_path(name)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_TERMINATED)


def _interrupt_this_process(reason: str) -> None:
    """Stop the search as Ctrl-C does (Ray Tune's own SIGINT handler while it runs: its state
    saved with the unfinished trials to resume), from any thread."""
    os.kill(os.getpid(), signal.SIGINT)


def _time_budget(plan: SearchPlan, name: str, time_used_s: float, folder: Path) -> Any:
    """The search's :class:`~.budget.TimeBudget` (what is left of it, for a resumed search),
    recording its use in ``folder``'s ``search.json``; without ``--time-budget``, one that never
    runs out (the runner's way to stop a search early)."""
    from tuneforge.platform.budget import TimeBudget

    if plan.time_budget_s is None:
        return TimeBudget(name, math.inf)
    return TimeBudget(name, plan.time_budget_s, used=time_used_s, record=folder / Artifacts.SEARCH)


def _search_status(plan: SearchPlan, trials: Iterable[TrialRecord], *,
                   budget_spent: bool = False, stopped: bool = False) -> TrialStatus:
    """FAILED if the runner stopped the search; else KILLED unless every trial ended, or the time
    budget ended the search; then FINISHED if one scored, else FAILED."""
    if stopped:
        return TrialStatus.FAILED
    trials = list(trials)
    n_trials = plan.setup.n_trials
    if not budget_spent and (n_trials is None or sum(t.status in ENDED for t in trials) < n_trials):
        return TrialStatus.KILLED
    return TrialStatus.FINISHED if _ranked(trials, plan.space.metric, plan.space.mode) else TrialStatus.FAILED


def _fit(plan: SearchPlan, config: dict[str, Any], name: str, recorder: SearchRecorder,
         searcher: Any, notify: Callable[[SearchEvent], None], *, restore: str | None, budget: Any) -> None:
    import ray
    from ray import tune

    from tuneforge.platform import _ray_fixes
    from tuneforge.platform._callbacks import TrialEvents
    from tuneforge.trainables._session import open_inbox

    _ray_fixes.install()
    setup, options, space = plan.setup, plan.options, plan.space
    if options.workers_per_trial > 1:
        from tuneforge.platform.data_parallel import data_parallel

        trainable = data_parallel(plan.trainable.function, workers=options.workers_per_trial,
                                  cpus_per_worker=options.cpus_per_trial,
                                  gpus_per_worker=options.gpus_per_trial,
                                  storage=plan.storage, keep_checkpoints=options.keep_checkpoints,
                                  metric=space.metric, mode=space.mode)
    else:
        function = plan.trainable.function
        if restore:
            function = _replaying(function, recorder)
        trainable = tune.with_resources(function,
                                        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    artifacts = plan.local_dir / name / _ARTIFACTS_FOLDER
    events = TrialEvents(name, recorder, space, setup.n_trials, notify, artifacts,
                         check_metric=plan.trainable.metrics is None, schedule=plan.schedule,
                         step_metric=plan.trainable.step_metric, run_params=plan.trainable.run_params,
                         budget=budget, kept=plan.kept_trials)
    inbox = open_inbox(name, artifacts)
    if restore:  # its callback is `events` again (TrialEvents.__reduce__), its searcher restored
        tuner = tune.Tuner.restore(restore, trainable, resume_unfinished=True,
                                   param_space={**config, **setup.param_space})
    else:
        tuner = _new_tuner(plan, config, name, trainable, searcher, events, budget)
    try:
        with _quiet_tune_output(lenient_metric=plan.trainable.metrics is None,
                                max_pending=_max_pending(plan) if setup.n_trials is None else None):
            tuner.fit()
    finally:
        ray.kill(inbox)


def _new_tuner(plan: SearchPlan, config: dict[str, Any], name: str, trainable: Any, searcher: Any,
               events: Any, budget: Any) -> Any:
    """A Tuner for the plan: ``events`` records it, ``budget`` (a stopper) ends it in time;
    each trial's results are also in its Ray folder (``progress.csv``, ``result.json``), not in
    TensorBoard files (MLflow has them)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    setup, options, space = plan.setup, plan.options, plan.space
    return tune.Tuner(
        trainable,
        param_space={**config, **setup.param_space},
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=searcher,
            scheduler=plan.schedule.build() if plan.schedule else None,
            num_samples=setup.num_samples, reuse_actors=plan.trainable.reuse_actors),
        run_config=tune.RunConfig(
            name=name, storage_path=plan.storage, verbose=0, stop=budget,
            callbacks=[events, CSVLoggerCallback(), JsonLoggerCallback()],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=options.keep_checkpoints, checkpoint_score_attribute=space.metric,
                checkpoint_score_order=space.mode)),
    )


def _replaying(function: Callable[[dict[str, Any]], None],
               recorder: SearchRecorder) -> Callable[[dict[str, Any]], None]:
    """``function`` for a resumed search: a trial that MLflow saw end (FINISHED or STOPPED)
    but that Ray Tune had not saved as ended when the driver died reports its recorded last
    result again instead of training twice; the search algorithm and scheduler see it as
    before, and nothing is written again (the callback knows it)."""
    from ray import tune

    ended = {t.trial_id: (t.params, dict(t.metrics)) for t in recorder.trials.values() if t.status in SCORED}

    def trainable(config: dict[str, Any]) -> None:
        params, metrics = ended.get(tune.get_context().get_trial_id(), (None, None))
        if params is not None and params == {name: config[name] for name in params}:
            tune.report(metrics)
            return
        function(config)

    trainable.__name__ = getattr(function, "__name__", "trainable")  # Tuner.restore checks the name
    trainable.__qualname__ = getattr(function, "__qualname__", trainable.__name__)
    return trainable


def _max_pending(plan: SearchPlan) -> int:
    """Trials a search without a count keeps waiting for resources: what the cluster can run at
    once, and a few more (Tune's own default for random search is 200, each a trial the end of a
    time budget cancels)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(4, math.ceil(cpus / plan.options.cpus_per_trial))


@contextmanager
def _quiet_tune_output(*, lenient_metric: bool, max_pending: int | None = None) -> Iterator[None]:
    """Tune prints a banner and status tables even at ``verbose=0`` with its new output
    engine; the old engine is silent at 0. Progress is the caller's (``on_event``).

    ``lenient_metric``: a user's function may report without the space's metric, which would
    stop Tune's whole experiment; the trial is failed with that message instead (the callback),
    and the search goes on. ``max_pending``: Tune's most pending trials, where given."""
    settings = {_TUNE_OUTPUT_ENGINE: "0",
                # Its warning that per-epoch checkpoints force saves of the experiment: they should.
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
                # The loggers are the runner's (_new_tuner): Tune's TensorBoard logger keeps an
                # open writer per trial for the whole search (~100 kB each, 2,000 trials: 200 MB).
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if lenient_metric:
        settings[_TUNE_STRICT_METRIC] = "1"
    if max_pending is not None:
        settings["TUNE_MAX_PENDING_TRIALS_PG"] = str(max_pending)
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    # Its warning, as the fit ends, naming each trial that never reported ("Failed to fetch metrics
    # ... FileNotFoundError"): the trials a time budget ended while they waited for resources.
    analysis = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis.level
    analysis.setLevel(logging.ERROR)
    try:
        yield
    finally:
        analysis.setLevel(level)
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def _finish(plan: SearchPlan, config: dict[str, Any], recorder: SearchRecorder, status: TrialStatus,
            seconds_per_suggestion: float, experiment_path: str, *,
            budget_spent: bool = False,
            stopped_because: str | None = None) -> tuple[TrialRecord | None, str | None, Gain | None]:
    """Close the parent run with the best trial, its config and model, its gain over the
    starting points, the results table, the time the search algorithm took per suggestion, and
    a description in Markdown (what the MLflow run page shows first); returns the best trial,
    its model and its gain."""
    recorder.flush()
    trials = tuple(recorder.trials.values())
    ranked = _ranked(trials, plan.space.metric, plan.space.mode)
    best = ranked[0] if ranked else None
    artifacts = {Artifacts.RESULTS: _results_csv(trials, plan.space)}
    metrics = {Metrics.N_TRIALS_FINISHED: float(len(ranked)),
               Metrics.N_TRIALS_STOPPED: float(sum(t.status is TrialStatus.STOPPED for t in trials)),
               Metrics.TOTAL_ITERATIONS: float(sum(t.iterations for t in trials))}
    if seconds_per_suggestion:  # unknown to a resumed search (its algorithm is Tune's restored one)
        metrics[Metrics.SECONDS_PER_SUGGESTION] = seconds_per_suggestion
    tags, model_uri = ({Tags.TIME_BUDGET_SPENT: "true"} if budget_spent else {}), None
    if stopped_because:
        tags[Tags.STOPPED_BECAUSE] = stopped_because
    gain = _gain(plan, trials, best)
    if gain is not None:
        metrics.update({Metrics.START_SCORE: gain.start, Metrics.GAIN_OVER_START: gain.gain})
        tags[Tags.START_POINT] = gain.start_label
    if best is not None:
        artifacts[Artifacts.BEST_CONFIG] = json.dumps(best.params, indent=2, default=repr)
        metrics[Metrics.best(plan.space.metric)] = best.metrics[plan.space.metric]
        tags.update({Tags.BEST_TRIAL_ID: best.trial_id, Tags.BEST_RUN_ID: best.run_id or ""})
        model_uri = _best_model(plan, {**config, **best.params}, recorder, best,
                                refit=status is TrialStatus.FINISHED)
        if model_uri:
            tags[Tags.BEST_MODEL_URI] = model_uri
            _copy_best_model(recorder, best)
    if model_uri and plan.options.register_model:
        version = recorder.register_model(plan.options.register_model, model_uri)
        tags[Tags.REGISTERED_MODEL] = f"{plan.options.register_model}/{version}"
    tags[Tags.NOTE] = _note(plan, status, trials, best, gain, model_uri, experiment_path, stopped_because)
    recorder.end_search(status, metrics=metrics, tags=tags, artifacts=artifacts)
    return best, model_uri, gain


def _note(plan: SearchPlan, status: TrialStatus, trials: tuple[TrialRecord, ...], best: TrialRecord | None,
          gain: Gain | None, model_uri: str | None, experiment_path: str,
          stopped_because: str | None = None) -> str:
    """The parent run's description: the search's summary in Markdown."""
    from tuneforge.platform.progress import format_value

    metric = plan.space.metric
    counts = {state: sum(t.status is state for t in trials) for state in TrialStatus}
    lines = [f"**{plan.space.name}**, {plan.options.algo} search: {status.value}, {len(trials)} trials "
             f"({counts[TrialStatus.STOPPED]} stopped early, {counts[TrialStatus.FAILED]} failed)."]
    if stopped_because:
        lines.append(f"Stopped early: {stopped_because}.")
    if plan.options.smoke:
        lines.append("A `--smoke` search: its scores check the set-up and choose no model.")
    if best is not None:
        config = ", ".join(f"`{name}={format_value(value)}`" for name, value in best.params.items())
        lines.append(f"**Best {metric}: {format_value(best.metrics[metric])}**, trial {best.trial_id} "
                     f"({config}).")
    if gain is not None:
        lines.append(f"Against the start: {gain.text()}.")
    if model_uri:
        lines.append(f"Best model: `{model_uri}`.")
    if status is TrialStatus.KILLED:
        lines.append(f"Interrupted; continue with `{resume_command(experiment_path)}`.")
    return "\n\n".join(lines)


def _gain(plan: SearchPlan, trials: tuple[TrialRecord, ...], best: TrialRecord | None) -> Gain | None:
    """The best trial against the best-scoring starting point (scored in this search, else by
    the search it was warm-started from); None without either."""
    if best is None or not plan.start:
        return None
    metric, mode = plan.space.metric, plan.space.mode
    scored = [(t.params, score) for t in trials if (score := _score(t, metric)) is not None]
    if plan.warm_start is not None:
        scored += list(plan.warm_start.trials)
    found = start_scores(plan.start, scored)
    if not found:
        return None
    label, start = (max if mode == "max" else min)(found, key=lambda pair: pair[1])
    first_start = min(t.started_at for t in trials)
    return Gain(metric=metric, mode=mode, best=best.metrics[metric], start=start, start_label=label,
                best_trial=best.name.split(":", 1)[0], after_s=(best.ended_at or time.time()) - first_start)


def _copy_best_model(recorder: SearchRecorder, best: TrialRecord) -> None:
    """The best trial's model on the parent run too (``best_model/``), so that the search's run
    holds its result; a failure only warns (the trial's copy and the results stay)."""
    try:
        recorder.copy_artifacts(best.run_id, Artifacts.MODEL, recorder.parent_run_id, Artifacts.BEST_MODEL)
    except Exception as exc:  # the search's results must be kept whatever the copy does
        logger.warning("copying the best model to the search's run failed (%s: %s); it stays in the best "
                       "trial's run", type(exc).__name__, exc)


def _best_model(plan: SearchPlan, config: dict[str, Any], recorder: SearchRecorder,
                best: TrialRecord, *, refit: bool) -> str | None:
    """The best trial's model URI: the one its trial logged, or, for a family whose trials log
    none (scikit-learn), its config refitted on all the data and logged to its run now (not
    after an interrupt, ``refit`` False: the user is waiting for the search to stop)."""
    if best.run_id is None:
        return None
    if plan.trainable.final_model is not None and refit:
        with tempfile.TemporaryDirectory() as folder:
            model = Path(folder) / Artifacts.MODEL
            try:
                plan.trainable.final_model(config, model)
            except Exception as exc:  # the search's results must be kept whatever the refit does
                logger.warning("refitting the best config for MLflow failed (%s: %s); the search's "
                               "results are kept, without a model", type(exc).__name__, exc)
                return None
            recorder.log_artifacts(best.run_id, Path(folder))
    uri = f"runs:/{best.run_id}/{Artifacts.MODEL}"
    return uri if recorder.has_model(best.run_id, Artifacts.MODEL) else None


def _search_params(plan: SearchPlan, config: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    from tuneforge import __version__

    options = plan.options
    params = {"algo": options.algo, "n_trials": plan.setup.n_trials, "seed": plan.seed,
              "max_concurrent": options.max_concurrent, "space": plan.space.name,
              "trainable": plan.space.trainable, "metric": plan.space.metric,
              "mode": plan.space.mode, "cpus_per_trial": options.cpus_per_trial,
              "gpus_per_trial": options.gpus_per_trial, "workers_per_trial": options.workers_per_trial,
              "ray_address": cluster.address,
              "tuneforge_version": __version__}
    if options.algo == "grid":
        params["grid_points"] = options.grid_points
    if plan.schedule is not None:
        params.update(scheduler=plan.schedule.name, max_epochs=plan.schedule.max_epochs,
                      grace_period=plan.schedule.grace_period)
    params["start_points"] = ", ".join(plan.start.labels) or "none"
    if plan.warm_start is not None:
        params["warm_start"] = options.warm_start
    if plan.time_budget_s is not None:
        params["time_budget_s"] = plan.time_budget_s
    return {**params, **{f"config.{key}": value for key, value in config.items()}}


def _space_document(space: SearchSpace) -> str:
    """The space file as written (comments kept), or the YAML of a space built in Python."""
    import yaml

    if space.source is not None:
        return space.source.read_text()
    return yaml.safe_dump(space_document(space), sort_keys=False)


def _results_csv(trials: Iterable[TrialRecord], space: SearchSpace) -> str:
    """One row per trial: ids, status, searched params and the last value of every metric."""
    rows = [{"trial_id": t.trial_id, "run_id": t.run_id, "status": t.status.value, "node_ip": t.node_ip,
             "started_at": t.started_at, "ended_at": t.ended_at,
             **{name: t.params.get(name) for name in space.param_names}, **t.metrics,
             "error": t.error} for t in trials]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

