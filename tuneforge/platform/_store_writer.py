"""Every MLflow write of a search, made by :class:`StoreWriter` on the recorder's writer thread.

On the driver, only this module imports MLflow, and only on that thread: the import and the
store's schema check (~1.5 s together) overlap Ray's start instead of delaying the search.
(Trials import MLflow themselves only to write their model folder, see
:mod:`tuneforge.trainables.torch.export`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuneforge.schema import Artifacts, Roles, Tags, TrialStatus

logger = logging.getLogger(__name__)

_ARTIFACTS_FOLDER = "mlruns"
_SECRET_NAME = re.compile(r"token|password|passwd|secret|api[_-]?key|credential", re.IGNORECASE)
_MASK = "***"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_PARAMS_PER_BATCH = 100  # MLflow's limit on params + tags in one log_batch
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# What a store says while another process creates or migrates its schema (issue 9, "Faults"):
# SQLite's and PostgreSQL's words for a table, column or type made meanwhile, a lock, and
# MLflow's check of a schema whose migration is not finished yet.
_SCHEMA_RACE = re.compile(r"already exists|duplicate (column|key value)|database is locked|"
                          r"out-of-date database schema|online migration expected", re.IGNORECASE)
_OPEN_ATTEMPTS = 5
_OPEN_BACKOFF_S = 0.2  # doubled after each failed attempt: 0.2 + 0.4 + 0.8 + 1.6 s in all


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, so that its artifacts do not land in whatever the cwd is
    (MLflow's default, ``./mlruns``); elsewhere, the store's or server's own default."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    folder = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve().parent
    return (folder / _ARTIFACTS_FOLDER / re.sub(r"[^A-Za-z0-9._-]+", "-", experiment)).as_uri()


def store_exists(tracking_uri: str) -> bool:
    """Whether opening the store creates nothing: an existing SQLite file or folder, a server."""
    scheme = urlparse(tracking_uri).scheme
    if scheme == "sqlite":
        return Path(tracking_uri.removeprefix("sqlite:///")).expanduser().is_file()
    if scheme in ("", "file"):
        return Path(urlparse(tracking_uri).path or tracking_uri).expanduser().is_dir()
    return scheme in ("http", "https")


def param_value(name: str, value: Any) -> str:
    """A param as MLflow stores it: text, secrets masked, cut to MLflow's limit."""
    if _SECRET_NAME.search(name):
        return _MASK
    text = json.dumps(value, default=repr) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:_MAX_PARAM_CHARS]


@dataclass
class _ChildRun:
    name: str
    params: dict[str, Any]
    start_ms: int
    run_id: str | None = None
    logged_batches: set[str] = field(default_factory=set)


class StoreWriter:
    """Every MLflow write of one search. Methods are called in the order the driver sent them."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.trials: dict[str, _ChildRun] = {}

    def open(self, *, create: bool) -> None:
        """Import MLflow and open the store, unless that would create it and ``create`` is off."""
        from mlflow import MlflowClient

        # MLflow's client prints a "View run" link to stdout for each run ended on a server
        # (one more request per trial); the search's summary links to the runs instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
            # They log every schema migration of a new SQLite store at INFO.
            logging.getLogger(name).setLevel(logging.WARNING)
        # It logs each failed write with its traceback at ERROR; the recorder counts them, stops
        # the search when the store stopped taking writes, and says so in one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        if self.client is None and (create or store_exists(self.tracking_uri)):
            self.client = _open_client(MlflowClient, self.tracking_uri)

    def start_search(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str],
                     artifacts: Mapping[str, str]) -> tuple[str, str]:
        """Create the experiment if needed and the parent run; returns their ids."""
        self.open(create=True)
        self.experiment_id = self._get_or_create_experiment()
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={Tags.ROLE: Roles.SEARCH, **tags})
        self.parent_run_id = run.info.run_id
        self._log_batch(self.parent_run_id, params=_params(params))
        for name, text in artifacts.items():
            self.client.log_text(self.parent_run_id, text, name)
        return self.experiment_id, self.parent_run_id

    def set_experiment_tag(self, name: str, value: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, name, value)

    def _get_or_create_experiment(self) -> str:
        """The experiment's id, restoring it if deleted, creating it if missing. Another driver
        may create it between the look-up and the creation: then it is looked up again."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                return self.client.create_experiment(
                    self.experiment, artifact_location=artifact_location(self.tracking_uri, self.experiment))
            except MlflowException as exc:
                experiment = self.client.get_experiment_by_name(self.experiment)
                if exc.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
                    raise
                logger.debug("experiment %s was created meanwhile by another driver", self.experiment)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def add_trial(self, trial_id: str, name: str, params: Mapping[str, Any], start_ms: int) -> None:
        """A trial started: its run is created now, with its params, so that a trial in flight
        when the driver dies is seen (RUNNING, then KILLED or resumed)."""
        self.trials[trial_id] = _ChildRun(name=name, params=dict(params), start_ms=start_ms)
        run_id, params = self._run_of(trial_id)
        if params:
            self._log_batch(run_id, params=params)

    def restart_trial(self, trial_id: str, n_restarts: int) -> None:
        """A known trial started again (its worker died, or its search was resumed): its one
        run is RUNNING again, with its count of restarts."""
        run_id, _ = self._run_of(trial_id)
        self.client.update_run(run_id, status=TrialStatus.RUNNING.value)
        self.client.set_tag(run_id, Tags.RESTARTS, str(n_restarts))

    def mark_lost(self, trial_id: str, reason: str, *, delete: bool) -> None:
        """A run whose trial the resumed search does not know: deleted when it holds no result
        (``delete``), else KILLED and tagged why."""
        run = self.trials.pop(trial_id)
        if delete:
            self.client.delete_run(run.run_id)
            return
        self.client.set_tag(run.run_id, Tags.LOST, reason)
        self.client.set_terminated(run.run_id, status=TrialStatus.KILLED.value)

    def resume_search(self, parent_run_id: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        """Continue the search of ``parent_run_id``: the parent is RUNNING again, each trial's
        run is known by its trial id (never created twice); returns each trial run's status,
        tags, params (as text) and last metrics, with the step of its last result."""
        self.open(create=False)
        parent = self.client.get_run(parent_run_id)
        self.experiment_id, self.parent_run_id = parent.info.experiment_id, parent_run_id
        resumes = int(parent.data.tags.get(Tags.RESUMES, "0")) + 1
        self.client.update_run(parent_run_id, status=TrialStatus.RUNNING.value)
        self._log_batch(parent_run_id, tags=_tags({Tags.RESUMES: str(resumes), **tags}))
        children = []
        for run in _all_runs(self.client, self.experiment_id,
                             f"tags.`{Tags.PARENT_RUN_ID}` = '{parent_run_id}'"):
            trial_id = run.data.tags.get(Tags.TRIAL_ID)
            if trial_id is None:
                continue
            self.trials[trial_id] = _ChildRun(name=run.info.run_name, params=dict(run.data.params),
                                              start_ms=run.info.start_time, run_id=run.info.run_id)
            first = next(iter(run.data.metrics), None)
            steps = [m.step for m in self.client.get_metric_history(run.info.run_id, first)] if first else []
            children.append({"trial_id": trial_id, "run_id": run.info.run_id, "name": run.info.run_name,
                             "status": run.info.status, "tags": dict(run.data.tags),
                             "params": dict(run.data.params), "metrics": dict(run.data.metrics),
                             "started_at": run.info.start_time / 1000,
                             "ended_at": run.info.end_time / 1000 if run.info.end_time else None,
                             "step": max(steps, default=0)})
        return children

    def start_driving(self, driver: str) -> None:
        """This process now drives the search (:attr:`Tags.DRIVER`)."""
        self.client.set_tag(self.parent_run_id, Tags.DRIVER, driver)

    def heartbeat(self, now: float) -> None:
        """The driver is alive (:attr:`Tags.HEARTBEAT`)."""
        if self.parent_run_id is not None:
            self.client.set_tag(self.parent_run_id, Tags.HEARTBEAT, f"{now:.0f}")

    def log_result(self, trial_id: str, metrics: Mapping[str, float], step: int,
                   tags: Mapping[str, str], artifacts: Path | None) -> None:
        run_id, params = self._run_of(trial_id)
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        self._log_batch(run_id, metrics=_metrics(finite, step), params=params, tags=_tags(tags))
        self._log_new_batches(trial_id, artifacts)

    def end_trial(self, trial_id: str, status: TrialStatus, artifacts: Path | None,
                  error: str | None, tags: Mapping[str, str]) -> None:
        """Log the artifact batches not yet logged, the error if any, ``tags``, and close the run."""
        run_id, params = self._run_of(trial_id)
        if error:
            tags = {**tags, Tags.ERROR: error.strip().splitlines()[-1][:_MAX_PARAM_CHARS]}
        tags = _tags(tags)
        if status.value != status.mlflow_status:  # STOPPED: MLflow has no such status
            tags += _tags({Tags.STATUS: status.value})
        if params or tags:
            self._log_batch(run_id, params=params, tags=tags)
        self._log_new_batches(trial_id, artifacts)
        if error:
            self.client.log_text(run_id, error, Artifacts.ERROR)
        self.client.set_terminated(run_id, status=status.mlflow_status)

    def _log_new_batches(self, trial_id: str, artifacts: Path | None) -> None:
        """Log each complete artifact batch of the trial not logged before, oldest first, into
        the run's root (a later batch's file replaces an earlier one of the same path)."""
        if artifacts is None:
            return
        from tuneforge.trainables._session import complete_batches

        run = self.trials[trial_id]
        for batch in complete_batches(artifacts):
            if batch.name not in run.logged_batches:
                self.client.log_artifacts(run.run_id, str(batch))
                run.logged_batches.add(batch.name)

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        self.client.log_artifacts(run_id, str(folder))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def copy_artifacts(self, source_run_id: str, path: str, run_id: str, as_path: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            local = self.client.download_artifacts(source_run_id, path, folder)
            self.client.log_artifacts(run_id, local, as_path)

    def has_model(self, run_id: str, path: str) -> bool:
        return any(Path(f.path).name == "MLmodel" for f in self.client.list_artifacts(run_id, path))

    def register_model(self, name: str, model_uri: str) -> str:
        from mlflow.exceptions import MlflowException

        run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{path}"
        return self.client.create_model_version(name, source=source, run_id=run_id).version

    def run_ids(self) -> dict[str, str | None]:
        """Each trial's MLflow run id (None if its run could not be created)."""
        return {trial_id: run.run_id for trial_id, run in self.trials.items()}

    def end_search(self, status: TrialStatus, metrics: Mapping[str, float], tags: Mapping[str, str],
                   artifacts: Mapping[str, str]) -> None:
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        self._log_batch(self.parent_run_id, metrics=_metrics(finite, 0), tags=_tags(tags))
        for name, text in artifacts.items():
            self.client.log_text(self.parent_run_id, text, name)
        self.client.set_terminated(self.parent_run_id, status=status.mlflow_status)

    def _run_of(self, trial_id: str) -> tuple[str, list[Any]]:
        """The trial's run id, creating the run if needed, and the params still to log."""
        run = self.trials[trial_id]
        if run.run_id is not None:
            return run.run_id, []
        created = self.client.create_run(
            self.experiment_id, run_name=run.name, start_time=run.start_ms,
            tags={Tags.PARENT_RUN_ID: self.parent_run_id, Tags.ROLE: Roles.TRIAL,
                  Tags.TRIAL_ID: trial_id})
        run.run_id = created.info.run_id
        return run.run_id, _params(run.params)

    def _log_batch(self, run_id: str, *, metrics: list[Any] = (), params: list[Any] = (),
                   tags: list[Any] = ()) -> None:
        """One ``log_batch``, or more where params and tags pass MLflow's limit per batch."""
        from mlflow.entities import Param

        entries = [*tags, *params]
        for start in range(0, max(len(entries), 1), _PARAMS_PER_BATCH):
            chunk = entries[start:start + _PARAMS_PER_BATCH]
            self.client.log_batch(run_id, metrics=metrics if start == 0 else [],
                                  params=[e for e in chunk if isinstance(e, Param)],
                                  tags=[e for e in chunk if not isinstance(e, Param)])


def _all_runs(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every run of the experiment that matches, page by page (MLflow returns 1000 at most)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _open_client(client_class: type, tracking_uri: str) -> Any:
    """``client_class(tracking_uri)``, which creates and migrates the schema of a new database
    store, safe against other drivers opening the same new store at once.

    MLflow's store creates its tables and runs its migrations without a lock, so two processes
    on a new store fail (``table ... already exists``) or, worse, run a migration twice
    (``duplicate column name``). Drivers on this host take turns by a file lock; one elsewhere
    (or another tool) that still races is retried a few times with a backoff, after which the
    schema the other process made is opened.
    """
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with _store_lock(tracking_uri):
                return client_class(tracking_uri)
        except Exception as exc:
            if attempt == _OPEN_ATTEMPTS - 1 or not _SCHEMA_RACE.search(str(exc)):
                raise
            logger.debug("store %s was being created by another process (%s); retrying",
                         tracking_uri, str(exc).splitlines()[0])
            time.sleep(_OPEN_BACKOFF_S * 2 ** attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock, across this host's processes, on a database store (none on Windows,
    or for another store). The lock file lives in the temp folder, keyed by the store, as
    MLflow's own ``_safe_initialize_tables`` does, so nothing is added beside the store."""
    scheme = urlparse(tracking_uri).scheme.split("+")[0]
    if os.name != "posix" or scheme not in _DATABASE_SCHEMES:
        yield
        return
    import fcntl

    if scheme == "sqlite":  # one file however it is named
        tracking_uri = str(Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve())
    key = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"tuneforge-store-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(name, param_value(name, value)) for name, value in values.items()]


def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    return [Metric(name, float(value), timestamp, step) for name, value in values.items()]


def _tags(values: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(name, str(value)) for name, value in values.items()]
