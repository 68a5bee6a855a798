"""Trial artifacts that reach the driver through Ray, with no shared filesystem.

Tune persists checkpoints to its ``storage_path``, which on a cluster must be storage every
node reaches (S3, NFS); Ray refuses a checkpoint from a worker node otherwise. Artifacts (a CV
report, plots, a model) take another road: each search runs one :class:`ArtifactInbox` actor
on the driver's node, named after the Tune experiment; a trial's
:func:`tuneforge.trainables.report` sends a folder's files to it (through Ray's object store)
before reporting, and the inbox writes them under ``<folder>/<trial_id>/`` on the driver's
machine, where the recorder logs them to the trial's MLflow run when the trial ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["open_inbox", "send_artifacts"]

_NAME_PREFIX = "tuneforge-artifacts:"


def _inbox_name(experiment_name: str) -> str:
    return f"{_NAME_PREFIX}{experiment_name}"


class ArtifactInbox:
    """Receives trials' files and writes them under ``folder``; runs as a Ray actor."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def put(self, trial_id: str, files: dict[str, bytes]) -> None:
        """Write ``files`` (relative path -> content) under ``folder/trial_id``."""
        root = (self.folder / trial_id).resolve()
        for relative, content in files.items():
            target = (root / relative).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"artifact path {relative!r} leaves the trial's folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def open_inbox(experiment_name: str, folder: Path) -> Any:
    """Start the inbox of one search on this (the driver's) node; ``ray.kill`` it after."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0)(ArtifactInbox).options(name=_inbox_name(experiment_name),
                                                          scheduling_strategy=here)
    return actor.remote(str(folder))


def send_artifacts(folder: Path) -> bool:
    """From inside a trial: send ``folder``'s files to the search's inbox and wait until they
    are written. False where there is no inbox (the trainable runs under plain Ray Tune)."""
    import ray
    from ray import tune

    context = tune.get_context()
    try:
        inbox = ray.get_actor(_inbox_name(context.get_experiment_name()))
    except ValueError:
        return False
    files = {str(path.relative_to(folder)): path.read_bytes()
             for path in sorted(Path(folder).rglob("*")) if path.is_file()}
    ray.get(inbox.put.remote(context.get_trial_id(), files))
    return True
