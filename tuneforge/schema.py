"""What a search writes to MLflow, named once: shared by platform/ and dashboards/.

A search is a parent run (tag ``tuneforge.role=search``) holding its space as ``space.yaml``;
each trial is a child run (``mlflow.parentRunId``, ``tuneforge.role=trial``); the parent ends
with its best trial's tags, ``best_<metric>``, ``results.csv`` and ``best_config.json``.
The platform writes these names and the dashboards read them, so both import them from here.

This module imports nothing but the standard library: ``import tuneforge`` stays cheap.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["HEARTBEAT_S", "Artifacts", "Metrics", "Roles", "Tags", "TrialStatus", "driver_tag", "interrupted"]


class TrialStatus(str, Enum):
    """How a trial (or a whole search) stands or ended.

    The values are MLflow run statuses (``RunStatus``: RUNNING, SCHEDULED, FINISHED, FAILED,
    KILLED) where MLflow has one, so a status can be passed to MLflow as it is. STOPPED has no
    MLflow equivalent: a stopped trial's run ends FINISHED, with tag ``tuneforge.status=STOPPED``
    (:attr:`Tags.STATUS`); :attr:`mlflow_status` gives the status to close a run with.
    """

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    """Ran to its end (a search: every trial ended)."""
    FAILED = "FAILED"
    """Raised an error (a search: the runner itself failed)."""
    STOPPED = "STOPPED"
    """Stopped early by a scheduler (``--scheduler``): it ended, without error, before the
    schedule's ``max_epochs``; its run holds the epoch it reached (:attr:`Tags.STOPPED_AT`)."""
    KILLED = "KILLED"
    """The search was interrupted before the trial (or the search) ended."""

    def __str__(self) -> str:
        # "FINISHED", not "TrialStatus.FINISHED", in f-strings, results.csv and MLflow tags.
        return self.value

    @classmethod
    def of_run(cls, mlflow_status: str, tags: dict[str, str]) -> TrialStatus:
        """A trial's status from its MLflow run: its :attr:`Tags.STATUS` tag (STOPPED), else the
        run's own status."""
        return cls(tags.get(Tags.STATUS, mlflow_status))

    @property
    def mlflow_status(self) -> str:
        """The MLflow run status to end a run with: STOPPED is FINISHED, the others themselves."""
        return TrialStatus.FINISHED.value if self is TrialStatus.STOPPED else self.value


class Tags:
    """MLflow tag names of a search's runs."""

    PARENT_RUN_ID: Final = "mlflow.parentRunId"
    """MLflow's own: a trial's run names its search's parent run."""
    NOTE: Final = "mlflow.note.content"
    """MLflow's own: a run's description, Markdown the run page shows; a search's summary."""
    ROLE: Final = "tuneforge.role"
    """What a run is: one of :class:`Roles`."""
    TRIAL_ID: Final = "tuneforge.trial_id"
    NODE_IP: Final = "tuneforge.node_ip"
    """The node a trial ran on, from its first result."""
    NO_SCORE: Final = "tuneforge.no_score"
    """Why a trial that ended without error has no score (its last metric was NaN or inf)."""
    ERROR: Final = "tuneforge.error"
    """A failed trial's last error line; the whole trace is the artifact ``error.txt``."""
    STATUS: Final = "tuneforge.status"
    """A trial's :class:`TrialStatus` where MLflow's run status cannot say it (STOPPED)."""
    STOPPED_AT: Final = "tuneforge.stopped_at"
    """The training iteration (for a torch family, the epoch) a STOPPED trial reached."""
    DEVICE: Final = "tuneforge.device"
    """Where a per-epoch trial trained (``cpu``, ``cuda:0``), from its first result."""
    RAY_RESULTS: Final = "tuneforge.ray_results"
    """The search's Ray Tune experiment folder."""
    DRIVER: Final = "tuneforge.driver"
    """A search's driver process, ``PID@HOST``: a RUNNING parent whose driver is gone was
    interrupted (see :attr:`HEARTBEAT`)."""
    HEARTBEAT: Final = "tuneforge.heartbeat"
    """When a search's driver last said it was alive (seconds since the epoch, every
    ``HEARTBEAT_S``); a RUNNING parent silent for longer than ``3 * HEARTBEAT_S`` is interrupted."""
    RESUMES: Final = "tuneforge.resumes"
    """How many times a search was resumed (``tuneforge resume``)."""
    RESTARTS: Final = "tuneforge.restarts"
    """A trial's restarts: after its worker died (``--max-failures``) or in a resumed search."""
    REBUILT: Final = "tuneforge.rebuilt"
    """A search resumed from MLflow and ``search.json`` alone, its Ray Tune state damaged: how
    many finished trials it kept (as warm-start observations) and why."""
    LOST: Final = "tuneforge.lost"
    """A trial run whose trial Ray Tune had not saved when its driver died: the resumed search
    does not know it (its configuration may be tried again, as another trial)."""
    BEST_TRIAL_ID: Final = "tuneforge.best_trial_id"
    BEST_RUN_ID: Final = "tuneforge.best_run_id"
    BEST_MODEL_URI: Final = "tuneforge.best_model_uri"
    """The best trial's model, ``runs:/<run_id>/model``, where one was logged."""
    REGISTERED_MODEL: Final = "tuneforge.registered_model"
    """``NAME/VERSION`` in the Model Registry, with ``--register-model NAME``."""
    COMPARISON: Final = "tuneforge.comparison"
    """The id of the ``tuneforge compare`` that ran a search; it groups them."""
    WARM_START: Final = "tuneforge.warm_start"
    """A warm-started search's sources (``--warm-start``): their parent run ids, comma-separated."""
    START_POINT: Final = "tuneforge.start_point"
    """Parent run: the starting point the best trial is compared with (``the default config``,
    ``starting point 2``); a trial's run: the starting point it evaluated."""
    TIME_BUDGET_SPENT: Final = "tuneforge.time_budget_spent"
    """Parent run: ``true`` when ``--time-budget`` ended the search."""
    STOPPED_BECAUSE: Final = "tuneforge.stopped_because"
    """Parent run: why the runner stopped the search early (a user's trial never reported the
    space's metric), one line."""


HEARTBEAT_S: Final = 30.0
"""Seconds between a running search's heartbeats (:attr:`Tags.HEARTBEAT`)."""


def driver_tag() -> str:
    """This process as :attr:`Tags.DRIVER`: ``PID@HOST``."""
    import os
    import socket

    return f"{os.getpid()}@{socket.gethostname()}"


def interrupted(status: str, tags: dict[str, str], now: float) -> bool:
    """Whether a search's parent run (MLflow ``status`` and ``tags``) was interrupted: KILLED,
    or RUNNING without a live driver (its process gone, when it ran on this host; else no
    heartbeat for ``3 * HEARTBEAT_S``). The summary of ``tuneforge resume``, ``tuneforge runs``
    and the report all use this rule."""
    import os
    import socket

    if status == TrialStatus.KILLED.value:
        return True
    if status != TrialStatus.RUNNING.value:
        return False
    pid, _, host = tags.get(Tags.DRIVER, "").partition("@")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    beat = tags.get(Tags.HEARTBEAT, "")
    return not beat.isdigit() or now - int(beat) > 3 * HEARTBEAT_S


class Roles:
    """Values of :attr:`Tags.ROLE`."""

    SEARCH: Final = "search"
    TRIAL: Final = "trial"
    COMPARISON: Final = "comparison"
    """The run holding a comparison's report."""


class Metrics:
    """Metrics the runner logs on a search's parent run (trials log their trainable's own)."""

    N_TRIALS_FINISHED: Final = "n_trials_finished"
    """Trials that reported the search's metric (stopped ones included)."""
    N_TRIALS_STOPPED: Final = "n_trials_stopped"
    """Trials a scheduler stopped early (``--scheduler``)."""
    TOTAL_ITERATIONS: Final = "total_iterations"
    """Training iterations (epochs, for a torch family) of every trial together: what a
    scheduler saves."""
    EPOCH: Final = "epoch"
    """A per-epoch trial's epoch, reported with each result (its MLflow step is the epoch too)."""
    SECONDS_PER_SUGGESTION: Final = "searcher_seconds_per_suggestion"
    START_SCORE: Final = "start_score"
    """The best starting point's score (:attr:`Tags.START_POINT` names it)."""
    GAIN_OVER_START: Final = "gain_over_start"
    """How much better the best trial is than the starting point, in the metric's units and
    direction (positive: better, for ``max`` and ``min`` alike)."""

    @staticmethod
    def best(metric: str) -> str:
        """The best trial's value of ``metric``: ``best_<metric>``."""
        return f"best_{metric}"


class Artifacts:
    """Artifact names of a search's runs."""

    SPACE: Final = "space.yaml"
    """Parent run: the space as written (comments kept)."""
    SEARCH: Final = "search.json"
    """Parent run (and the Ray results folder): what ``tuneforge resume`` needs to continue it."""
    RESULTS: Final = "results.csv"
    """Parent run: one row per trial."""
    BEST_CONFIG: Final = "best_config.json"
    """Parent run: the best trial's params, if any trial reported the metric."""
    ERROR: Final = "error.txt"
    """A failed trial's run: its error trace."""
    MODEL: Final = "model"
    """A trial's run: its trained model, an MLflow model folder (``runs:/<run_id>/model``)."""
    BEST_MODEL: Final = "best_model"
    """Parent run: a copy of the best trial's model (``runs:/<parent_run_id>/best_model``)."""
