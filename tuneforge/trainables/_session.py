"""The trial side of a search: the only Ray-aware module of ``tuneforge.trainables``.

A trainable runs on whichever node Ray placed its trial. From there it reports results
(:func:`report`: metrics, a checkpoint for resuming, artifacts for MLflow), finds its last
checkpoint (:func:`restored_checkpoint`), and learns what Ray gave it (:func:`trial_cpus`,
:func:`trial_device`, and its place in a data-parallel group: :func:`rank`, :func:`world_size`).
The platform imports this module (to open the artifact inbox on the driver, and to run a trial's
function on Ray Train workers); this module imports nothing of the platform.

The same calls work in a trial run by Ray Tune and on each Ray Train worker of a data-parallel
trial (:mod:`tuneforge.platform.data_parallel`), whose per-worker function enters
:func:`data_parallel_worker` with what a worker cannot ask Tune for. There, every rank reports
each step (Ray Train's ``report`` is a barrier); rank 0's metrics reach Tune, and only rank 0's
checkpoint and artifacts are kept; a checkpoint comes back from Ray Train's own storage.

Artifacts reach MLflow without a shared filesystem: each search runs one :class:`ArtifactInbox`
actor on the driver's node, named after the Tune experiment. :func:`report` sends a folder's files
to it through Ray's object store and waits until they are written, each send as a numbered batch
``<trial_id>/<batch>/`` under the inbox folder, so the driver logs a result's files to the trial's
MLflow run as that result arrives. Checkpoints take Tune's own road, its ``storage_path`` (a
data-parallel trial's go to its Ray Train run, under the same storage), which on a cluster must be
storage every node reaches (S3, NFS).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ArtifactInbox", "complete_batches", "data_parallel_worker", "open_inbox", "rank", "report",
           "restored_checkpoint", "send_artifacts", "ship_by_value", "trial_cpus", "trial_device",
           "world_size"]

logger = logging.getLogger(__name__)

_INBOX_PREFIX = "tuneforge-artifacts:"
_PARTIAL_SUFFIX = ".partial"
"""A batch folder being written; it is renamed to its number when complete."""
_warned_hidden_gpu = False


@dataclass(frozen=True)
class _Worker:
    """What a Ray Train worker of a data-parallel trial cannot ask Tune for."""

    experiment_name: str
    trial_id: str
    cpus: float


_worker: ContextVar[_Worker | None] = ContextVar("tuneforge_data_parallel_worker", default=None)
"""Set inside :func:`data_parallel_worker`; None in a trial run by Tune (or outside any)."""


@contextmanager
def data_parallel_worker(*, experiment_name: str, trial_id: str, cpus: float) -> Iterator[None]:
    """Act, inside the block, for one Ray Train worker of a data-parallel trial.

    Entered by the platform's per-worker function on every worker, around the family's
    ordinary trial function: ``experiment_name`` and ``trial_id`` are the Tune trial's (the
    artifact inbox is named after the experiment), ``cpus`` the worker's own. Inside it,
    :func:`report`, :func:`restored_checkpoint`, :func:`trial_cpus`, :func:`trial_device`,
    :func:`rank` and :func:`world_size` speak for this worker.
    """
    token = _worker.set(_Worker(experiment_name=experiment_name, trial_id=trial_id, cpus=cpus))
    try:
        yield
    finally:
        _worker.reset(token)


def rank() -> int:
    """This worker's rank in its data-parallel trial's group; 0 outside one."""
    if _worker.get() is None:
        return 0
    import ray.train

    return ray.train.get_context().get_world_rank()


def world_size() -> int:
    """How many workers train this data-parallel trial together; 1 outside one."""
    if _worker.get() is None:
        return 1
    import ray.train

    return ray.train.get_context().get_world_size()


def report(metrics: Mapping[str, Any], *, artifacts: str | Path | None = None,
           checkpoint: str | Path | None = None) -> None:
    """Report one result of the running trial: ``tune.report`` plus artifacts.

    Called by a trainable once per step (an epoch, or the one result of a one-shot family).
    ``metrics`` are numbers, or strings Tune passes through (``device``).
    ``artifacts`` is a folder whose files become the trial's MLflow artifacts as this result
    arrives (under plain Ray Tune, with no inbox, they are not kept): a file sent again under
    the same relative path replaces the earlier one, so per-step files carry the step in
    their path. ``checkpoint`` is a folder Tune keeps for resuming the trial. Both folders may
    be deleted once this returns.

    On a data-parallel worker every rank must call this once per step, the same number of
    times (Ray Train's ``report`` waits for all of them); rank 0's metrics reach Tune, and
    rank 0's ``artifacts`` and ``checkpoint`` alone are sent and kept (other ranks' are ignored).
    """
    if _worker.get() is not None:
        _report_from_worker(metrics, artifacts=artifacts, checkpoint=checkpoint)
        return
    from ray import tune

    if artifacts is not None:
        send_artifacts(Path(artifacts))
    saved = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
    tune.report(dict(metrics), checkpoint=saved)


def _report_from_worker(metrics: Mapping[str, Any], *, artifacts: str | Path | None,
                        checkpoint: str | Path | None) -> None:
    import ray.train

    if rank() != 0:
        ray.train.report(dict(metrics))
        return
    if artifacts is not None:
        send_artifacts(Path(artifacts))
    saved = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
    ray.train.report(dict(metrics), checkpoint=saved)


@contextmanager
def restored_checkpoint() -> Iterator[Path | None]:
    """The folder of the checkpoint this trial resumes from (Tune's ``get_checkpoint``; on a
    data-parallel worker, Ray Train's latest, the same on every rank), or None on a fresh
    start; the folder is readable inside the ``with`` block only."""
    if _worker.get() is not None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
    else:
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
    """The CPUs Ray reserved for this trial (at least 1); on a data-parallel worker, the
    worker's own; outside Tune, this machine's."""
    worker = _worker.get()
    if worker is not None:
        return max(1, int(worker.cpus))
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
    On a data-parallel worker it is the worker's own GPU (Ray Train's ``get_device``, e.g.
    ``"cuda:1"``: the workers of a node see all of its GPUs, each uses one).
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
        if _worker.get() is None:
            return "cuda"
        from ray.train.torch import get_device

        return str(get_device())
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
        ``folder/trial_id/<batch>/``, complete before it appears; returns the batch's path.
        Batches are numbered on from those already there (a resumed search's trial); a partial
        one that a killed driver left is written again."""
        batch = self.n_batches.get(trial_id)
        if batch is None:
            batch = len(complete_batches(self.folder / trial_id))
        self.n_batches[trial_id] = batch + 1
        final = self.folder / trial_id / f"{batch:06d}"
        partial = final.with_name(final.name + _PARTIAL_SUFFIX)
        shutil.rmtree(partial, ignore_errors=True)
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
    """From inside a trial (or any rank of a data-parallel one): send ``folder``'s files to the
    search's inbox and wait until they are written. False where there is no inbox (the trainable
    runs under plain Ray Tune)."""
    import ray

    experiment_name, trial_id = _trial_identity()
    try:
        inbox = ray.get_actor(_inbox_name(experiment_name))
    except ValueError:
        return False
    files = {str(path.relative_to(folder)): path.read_bytes()
             for path in sorted(Path(folder).rglob("*")) if path.is_file()}
    ray.get(inbox.put.remote(trial_id, files))
    return True


def _trial_identity() -> tuple[str, str]:
    """The running trial's Tune experiment name and trial id, from a Train worker too."""
    worker = _worker.get()
    if worker is not None:
        return worker.experiment_name, worker.trial_id
    from ray import tune

    context = tune.get_context()
    return context.get_experiment_name(), context.get_trial_id()
