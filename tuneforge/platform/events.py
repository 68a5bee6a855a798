"""What a running search tells its caller, in order: start-up :class:`Stage` s, then
:class:`SearchStarted` once, then per trial :class:`TrialStarted`, a :class:`TrialResult` per
result and :class:`TrialEnded`. The CLI (and ``search(progress=True)``) prints them as progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.platform.cluster import Cluster
from tuneforge.platform.planning import SearchPlan
from tuneforge.platform.tracking import TrialRecord

__all__ = ["RayLost", "SearchEvent", "SearchStarted", "Stage", "TrialEnded", "TrialResult", "TrialStarted"]


@dataclass(frozen=True)
class Stage:
    """A start-up step has begun (checking the space, starting Ray, opening the store...)."""

    text: str


@dataclass(frozen=True)
class SearchStarted:
    """The parent run exists and trials are about to start."""

    plan: SearchPlan
    cluster: Cluster
    parent_run_id: str
    experiment_path: str
    known: tuple[TrialRecord, ...] = ()
    """A resumed search's trials from before (ended, or in flight when it was interrupted)."""
    time_used_s: float = 0.0
    """Seconds of the time budget (``plan.time_budget_s``) a resumed search spent before."""


@dataclass(frozen=True)
class TrialStarted:
    """A trial got its resources and started."""

    record: TrialRecord


@dataclass(frozen=True)
class TrialResult:
    """A trial reported a result (an epoch, for per-epoch families)."""

    record: TrialRecord
    step: int
    progress: float | None
    """The fraction of its work the trial has done, where it reports one (``progress``)."""


@dataclass(frozen=True)
class TrialEnded:
    """One trial finished, failed or was stopped, and its run is written in the store: sent from
    the store's writer thread, and never for a trial whose run could not be written."""

    record: TrialRecord
    n_ended: int
    n_trials: int | None
    """None: as many as the time budget allows."""
    best_score: float | None
    """Best value of the metric so far, None until a trial reports it."""


@dataclass(frozen=True)
class RayLost:
    """The search's local Ray lost its GCS or raylet (``what``): the search was recorded as
    interrupted (its parent run KILLED, to resume from ``experiment_path``), and the process ends
    right after this event, with :data:`~tuneforge.errors.EXIT_TERMINATED`."""

    what: str
    experiment_path: str


SearchEvent = Stage | SearchStarted | TrialStarted | TrialResult | TrialEnded | RayLost
