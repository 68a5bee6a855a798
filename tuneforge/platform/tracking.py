"""MLflow tracking: how one search is written to its store (where the store is, and whether it
can be used, is :mod:`tuneforge._tracking_uri`'s, re-exported here).

A search is one parent run in the experiment named after it; each trial is a nested child run
(tag ``mlflow.parentRunId``) with its searched params, every reported metric at its step, its
status, its trial id and node, and the artifacts the trial sent with each result (its
pictures, its model), logged as that result arrives. All of it is
written from the driver, so trials on other nodes never touch the store, by one background
thread, in order, so that the Tune loop never waits on the store. Each result is written as it
arrives: an interrupted search keeps every trial that finished.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge._tracking_uri import check_tracking_uri, resolve_tracking_uri
from tuneforge.errors import first_line
from tuneforge.schema import HEARTBEAT_S, Tags, TrialStatus, driver_tag

if TYPE_CHECKING:
    from tuneforge.platform._store_writer import StoreWriter

__all__ = ["SearchRecorder", "TrialRecord", "check_tracking_uri", "resolve_tracking_uri"]

logger = logging.getLogger(__name__)

_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
_REAP_EVERY = 1000  # pending writes kept before the done ones are counted and dropped
_FAILURES_TO_STOP = 3
"""Writes failing in a row that mean the store stopped taking them (one now and then does not)."""


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, where this process has it (None elsewhere: musl, macOS)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Return the heap memory freed since the last call to the system (glibc's ``malloc_trim``).
    A search's writes allocate and free on the writer thread, whose malloc arena otherwise keeps
    the freed pages: over a 2,000-trial search the driver held tens of MB it no longer used
    (BENCHMARKS.md, "Soak")."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


SCORED = (TrialStatus.FINISHED, TrialStatus.STOPPED)
"""Trials that ended as they should; a failed or killed trial's last value is no score."""
ENDED = (*SCORED, TrialStatus.FAILED)
"""Trials that ended (a KILLED one was interrupted: a resumed search runs it again)."""


@dataclass
class TrialRecord:
    """What the recorder knows of one trial; the summary and the results table read it."""

    trial_id: str
    name: str
    params: dict[str, Any]
    started_at: float = field(default_factory=time.time)
    """When the trial started, by the driver's clock (seconds since the epoch)."""
    ended_at: float | None = None
    status: TrialStatus = TrialStatus.RUNNING
    metrics: dict[str, float] = field(default_factory=dict)
    """The last value of each metric the trial reported."""
    run_id: str | None = None
    node_ip: str | None = None
    error: str | None = None
    n_restarts: int = 0
    """Times the trial restarted from its checkpoint after its worker died (``--max-failures``)."""
    iterations: int = 0
    """The training iteration of its last result (a torch family's epoch)."""
    device: str | None = None
    """Where it trained (``cpu``, ``cuda:0``), for a family that says so in its results."""


class SearchRecorder:
    """Writes one search to an MLflow store: the parent run, then a child run per trial.

    The writes are made by a :class:`~._store_writer.StoreWriter` on one background thread, in
    the order they were asked for; trial calls return at once. A write the store refuses now and
    then is counted and reported when the search ends; once ``_FAILURES_TO_STOP`` writes in a
    row fail, the store has stopped taking writes: :attr:`store_error` says why and
    :attr:`on_store_failure` is called with it, once (the runner stops the search).
    """

    def __init__(self, *, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.trials: dict[str, TrialRecord] = {}
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self.n_failed_writes = 0
        self._writer: StoreWriter | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._failures: list[str] = []
        self._alive = threading.Event()
        self.store_error: str | None = None
        """Why the store stopped taking writes (its last error, one line); None while it takes them."""
        self.on_store_failure: Callable[[str], None] | None = None
        self._failures_in_a_row = 0
        self._closed = False
        """Set once the search is closed (:meth:`end_search`) or given up (:meth:`abandon`)."""

    def preload(self) -> None:
        """Start the writer thread, which imports MLflow and opens the store if it exists.

        About 1.5 s, which the caller overlaps with Ray's start; a store that does not exist
        yet is created by :meth:`start_search`, not here.
        """
        from tuneforge.platform._store_writer import StoreWriter

        self._writer = StoreWriter(self.tracking_uri, self.experiment)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-mlflow")
        self._send("open", create=False)

    def start_search(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str],
                     artifacts: Mapping[str, str]) -> str:
        """Create the experiment if needed and the parent run, tagged with this driver and its
        heartbeat (sent every ``HEARTBEAT_S`` until :meth:`end_search`); returns its id."""
        if self._thread is None:
            self.preload()
        tags = {**tags, Tags.DRIVER: driver_tag(), Tags.HEARTBEAT: f"{time.time():.0f}"}
        self.experiment_id, self.parent_run_id = self._call(
            "start_search", run_name, dict(params), dict(tags), dict(artifacts))
        self._start_heartbeat()
        return self.parent_run_id

    def set_experiment_tag(self, name: str, value: str) -> None:
        """Tag the search's experiment (a shared view of the MLflow UI), before the trials start."""
        self._call("set_experiment_tag", name, value)

    def resume_search(self, parent_run_id: str, params_of: Any,
                      tags: Mapping[str, str] | None = None) -> None:
        """Continue the search ``parent_run_id`` (``tuneforge resume``): the parent is RUNNING
        again, driven by this process, with ``tags`` added; each trial it recorded is known
        again, with its one run, status and last metrics. ``params_of`` turns a run's params
        (MLflow's text) back into the trial's values."""
        if self._thread is None:
            self.preload()
        children = self._call("resume_search", parent_run_id, dict(tags or {}))
        self.parent_run_id, self.experiment_id = parent_run_id, self._writer.experiment_id
        for child in children:
            tags = child["tags"]
            status = TrialStatus.of_run(child["status"], tags)
            self.trials[child["trial_id"]] = TrialRecord(
                trial_id=child["trial_id"], name=child["name"], params=params_of(child["params"]),
                started_at=child["started_at"], ended_at=child["ended_at"], status=status,
                metrics=child["metrics"], run_id=child["run_id"], node_ip=tags.get(Tags.NODE_IP),
                error=tags.get(Tags.ERROR), n_restarts=int(tags.get(Tags.RESTARTS, "0")),
                iterations=child["step"], device=tags.get(Tags.DEVICE))
        self._send("start_driving", driver_tag())
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        self._alive.set()

        def beat() -> None:  # fire and forget, off the driver's thread: no pending write to count
            while self._alive.is_set():
                try:
                    self._thread.submit(self._writer.heartbeat, time.time())
                except RuntimeError:  # the writer thread was shut down meanwhile
                    return
                time.sleep(HEARTBEAT_S)  # not an Event wait: the beat is cheap, the stop is read then
        threading.Thread(target=beat, name="tuneforge-heartbeat", daemon=True).start()

    def start_trial(self, trial_id: str, name: str, params: Mapping[str, Any],
                    described: Mapping[str, Any] | None = None) -> bool:
        """A trial started; False when it was known already (restarted after its worker died,
        ``--max-failures``, or in flight when its search was interrupted), which keeps its
        record and its one MLflow run, RUNNING again, with its count of restarts. Its run gets
        ``params`` (the searched values, the trial's record) and ``described`` (the
        trainable's ``run_params``, on the run only).

        A known trial id with other params is not that trial: a resumed search's trial that
        Ray Tune had not saved when its driver died was suggested again as another one. Its old
        run is closed as lost (:meth:`mark_lost`) and the new trial gets its own."""
        known = self.trials.get(trial_id)
        if known is not None and known.params != dict(params):
            self.mark_lost(trial_id, "Ray Tune had not saved this trial when its driver died; its trial id "
                                     "now names another configuration")
            known = None
        if known is not None:
            known.n_restarts += 1
            known.status, known.ended_at = TrialStatus.RUNNING, None
            self._send("restart_trial", trial_id, known.n_restarts)
            return False
        self.trials[trial_id] = TrialRecord(trial_id=trial_id, name=name, params=dict(params))
        self._send("add_trial", trial_id, name, {**(described or {}), **params},
                   int(self.trials[trial_id].started_at * 1000))
        return True

    def mark_lost(self, trial_id: str, reason: str) -> None:
        """Forget a trial the resumed search does not know (Ray Tune had not saved it when the
        driver died, or its saved state was lost): its run is deleted if it reported nothing,
        else closed KILLED with tag :attr:`Tags.LOST`, ``reason`` (its result is kept, though the
        search does not count it)."""
        record = self.trials.pop(trial_id)
        self._send("mark_lost", trial_id, reason, delete=not record.metrics)

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], *, step: int,
                    node_ip: str | None = None, device: str | None = None,
                    artifacts: Path | None = None) -> None:
        """One result of a trial: its metrics at ``step`` (its training iteration; non-finite
        values are not logged), the node and device it ran on (tags, from the first result that
        names them), and the artifact batches the trial sent with it (complete batches under
        ``artifacts``). A restarted trial's results at steps it had logged before (it went on
        from an earlier checkpoint than its last result) are not logged twice."""
        record = self.trials[trial_id]
        if record.n_restarts and step <= record.iterations:
            return  # a restarted trial's results again, up to its checkpoint: logged already
        record.metrics.update(metrics)
        record.iterations = step
        tags = {}
        if node_ip and record.node_ip is None:
            record.node_ip = tags[Tags.NODE_IP] = node_ip
        if device and record.device is None:
            record.device = tags[Tags.DEVICE] = device
        self._send("log_result", trial_id, dict(metrics), step, tags, artifacts)

    def end_trial(self, trial_id: str, status: TrialStatus, *, artifacts: Path | None = None,
                  error: str | None = None, no_score: str | None = None,
                  then: Callable[[], None] | None = None) -> None:
        """A trial ended (FINISHED, STOPPED, FAILED or KILLED): log the artifact batches under
        ``artifacts`` not yet logged, its error trace if any, and close its run (a STOPPED one
        with the iteration it reached, tag ``tuneforge.stopped_at``; ``no_score`` says why one
        that ended without error has no score, tag ``tuneforge.no_score``). ``then`` is called
        once the run is written (on the writer thread; never if the write failed)."""
        record = self.trials[trial_id]
        record.status, record.ended_at = status, time.time()
        if error:
            error = _ANSI_CODES.sub("", error)
            record.error = error.strip().splitlines()[-1]
        tags = {Tags.STOPPED_AT: str(record.iterations)} if status is TrialStatus.STOPPED else {}
        if no_score:
            tags[Tags.NO_SCORE] = no_score
        self._send("end_trial", trial_id, status, artifacts, error, tags, then=then)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """Log ``text`` as the artifact ``name`` of the run ``run_id`` (in order, not waited on)."""
        self._send("log_text", run_id, text, name)

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        """Log ``folder``'s files to the run ``run_id`` now (after the search's trials)."""
        self._call("log_artifacts", run_id, folder)

    def copy_artifacts(self, source_run_id: str, path: str, run_id: str, as_path: str) -> None:
        """Copy the artifacts at ``path`` of the run ``source_run_id`` to ``as_path`` of the run
        ``run_id`` now (the best trial's model onto the parent run, after the trials)."""
        self._call("copy_artifacts", source_run_id, path, run_id, as_path)

    def has_model(self, run_id: str, path: str) -> bool:
        """Whether the run holds an MLflow model folder at ``path``."""
        return self._call("has_model", run_id, path)

    def register_model(self, name: str, model_uri: str) -> str:
        """Register ``model_uri`` (``runs:/<run_id>/<path>``) in the Model Registry as a new
        version of ``name``; returns the version."""
        return self._call("register_model", name, model_uri)

    def flush(self) -> None:
        """Mark trials still running as KILLED and wait for every write so far."""
        for record in list(self.trials.values()):  # a copy: another thread may add a trial meanwhile
            if record.status is TrialStatus.RUNNING:
                self.end_trial(record.trial_id, TrialStatus.KILLED)
        for trial_id, run_id in self._call("run_ids").items():
            if trial_id in self.trials:
                self.trials[trial_id].run_id = run_id
        for future in self._pending:
            future.exception()  # waits for it
        self._reap()
        failures, self._failures = self._failures, []
        self.n_failed_writes += len(failures)
        if failures:
            logger.warning("%d MLflow writes failed (first: %s); every trial's results are also in "
                           "the Ray results folder", len(failures), failures[0])

    def end_search(self, status: TrialStatus, *, metrics: Mapping[str, float], tags: Mapping[str, str],
                   artifacts: Mapping[str, str]) -> None:
        """Close the parent run with its final metrics, tags and artifacts; stop the heartbeat
        and the thread."""
        self._alive.clear()
        self.flush()
        try:
            self._call("end_search", status, dict(metrics), dict(tags), dict(artifacts))
        finally:
            self._closed = True
            self._thread.shutdown(wait=True)

    def abandon(self) -> None:
        """Give up on a store that stopped taking writes: no more writes, the heartbeat stops,
        the writes still queued are dropped."""
        self._alive.clear()
        self._closed = True
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)

    def _send(self, method: str, *args: Any, then: Callable[[], None] | None = None, **kwargs: Any) -> None:
        """Queue a write; one sent once the search is closed (:meth:`end_search`, :meth:`abandon`:
        the thread that watches Ray closed it while Tune's own thread still reported) is dropped."""
        if self._closed:
            return
        try:
            future = self._thread.submit(getattr(self._writer, method), *args, **kwargs)
        except RuntimeError:  # "cannot schedule new futures after shutdown": closed meanwhile
            if self._closed:
                return
            raise
        future.add_done_callback(self._written)
        if then is not None:
            future.add_done_callback(lambda done: then() if not done.cancelled() and done.exception() is None
                                     else None)
        self._pending.append(future)
        if len(self._pending) >= _REAP_EVERY:
            self._reap()

    def _written(self, future: Future) -> None:
        """On the writer thread, after each write: count the failures in a row."""
        error = None if future.cancelled() else future.exception()
        if error is None:
            self._failures_in_a_row = 0
            return
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= _FAILURES_TO_STOP and self.store_error is None:
            self.store_error = f"{type(error).__name__}: {first_line(error)}"
            if self.on_store_failure is not None:
                self.on_store_failure(self.store_error)

    def _reap(self) -> None:
        """Count the failures of the writes done so far and forget them (a long search sends
        thousands); the writes not done yet stay pending. Then give the heap that those writes
        freed back to the system (:func:`_trim_heap`)."""
        pending = self._pending
        self._pending = [f for f in pending if not f.done()]
        errors = (f.exception() for f in pending if f.done())
        self._failures += [f"{type(e).__name__}: {e}" for e in errors if e]
        _trim_heap()

    def _call(self, method: str, *args: Any) -> Any:
        return self._thread.submit(getattr(self._writer, method), *args).result()
