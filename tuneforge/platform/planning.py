"""Planning a search: every check of its input, before anything is created.

A search is validated in two steps. :func:`plan_search` checks the space, the names MLflow
will log, the options, the family's cheap checks (``Trainable.check``: its config's keys and
types), the algorithm and budget, the tracking store and the storage (that each can be created
and written) at once, before Ray starts. :func:`prepare_trials` runs the trainable family's own
checks (estimator, params, dataset, metric), which import its library (about a second); the
runner calls it before Ray starts. Each problem is a ConfigError, and bad input
therefore leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuneforge._checks import parse_duration
from tuneforge._paths import check_writable
from tuneforge.errors import ConfigError, first_line
from tuneforge.platform._options import SearchOptions
from tuneforge.platform.cluster import autoscaler_node_types, resolve_address
from tuneforge.platform.schedulers import Schedule, plan_schedule, progress_key
from tuneforge.platform.searchers import Budget, Evaluated, SearchSetup, setup_search
from tuneforge.platform.starting_points import StartingPoints, plan_starting_points
from tuneforge.platform.tracking import check_tracking_uri, resolve_tracking_uri
from tuneforge.platform.warm_start import WarmStart, read_warm_start
from tuneforge.search_spaces import SearchSpace, load_space
from tuneforge.trainables import get_trainable
from tuneforge.trainables._base import Trainable
from tuneforge.trainables.user import user_trainable

__all__ = ["SearchOptions", "SearchPlan", "limit_concurrency", "plan_search", "prepare_trials"]

_DEFAULT_STORAGE = "ray_results"
_MAX_SEED = 2**32 - 1
"""Seeds are handed to numpy's and Optuna's generators, which take 0 to 2**32 - 1."""
_MAX_EXPERIMENT_CHARS = 500
"""MLflow's longest experiment name."""
_MLFLOW_NAME = re.compile(r"[\w\-.: /]{1,200}")
"""MLflow's rule for param and metric names (mlflow/utils/validation.py), and a length that
leaves room for the ``config.`` prefix within its 250 characters."""
_STORAGE_ANSWER_S = 20.0
"""How long a remote storage may take to answer the check before the search starts."""
_STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
"""URI schemes Ray Tune's storage opens (through pyarrow's ``FileSystem.from_uri``; its
``mock://`` keeps nothing). A URI is opened before the search starts: a bucket or host that
cannot be reached is refused then (see :func:`_check_reachable`)."""


@dataclass(frozen=True)
class SearchPlan:
    """A validated search, ready to run: nothing has been created yet."""

    space: SearchSpace
    trainable: Trainable
    setup: SearchSetup
    """The algorithm's trials and param space; its search algorithm is built by the runner,
    once the concurrency (``options.max_concurrent``) is settled."""
    options: SearchOptions
    seed: int
    experiment: str
    tracking_uri: str
    address: str | None
    storage: str
    """What Tune is given as its ``storage_path``: an absolute folder or a URI."""
    local_dir: Path
    """The driver's own folder for the search (artifact inbox): the storage folder when it is
    local, else ./ray_results."""
    schedule: Schedule | None = None
    """The early-stopping scheduler and its budgets; None: every trial runs to its end."""
    start: StartingPoints = field(default_factory=StartingPoints)
    """The points every algorithm evaluates first (``--start-from``), less those a warm start
    scored already (``setup`` does not run them again); the gain is measured against them all."""
    warm_start: WarmStart | None = None
    """Earlier searches' trials the search learns from (``--warm-start``)."""
    time_budget_s: float | None = None
    """The search's wall-clock budget (``--time-budget``); None: none."""
    kept_trials: frozenset[str] = frozenset()
    """Trials of a resumed search that its Ray Tune experiment does not know: those that ended
    before a resume rebuilt it from MLflow (:attr:`~.resume.SavedSearch.kept_trials`)."""

    def experiment_path(self, name: str) -> str:
        """Where Tune keeps the experiment ``name``: a folder or a URI."""
        return f"{self.storage.rstrip('/')}/{name}"


def _check_options(options: SearchOptions) -> None:
    """The flags on their own, before anything else is read."""
    _check_texts(options)
    if options.seed is not None and not 0 <= options.seed <= _MAX_SEED:
        raise ConfigError(f"--seed: expected 0 to 2**32 - 1 ({_MAX_SEED}), got {options.seed}")
    if options.trials is not None and options.trials < 1:
        raise ConfigError(f"--trials: expected at least 1, got {options.trials}")
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent: expected at least 1, got {options.max_concurrent}")
    if not 0 < options.cpus_per_trial < math.inf:
        raise ConfigError(f"--cpus-per-trial: expected a positive number, got {options.cpus_per_trial}")
    if not 0 <= options.gpus_per_trial < math.inf:
        raise ConfigError(f"--gpus-per-trial: expected 0 or more, got {options.gpus_per_trial}")
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures: expected 0 or more, got {options.max_failures}")
    if options.keep_checkpoints < 1:
        raise ConfigError(f"--keep-checkpoints: expected at least 1, got {options.keep_checkpoints}")
    if options.workers_per_trial < 1:
        raise ConfigError(f"--workers-per-trial: expected at least 1, got {options.workers_per_trial}")
    if options.time_budget is not None:
        parse_duration("--time-budget", options.time_budget)


def _check_texts(options: SearchOptions) -> None:
    """An empty text flag would quietly mean its default; refuse it instead."""
    texts = {"--tracking-uri": options.tracking_uri, "--experiment": options.experiment,
             "--storage": None if options.storage is None else str(options.storage),
             "--register-model": options.register_model, "--warm-start": options.warm_start}
    for flag, text in texts.items():
        if text is not None and not text.strip():
            raise ConfigError(f"{flag}: expected a value, got an empty one (leave the flag out for "
                              "its default)")
    if options.experiment is not None and len(options.experiment) > _MAX_EXPERIMENT_CHARS:
        raise ConfigError(f"--experiment: {len(options.experiment)} characters; MLflow takes at most "
                          f"{_MAX_EXPERIMENT_CHARS}")


def _check_names(space: SearchSpace) -> None:
    """The space's param names, config keys and metric, which the runner logs to MLflow as
    params and metrics: MLflow's rule (letters, digits, spaces, ``_ - . : /``; no ``.`` or
    ``..`` part and no leading ``/``), so that a search is not refused after its parent run
    was created."""
    where = space.source or space.name
    names = [("params", n) for n in space.param_names] + [("config", k) for k in space.config]
    for key, name in [*names, ("metric", space.metric)]:
        text = str(name)
        if not (_MLFLOW_NAME.fullmatch(text) and posixpath.normpath(text) == text
                and not text.startswith(("/", "..")) and text != "."):
            raise ConfigError(f"{where}: {key}: {name!r} is not a name MLflow can log; use up to 200 "
                              "letters, digits, spaces and _ - . : / (no '..' part)")


def _storage(storage: str | Path | None) -> tuple[str, Path]:
    """Tune's storage (an absolute folder or a URI) and the driver's local folder; a local
    folder must be one this process can create or write in."""
    text = str(storage or _DEFAULT_STORAGE)
    parsed = urlparse(text)
    if "://" not in text:
        folder = Path(text).expanduser().resolve()
        check_writable(folder, "--storage", folder=True)
        return str(folder), folder
    scheme = text.split("://", 1)[0]  # as written: pyarrow refuses S3:// where urlparse says s3
    if scheme == "file":
        if not parsed.path.startswith("/"):
            raise ConfigError(f"--storage: {text!r} is not an absolute file:// URI (file:///path)")
        check_writable(Path(parsed.path), "--storage", folder=True)
        return text, Path(parsed.path)
    if scheme not in _STORAGE_SCHEMES:
        raise ConfigError(f"--storage: Ray Tune cannot open {scheme!r} URIs; use a folder or "
                          f"one of {', '.join(f'{s}://' for s in _STORAGE_SCHEMES)}")
    if not parsed.netloc:
        raise ConfigError(f"--storage: {text!r} names no bucket or host; e.g. s3://bucket/path")
    _check_reachable(text)
    return text, Path(_DEFAULT_STORAGE).resolve()


def _check_reachable(uri: str) -> None:
    """Ask the storage at ``uri`` about its path, as Ray Tune's pyarrow will; creates nothing.
    It takes seconds where the network or the bucket is missing, and GCS's client retries for
    minutes: a storage without an answer in ``_STORAGE_ANSWER_S`` is refused too."""
    import threading

    import pyarrow
    import pyarrow.fs

    failures: list[str] = []

    def ask() -> None:
        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
            filesystem.get_file_info(path)
        except (OSError, pyarrow.ArrowException) as exc:
            failures.append(first_line(exc))

    asking = threading.Thread(target=ask, daemon=True, name="tuneforge-storage-check")
    asking.start()
    asking.join(_STORAGE_ANSWER_S)
    if asking.is_alive():
        failures.append(f"no answer in {_STORAGE_ANSWER_S:g} s")
    if failures:
        raise ConfigError(f"--storage: cannot reach {uri}: {failures[0]}")


def plan_search(space: SearchSpace | str | Path, options: SearchOptions | None = None, *,
                trainable: Callable[[dict[str, Any]], None] | None = None,
                rebuilding: bool = False) -> SearchPlan:
    """Check a search's space and options, without side effects; each problem is a ConfigError.

    ``trainable`` is a user's own function, run instead of the space's ``trainable``.
    ``rebuilding``: ``options.warm_start`` is the search's own parent run (a resume whose saved
    state was lost), whose finished trials random and grid search do not run again."""
    options = options or SearchOptions()
    space = space if isinstance(space, SearchSpace) else load_space(space)
    _check_names(space)
    _check_options(options)
    base_dir = space.source.parent if space.source else None
    family = user_trainable(trainable) if trainable is not None else get_trainable(space.trainable, base_dir)
    if family.check is not None:
        family.check(space)
    if options.workers_per_trial > 1 and not family.data_parallel:
        raise ConfigError(f"--workers-per-trial {options.workers_per_trial}: trainable {family.name!r} "
                          "runs each trial in one process; data-parallel trials need a torch family "
                          "that shards its epochs (vit, transformer, the GANs, darts-net)")
    if options.cluster_config is not None:
        autoscaler_node_types(Path(options.cluster_config))  # a bad file is refused now
    if options.smoke and not family.smoke:
        raise ConfigError(f"--smoke: trainable {family.name!r} runs one step a trial; --smoke shrinks "
                          "per-epoch families (vit, ...) only")
    schedule = plan_schedule(options.scheduler, space, family, max_epochs=options.max_epochs,
                             grace_period=options.grace_period, smoke=options.smoke)
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    start = plan_starting_points(options.start_from, space, family)
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    check_tracking_uri(tracking_uri)
    warm, to_run = None, start
    if options.warm_start is not None:
        warm = read_warm_start(options.warm_start, space, tracking_uri, smoke=options.smoke,
                               step_metric=progress_key(space, family))
        to_run = start.without([values for values, _ in warm.trials])  # scored before: not run again
    time_budget_s = parse_duration("--time-budget", options.time_budget) if options.time_budget else None
    budget = Budget(trials=options.trials, seed=seed, grid_points=options.grid_points,
                    step_metric=progress_key(space, family), start=to_run.points,
                    evaluated=_evaluated(warm), unlimited=time_budget_s is not None,
                    evaluated_here=rebuilding)
    setup = setup_search(options.algo, space, budget)
    storage, local_dir = _storage(options.storage)
    return SearchPlan(space=space, trainable=family, setup=setup, options=options,
                      seed=seed, experiment=options.experiment or space.name,
                      tracking_uri=tracking_uri, address=resolve_address(options.address),
                      storage=storage, local_dir=local_dir, schedule=schedule, start=start,
                      warm_start=warm, time_budget_s=time_budget_s)


def _evaluated(warm: WarmStart | None) -> tuple[Evaluated, ...]:
    """A warm start's trials as the searchers take them."""
    if warm is None:
        return ()
    return tuple(Evaluated(values, score, step)
                 for (values, score), step in zip(warm.trials, warm.steps, strict=True))


def limit_concurrency(plan: SearchPlan, most: int) -> SearchPlan:
    """The plan with at most ``most`` trials at once. The runner's, for a data-parallel search:
    its workers' resources are Ray Train's, which Tune does not count, so Tune would start
    trials whose workers could only wait. The search algorithm is not built yet (the runner
    builds it once, with ``options.max_concurrent``), so nothing is rebuilt."""
    if plan.options.max_concurrent is not None and plan.options.max_concurrent <= most:
        return plan
    return dataclasses.replace(plan, options=dataclasses.replace(plan.options, max_concurrent=most))


def prepare_trials(plan: SearchPlan) -> dict[str, Any]:
    """The trainable's checks of the space; returns the fixed config every trial receives."""
    space, trainable = plan.space, plan.trainable
    config = trainable.prepare(space)
    if trainable.metrics is not None:  # a user's function: known when it reports
        reported = trainable.metrics(config)
        if space.metric not in reported:
            raise ConfigError(f"{space.source or space.name}: metric: {space.metric!r} is not reported by "
                              f"trainable {trainable.name!r}; it reports: {', '.join(sorted(reported))}")
    if plan.options.smoke:
        config["smoke"] = True
    return config
