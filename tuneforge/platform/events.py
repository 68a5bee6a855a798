"""What a running search tells its caller (the CLI prints them as progress)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.platform.tracking import TrialRecord

if TYPE_CHECKING:
    from tuneforge.platform.cluster import Cluster
    from tuneforge.platform.runner import SearchPlan

__all__ = ["SearchStarted", "TrialEnded"]


@dataclass(frozen=True)
class SearchStarted:
    """The parent run exists and trials are about to start."""

    plan: SearchPlan
    cluster: Cluster
    parent_run_id: str
    experiment_path: Path


@dataclass(frozen=True)
class TrialEnded:
    """One trial finished, failed or was stopped."""

    record: TrialRecord
    n_ended: int
    n_trials: int
    best_score: float | None
    """Best value of the metric so far, None until a trial reports it."""
