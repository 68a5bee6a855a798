"""How a trainable reports a result, with its artifacts and checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["report"]


def report(metrics: Mapping[str, float], *, artifacts: str | Path | None = None,
           checkpoint: str | Path | None = None) -> None:
    """Report one result of the running trial: ``tune.report`` plus artifacts.

    ``artifacts`` is a folder whose files become the trial's MLflow artifacts; under
    tuneforge they travel to the driver through Ray, so no shared filesystem is needed (under
    plain Ray Tune they are not kept). ``checkpoint`` is a folder Tune keeps for resuming the
    trial: on a cluster it needs a ``storage_path`` every node can reach.
    Both folders may be deleted once this returns.
    """
    from ray import tune

    from tuneforge.platform.artifacts import send_artifacts

    if artifacts is not None:
        send_artifacts(Path(artifacts))
    saved = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
    tune.report(dict(metrics), checkpoint=saved)
