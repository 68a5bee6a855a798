"""MLflow tracking: where the store is, and how one search is written to it.

A search is one parent run in the experiment named after it; each trial is a nested child run
(tag ``mlflow.parentRunId``) with its searched params, every reported metric at its step, its
status, its trial id and node, and the files of its last checkpoint as artifacts. All of it is
written from the driver, so trials on other nodes never touch the store, and by one background
thread, in order, so the Tune loop never waits on the store. Each trial is written when it
ends: an interrupted search keeps every trial that finished.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuneforge.errors import ConfigError

__all__ = ["SearchRecorder", "TrialRecord", "check_tracking_uri", "resolve_tracking_uri"]

logger = logging.getLogger(__name__)

_SQLITE_FILE = "mlflow.db"
_ARTIFACTS_FOLDER = "mlruns"
_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
_HTTP_TIMEOUT_S = 5.0
_DATABASE_SCHEMES = {"postgresql", "mysql", "mssql"}
_SECRET_NAME = re.compile(r"token|password|passwd|secret|api[_-]?key|credential", re.IGNORECASE)
_MASK = "***"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_PARAMS_PER_BATCH = 100  # MLflow's limit on params + tags in one log_batch


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the cwd."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / _SQLITE_FILE}"


def check_tracking_uri(uri: str) -> None:
    """ConfigError for a store MLflow cannot use; creates nothing."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().parent
        if not folder.is_dir():
            raise ConfigError(f"--tracking-uri: folder {folder} of the SQLite store does not exist")
    elif scheme in ("", "file"):
        folder = Path(parsed.path or uri).expanduser().parent
        if not folder.is_dir():
            raise ConfigError(f"--tracking-uri: folder {folder} does not exist")
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme not in _DATABASE_SCHEMES and scheme != "databricks":
        raise ConfigError(f"--tracking-uri: unsupported scheme {parsed.scheme!r}; use sqlite:///path.db, "
                          "http(s)://host:port, postgresql://... or a folder")


def _check_server(uri: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_HTTP_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"--tracking-uri: no MLflow server answers at {uri} ({reason})") from None


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, so that its artifacts do not land in whatever the cwd is
    (MLflow's default, ``./mlruns``); elsewhere, the store's or server's own default."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    folder = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve().parent
    return (folder / _ARTIFACTS_FOLDER / re.sub(r"[^A-Za-z0-9._-]+", "-", experiment)).as_uri()


def _param_value(name: str, value: Any) -> str:
    """A param as MLflow stores it: text, secrets masked, cut to MLflow's limit."""
    if _SECRET_NAME.search(name):
        return _MASK
    text = json.dumps(value, default=repr) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:_MAX_PARAM_CHARS]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TrialRecord:
    """What the recorder knows of one trial; the summary and the results table read it."""

    trial_id: str
    name: str
    params: dict[str, Any]
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    """The last value of each metric the trial reported."""
    run_id: str | None = None
    node_ip: str | None = None
    error: str | None = None


class SearchRecorder:
    """Writes one search to an MLflow store: the parent run, then a child run per trial.

    Calls return at once; the writes happen in order on one background thread.
    :meth:`end_search` waits for them all. Writes that the store refuses are counted and
    warned about once, and never stop the search.
    """

    def __init__(self, *, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.trials: dict[str, TrialRecord] = {}
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self.n_failed_writes = 0
        self._client: Any = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    # -- the search ------------------------------------------------------------------------

    def start_search(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str],
                     artifacts: Mapping[str, str]) -> str:
        """Create the experiment if needed and the parent run; returns the parent run id."""
        from mlflow import MlflowClient

        _quiet_mlflow_loggers()
        self._client = MlflowClient(self.tracking_uri)
        experiment = self._client.get_experiment_by_name(self.experiment)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            self._client.restore_experiment(experiment.experiment_id)
        self.experiment_id = (experiment.experiment_id if experiment is not None else
                              self._client.create_experiment(
                                  self.experiment, artifact_location=_artifact_location(
                                      self.tracking_uri, self.experiment)))
        run = self._client.create_run(self.experiment_id, run_name=run_name,
                                      tags={"tuneforge.role": "search", **tags})
        self.parent_run_id = run.info.run_id
        self._log_params(self.parent_run_id, params)
        for name, text in artifacts.items():
            self._client.log_text(self.parent_run_id, text, name)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-mlflow")
        return self.parent_run_id

    def flush(self) -> None:
        """Mark trials still running as KILLED and wait for every pending write."""
        from mlflow.exceptions import MlflowException

        if self._writer is None:
            return
        for record in self.trials.values():
            if record.status == "RUNNING":
                self.end_trial(record.trial_id, "KILLED")
        self._writer.shutdown(wait=True)
        self._writer = None
        for future in self._pending:
            error = future.exception()
            if isinstance(error, (MlflowException, OSError)):
                self.n_failed_writes += 1
            elif error is not None:
                raise error
        if self.n_failed_writes:
            logger.warning("%d MLflow writes failed; the trials' results are also in the Ray "
                           "results folder", self.n_failed_writes)

    def end_search(self, status: str, *, metrics: Mapping[str, float], tags: Mapping[str, str],
                   artifacts: Mapping[str, str]) -> None:
        """Close the parent run with its final metrics, tags and artifacts (after :meth:`flush`)."""
        self.flush()
        client, run_id = self._client, self.parent_run_id
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        client.log_batch(run_id, metrics=_metrics(finite, step=0), tags=_tags(tags))
        for name, text in artifacts.items():
            client.log_text(run_id, text, name)
        client.set_terminated(run_id, status=status)

    def _submit(self, write: Callable[..., None], *args: Any) -> None:
        assert self._writer is not None, "start_search() must come first"
        self._pending.append(self._writer.submit(write, *args))

    # -- trials ----------------------------------------------------------------------------

    def start_trial(self, trial_id: str, name: str, params: Mapping[str, Any]) -> None:
        """A trial started: open its child run."""
        record = TrialRecord(trial_id=trial_id, name=name, params=dict(params))
        self.trials[trial_id] = record
        self._submit(self._write_trial_start, record)

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], *, step: int,
                    node_ip: str | None = None) -> None:
        """One result of a trial: its metrics at ``step`` (non-finite values are skipped)."""
        record = self.trials[trial_id]
        record.metrics.update(metrics)
        tags = {}
        if node_ip and record.node_ip is None:
            record.node_ip = tags["tuneforge.node_ip"] = node_ip
        self._submit(self._write_metrics, record, dict(metrics), step, tags)

    def end_trial(self, trial_id: str, status: str, *, checkpoint: Any = None,
                  error: str | None = None) -> None:
        """A trial ended (FINISHED, FAILED or KILLED): log the files of its last checkpoint
        (a ``ray.tune.Checkpoint``) as artifacts, its error trace if any, and close its run."""
        record = self.trials[trial_id]
        record.status = status
        if error:
            error = _ANSI_CODES.sub("", error)
            record.error = error.strip().splitlines()[-1]
        self._submit(self._write_trial_end, record, checkpoint, error)

    def _write_trial_start(self, record: TrialRecord) -> None:
        run = self._client.create_run(
            self.experiment_id, run_name=record.name,
            tags={"mlflow.parentRunId": self.parent_run_id, "tuneforge.role": "trial",
                  "tuneforge.trial_id": record.trial_id})
        record.run_id = run.info.run_id
        self._log_params(record.run_id, record.params)

    def _write_metrics(self, record: TrialRecord, metrics: dict[str, float], step: int,
                       tags: dict[str, str]) -> None:
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        self._client.log_batch(record.run_id, metrics=_metrics(finite, step), tags=_tags(tags))

    def _write_trial_end(self, record: TrialRecord, checkpoint: Any, error: str | None) -> None:
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                self._client.log_artifacts(record.run_id, folder)
        if error:
            self._client.log_text(record.run_id, error, "error.txt")
            self._client.set_tag(record.run_id, "tuneforge.error", record.error[:_MAX_PARAM_CHARS])
        self._client.set_terminated(record.run_id, status=record.status)

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(name, _param_value(name, value)) for name, value in params.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=items[start:start + _PARAMS_PER_BATCH])


def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    timestamp = _now_ms()
    return [Metric(name, float(value), timestamp, step) for name, value in values.items()]


def _tags(values: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(name, str(value)) for name, value in values.items()]


def _quiet_mlflow_loggers() -> None:
    """MLflow and alembic log every schema migration of a new SQLite store at INFO."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
