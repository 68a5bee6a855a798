"""Data-parallel trials (``--workers-per-trial N``): each trial of a torch family on N Ray Train workers.

:func:`data_parallel` turns a family's ordinary trial function (``train_vit``, unchanged) into a
Tune function trainable whose trial is a *driver*: it starts a Ray Train ``TorchTrainer`` that
runs the function on N workers (DDP over gloo on the CPU, NCCL on GPUs; the epoch loop wraps the
model, see :mod:`tuneforge.trainables.torch.loop`) and waits for it. Rank 0's results reach Tune
through Ray's ``TuneReportCallback`` (with ``checkpoint_path``, a string, the checkpoint's place);
the artifact inbox gets rank 0's files only.

Resources. The driver asks Tune for :data:`_DRIVER_RESOURCES`, one byte of Ray's ``memory``
resource and no CPU, since the workers are what need CPUs. A trial's whole reservation is then
the workers' placement group: N bundles of ``cpus_per_worker`` (and ``gpus_per_worker``), which
Ray Train creates and Tune never sees. The driver (Tune's trial actor), the Train controller
(``num_cpus=0``, pinned to the driver's node) and its helpers (Tune's result queue, a
preemption watcher, a detached placement-group cleaner on the head node: all ``num_cpus=0``)
take no CPU. Since Tune no longer counts the workers' CPUs, the caller limits concurrent trials
(``TuneConfig(max_concurrent_trials=...)``, the cluster's CPUs // (N x ``cpus_per_worker``)); a
trial started beyond that waits for its workers (Train retries its placement group every 60 s).

Resuming. The Train run is named after the Tune experiment and trial id (``<experiment>-<trial_id>``)
and kept in the experiment's folder under ``storage``, so a trial Tune restarts (``max_failures``,
or a restored experiment) starts a Train run of the same name, which resumes from that run's
latest checkpoint: ``ray.train.get_checkpoint()`` on every worker, which the loop restores. Tune
itself holds no checkpoint of such a trial (its ``training_iteration`` restarts at 1; the loop's
``epoch`` does not). Ray Train keeps ``keep_checkpoints`` of them, the best by ``metric``, and
always the latest. A worker's failure fails the Train run and so the Tune trial.

Stopping. A trial Tune stops (a scheduler) has its actor ended, and the Train controller and
workers, which it owns, end with it. Their placement group is the job's, though: it outlives them
until Ray Train's detached cleaner sees the controller gone through Ray's state API, within a
second or two with the dashboard up, some 20 s without it (``include_dashboard=False``), and never
where the cleaner cannot find its cluster (a machine running two Rays, with no ``RAY_ADDRESS``:
its thread dies of "Found multiple active Ray instances"); then the workers' CPUs stay reserved
until the search's Ray job ends. A trial that finishes or fails frees them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.trainables._session import data_parallel_worker

__all__ = ["data_parallel"]


_DRIVER_RESOURCES = {"cpu": 0, "memory": 1}
"""What a data-parallel trial's driver asks Tune for. Not ``{"cpu": 0}`` alone: Tune refuses a
trial that asks for nothing ("Cannot initialize a ResourceRequest with an empty head and zero
worker bundles"). Not a fraction of a CPU: Ray adds fractions exactly, so 2 workers x 1 CPU and
a driver's 0.01 would never fit a 2-CPU node. One byte of ``memory`` (a resource every node
has, in bytes) is a request Ray accepts and no trial runs short of."""
_TRAIN_LOG_LEVEL = "WARNING"
"""Ray Train's own loggers in the controller and workers: its INFO lines (worker group started,
each report) are noise in a search; warnings and errors still show."""


@dataclass(frozen=True)
class _Group:
    """How a data-parallel trial's workers are made (the arguments of :func:`data_parallel`)."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    storage: str
    keep_checkpoints: int | None
    metric: str
    mode: str


@dataclass(frozen=True)
class _Worker:
    """What each Ray Train worker runs: the family's trial function as that worker."""

    function: Callable[[dict[str, Any]], None]
    experiment_name: str
    trial_id: str
    cpus: float

    def __call__(self, config: dict[str, Any]) -> None:
        with data_parallel_worker(experiment_name=self.experiment_name, trial_id=self.trial_id,
                                  cpus=self.cpus):
            self.function(config)


def data_parallel(function: Callable[[dict[str, Any]], None], *, workers: int, cpus_per_worker: float,
                  gpus_per_worker: float, storage: str | Path, keep_checkpoints: int | None, metric: str,
                  mode: str) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable (its resources attached, as ``tune.with_resources`` does) whose
    every trial runs ``function(config)`` on ``workers`` Ray Train workers of
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each.

    ``function`` is a torch family's ordinary trial function (e.g. ``train_vit``); the config's
    ``batch_size`` stays the global batch. ``storage`` is the Tune experiment's (a folder or a
    URI every node reaches); the trial's Train run lives in the experiment's folder there and
    keeps ``keep_checkpoints`` checkpoints (None: all), the best by ``metric`` (``mode`` "min" or
    "max"). E.g. ``data_parallel(train_vit, workers=2, cpus_per_worker=1, ...)`` makes each trial
    take 2 CPUs on one or two nodes, 1 per worker, and none for itself (see the module's notes).
    Raises ValueError for fewer than 1 worker or a worker without resources.
    """
    from ray import tune

    if workers < 1:
        raise ValueError(f"workers: expected at least 1 worker per trial, got {workers!r}")
    if cpus_per_worker <= 0 and gpus_per_worker <= 0:
        raise ValueError(f"cpus_per_worker, gpus_per_worker: a worker needs CPUs or GPUs, got "
                         f"{cpus_per_worker!r} and {gpus_per_worker!r}")
    group = _Group(workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                   storage=_storage_root(storage), keep_checkpoints=keep_checkpoints, metric=metric,
                   mode=mode)

    def driver(config: dict[str, Any]) -> None:
        _fit(function, group, config)

    driver.__name__ = getattr(function, "__name__", "data_parallel")  # Tune names trials after it
    return tune.with_resources(driver, dict(_DRIVER_RESOURCES))


def _storage_root(storage: str | Path) -> str:
    """``storage`` as Ray Train takes it: a URI as given, a local folder made absolute."""
    text = str(storage)
    return text.rstrip("/") if "://" in text else str(Path(text).expanduser().absolute())


def _fit(function: Callable[[dict[str, Any]], None], group: _Group, config: dict[str, Any]) -> None:
    """In the Tune trial: run the trial's Train run to its end; raises what it raised."""
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer

    context = tune.get_context()
    experiment, trial_id = context.get_experiment_name(), context.get_trial_id()
    worker = _Worker(function, experiment_name=experiment, trial_id=trial_id, cpus=group.cpus_per_worker)
    trainer = TorchTrainer(worker, train_loop_config=config, scaling_config=_scaling_config(group),
                           torch_config=TorchConfig(backend="nccl" if group.gpus_per_worker > 0 else "gloo"),
                           run_config=_run_config(group, experiment, trial_id))
    trainer.fit()


def _scaling_config(group: _Group) -> Any:
    from ray.train import ScalingConfig

    resources = {"CPU": group.cpus_per_worker}
    if group.gpus_per_worker > 0:
        resources["GPU"] = group.gpus_per_worker
    return ScalingConfig(num_workers=group.workers, use_gpu=group.gpus_per_worker > 0,
                         resources_per_worker=resources)


def _run_config(group: _Group, experiment: str, trial_id: str) -> Any:
    """Named after the trial, in its experiment's folder: the same run when Tune restarts it."""
    from ray.train import CheckpointConfig, LoggingConfig, RunConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    return RunConfig(
        name=f"{experiment}-{trial_id}", storage_path=f"{group.storage}/{experiment}",
        callbacks=[TuneReportCallback()], logging_config=LoggingConfig(log_level=_TRAIN_LOG_LEVEL),
        checkpoint_config=CheckpointConfig(num_to_keep=group.keep_checkpoints,
                                           checkpoint_score_attribute=group.metric,
                                           checkpoint_score_order=group.mode))
