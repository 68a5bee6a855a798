"""The trial side of a search: the only Ray-aware module of ``tuneforge.trainables``.

A trainable runs on whichever node Ray placed its trial. From there it reports results
(:func:`report`: metrics, a checkpoint for resuming, artifacts for MLflow), finds its last
checkpoint (:func:`restored_checkpoint`), and learns what Ray gave it (:func:`trial_cpus`,
:func:`trial_device`). The platform imports this module (to open the artifact inbox on the
driver); this module imports nothing of the platform.

Artifacts reach MLflow without a shared filesystem: each search runs one :class:`ArtifactInbox`
actor on the driver's node, named after the Tune experiment. :func:`report` sends a folder's files
to it through Ray's object store and waits until they are written, each send as a numbered batch
``<trial_id>/<batch>/`` under the inbox folder, so the driver logs a result's files to the trial's
MLflow run as that result arrives. Checkpoints take Tune's own road, its ``storage_path``, which on
a cluster must be storage every node reaches (S3, NFS).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ArtifactInbox", "complete_batches", "open_inbox", "report", "restored_checkpoint",
           "send_artifacts", "ship_by_value", "trial_cpus", "trial_device"]

logger = logging.getLogger(__name__)

_INBOX_PREFIX = "tuneforge-artifacts:"
_PARTIAL_SUFFIX = ".partial"
"""A batch folder being written; it is renamed to its number when complete."""
_warned_hidden_gpu = False


def report(metrics: Mapping[str, float], *, artifacts: str | Path | None = None,
           checkpoint: str | Path | None = None) -> None:
    """Report one result of the running trial: ``tune.report`` plus artifacts.

    Called by a trainable once per step (an epoch, or the one result of a one-shot family).
    ``artifacts`` is a folder whose files become the trial's MLflow artifacts as this result
    arrives (under plain Ray Tune, with no inbox, they are not kept): a file sent again under
    the same relative path replaces the earlier one, so per-step files carry the step in
    their path. ``checkpoint`` is a folder Tune keeps for resuming the trial. Both folders may
    be deleted once this returns.
    """
    from ray import tune

    if artifacts is not None:
        send_artifacts(Path(artifacts))
    saved = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
    tune.report(dict(metrics), checkpoint=saved)


@contextmanager
def restored_checkpoint() -> Iterator[Path | None]:
    """The folder of the checkpoint this trial resumes from (Tune's ``get_checkpoint``), or
    None on a fresh start; the folder is readable inside the ``with`` block only."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)


def ship_by_value(module: Any) -> None:
    """Have Ray pickle ``module``'s functions by value, so a worker runs them without the
    module's file (a user's trainable file on the driver's machine only)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(module)


def trial_cpus() -> int:
    """The CPUs Ray reserved for this trial (at least 1); outside Tune, this machine's."""
    from ray import tune

    try:
        resources = tune.get_context().get_trial_resources()
    except (RuntimeError, AttributeError):
        resources = None
    cpus = resources.required_resources.get("CPU", 1) if resources is not None else os.cpu_count()
    return max(1, int(cpus or 1))


def trial_device() -> str:
    """``"cuda"`` when Ray assigned this trial a GPU and torch sees one, else ``"cpu"``.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the trial's GPUs, so ``cuda`` is the first of them.
    A GPU Ray assigned that torch cannot see (no CUDA build, no driver, or a ``num_gpus``
    resource on a CPU machine) is warned about once per process, and the trial runs on the CPU.
    """
    import ray
    import torch

    global _warned_hidden_gpu
    assigned = ray.get_gpu_ids() if ray.is_initialized() else []
    if not assigned:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if not _warned_hidden_gpu:
        logger.warning("Ray assigned GPU %s to this trial but torch sees no CUDA device "
                       "(torch %s); running on the CPU", ",".join(map(str, assigned)), torch.__version__)
        _warned_hidden_gpu = True
    return "cpu"


# -- artifacts ---------------------------------------------------------------------------------


def _inbox_name(experiment_name: str) -> str:
    return f"{_INBOX_PREFIX}{experiment_name}"


class ArtifactInbox:
    """Receives trials' files and writes them under ``folder``; runs as a Ray actor."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.n_batches: dict[str, int] = {}

    def put(self, trial_id: str, files: dict[str, bytes]) -> str:
        """Write ``files`` (relative path -> content) as the trial's next batch,
        ``folder/trial_id/<batch>/``, complete before it appears; returns the batch's path."""
        batch = self.n_batches.get(trial_id, 0)
        self.n_batches[trial_id] = batch + 1
        final = self.folder / trial_id / f"{batch:06d}"
        partial = final.with_name(final.name + _PARTIAL_SUFFIX)
        root = partial.resolve()
        for relative, content in files.items():
            target = (root / relative).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"artifact path {relative!r} leaves the trial's folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        root.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        return str(final)


def complete_batches(trial_folder: Path) -> list[Path]:
    """A trial's artifact batches that are completely written, oldest first."""
    if not trial_folder.is_dir():
        return []
    return sorted(p for p in trial_folder.iterdir() if p.is_dir() and not p.name.endswith(_PARTIAL_SUFFIX))


def open_inbox(experiment_name: str, folder: Path) -> Any:
    """Called by the runner on the driver: start the inbox of one search on this node;
    ``ray.kill`` it after the search."""
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
