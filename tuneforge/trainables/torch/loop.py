"""The one epoch loop every PyTorch family runs in: device, threads, AMP, checkpoints, resume,
reporting and the trained model in MLflow.

A family (:class:`TorchFamily`) is data for the loop: a config dataclass for its model, its data,
a builder of its model and optimisers, one training epoch and one evaluation. :func:`run_trial`
owns everything else, so a fix here fixes every family:

- the device is the GPU Ray assigned the trial (with mixed precision), else the CPU with
  ``torch.set_num_threads`` set to the trial's CPUs, so concurrent trials do not oversubscribe;
- after every epoch it reports the family's metrics with ``epoch``, ``progress`` (the fraction
  of the trial's epochs done), ``epoch_s``, ``samples_per_s`` (training samples a second, all
  workers' together; and ``tokens_per_s`` where the family counts tokens), ``peak_rss_mb``
  (the trial process's peak memory), ``workers`` (how many
  train it), ``n_params`` and ``latency_ms`` (the logged model's parameters and its inference
  time for one sample on the trial's device: :meth:`TorchFamily.inference`) and ``device`` (a
  string, e.g. ``"cpu"``, ``"cuda:0"``: where it trained), the
  ``system/...`` metrics of the MLflow UI's system-metrics tab (:func:`system_metrics`), a
  checkpoint, and the family's pictures;
- a checkpoint holds the model, optimisers, LR schedulers, the AMP scaler, every RNG state, the
  family's ``extras`` (a vocabulary) and the epoch, so a trial stopped after epoch k and resumed
  reports the same epoch-(k+1) metrics
  as one never stopped (seeded, on the CPU);
- the last epoch's report carries the trained model as an MLflow model folder (``model/``).

Data-parallel trials (``--workers-per-trial N``: the same trial function on N Ray Train workers,
see :mod:`tuneforge.platform.data_parallel`) run the same loop on every worker. Training passes go
through ``DistributedDataParallel`` of the model (gradients averaged over the workers each step);
each worker trains on its own share of every epoch's permutation (:meth:`EpochRun.shuffled`) in
batches of :attr:`EpochRun.batch_size`, the config's ``batch_size`` divided among the workers.
Rank 0 alone evaluates, checkpoints, draws and exports (the plain module, never the wrapper);
every rank reports each epoch. A single-process trial is the one-worker case and runs as before.

``compile: true`` (a config key of every torch family, :attr:`TrainSettings.compile`) trains
through ``torch.compile`` of the model (of the data-parallel wrapper, in such a trial; of each
trained part of a GAN), while evaluation, checkpoints and the logged model use the plain module,
so checkpoints of compiled and eager trials are the same. It is off for ``--smoke`` trials, and
falls back to eager mode, with one warning, on a machine without the C++ compiler and Python
headers inductor needs on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge.trainables._base import SMOKE_EPOCHS
from tuneforge.trainables._session import (
    rank,
    report,
    restored_checkpoint,
    trial_cpus,
    trial_device,
    world_size,
)

__all__ = ["LOOP_METRICS", "EpochRun", "LossMean", "TorchFamily", "TrainSettings", "TrialState", "batches",
           "run_trial", "unwrapped", "warmup_cosine"]

_LATENCY_CALLS = 10
"""Timed inference calls of one sample (after two untimed ones); latency_ms is their median."""
_CHECKPOINT_FILE = "state.pt"
_MODEL_FOLDER = "model"
LOOP_METRICS = frozenset({"epoch", "progress", "epoch_s", "samples_per_s", "peak_rss_mb", "workers",
                          "n_params", "latency_ms"})
"""What the loop reports every epoch besides the family's metrics (numbers; with them the
string ``device``)."""


@dataclass(frozen=True)
class TrainSettings:
    """What every torch family's trial reads besides its model config; each is a config key,
    fixed in a space or searched like any other."""

    epochs: int = 10
    batch_size: int = 128
    """The global batch: a data-parallel trial's N workers each take ``batch_size // N`` of it
    a step (:attr:`EpochRun.batch_size`), so one step still averages the gradient over about
    ``batch_size`` samples and the learning rate keeps its meaning."""
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    """Linear warm-up of the learning rate over this many epochs, then a cosine decay to 0."""
    grad_clip: float = 1.0
    """Largest gradient norm; 0 turns clipping off."""
    seed: int = 0
    compile: bool = False
    """Train through ``torch.compile`` (see the module's docstring); never in a ``--smoke`` trial."""
    smoke: bool = False
    """Set by ``tuneforge search --smoke``: SMOKE_EPOCHS epochs on the family's small subset."""

    @property
    def n_epochs(self) -> int:
        return min(self.epochs, SMOKE_EPOCHS) if self.smoke else self.epochs

    @property
    def n_warmup_epochs(self) -> float:
        """The warm-up a trial runs: a ``--smoke`` trial's is shrunk with its epochs, so that its
        schedule keeps its shape (a warm-up of 2 epochs would leave 2 smoke epochs no time to
        learn)."""
        return self.warmup_epochs * self.n_epochs / self.epochs if self.smoke else self.warmup_epochs


@dataclass
class TrialState:
    """What a family builds for a trial and a checkpoint saves: the model, its optimisers and
    LR schedulers (each by name; a GAN has two of each, a classifier one).

    In a data-parallel trial, ``model`` is its ``DistributedDataParallel`` wrapper while the
    family's ``train_epoch`` runs (call it, not its submodules, so gradients are averaged), and
    the plain module everywhere else (``build``, ``evaluate``, ``export``, checkpoints)."""

    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    """JSON-ready values the model's weights depend on (a Transformer's vocabularies), saved in
    every checkpoint; a restore refuses a checkpoint whose extras differ (the data changed)."""


@dataclass
class EpochRun:
    """One trial as the family's ``train_epoch`` and ``evaluate`` see it."""

    config: Mapping[str, Any]
    settings: TrainSettings
    model_config: Any
    data: Any
    device: torch.device
    state: TrialState
    scaler: torch.amp.GradScaler
    epoch: int = 0
    """The epoch being trained, from 1."""
    evaluation: Any = None
    """What the family's ``evaluate`` keeps for its ``epoch_artifacts`` of the same epoch (the
    ViT's validation predictions), so pictures need no second pass over the data."""
    rank: int = 0
    """This worker's rank in a data-parallel trial (0 in a single-process one)."""
    world_size: int = 1
    """How many workers train the trial together (1: a single-process trial)."""
    training_model: nn.Module | None = None
    """What ``train_epoch`` calls as ``state.model``, where it is not the model itself: its
    ``DistributedDataParallel`` wrapper when ``world_size > 1``, and/or ``torch.compile``'s."""

    @property
    def batch_size(self) -> int:
        """This worker's batch: the config's (global) ``batch_size`` divided among the workers."""
        return max(1, self.settings.batch_size // self.world_size)

    def steps_per_epoch(self, n: int) -> int:
        """Optimiser steps in one epoch over ``n`` training samples, on this worker (for LR
        schedules): batches of :attr:`batch_size` over its share of ``n``."""
        return math.ceil((n // self.world_size) / self.batch_size)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """Mixed precision (float16) on CUDA; a no-op on the CPU."""
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.is_cuda)

    def step(self, loss: torch.Tensor, optimizer: str = "main") -> None:
        """Backward ``loss`` (scaled under AMP), clip, step the named optimiser and its scheduler."""
        opt = self.state.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip > 0:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                     self.settings.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        if optimizer in self.state.schedulers:
            self.state.schedulers[optimizer].step()

    def shuffled(self, n: int) -> np.ndarray:
        """This worker's share of a permutation of ``range(n)`` that depends only on the seed
        and the epoch, so a resumed trial sees the same batches as one never stopped.

        A single-process trial gets the whole permutation. Rank r of N gets its r-th slice of
        ``n // N`` indices: every rank the same number, so each takes as many steps and
        ``DistributedDataParallel``'s collectives stay in step; the ``n % N`` left over are
        different samples each epoch."""
        order = np.random.default_rng([self.settings.seed, self.epoch]).permutation(n)
        share = n // self.world_size
        return order[self.rank * share:(self.rank + 1) * share]


class TorchFamily(ABC):
    """A PyTorch model family, as data for :func:`run_trial`. Subclasses store nothing per trial.

    ``model_config`` is the family's frozen model dataclass: its fields (less ``derived``,
    which :meth:`prepare` fills in from the data) and :class:`TrainSettings`' fields are the
    config keys a space may fix or search, besides the family's own ``extra_keys``.
    """

    name: str
    model_config: type
    derived: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()
    train_defaults: Mapping[str, Any] = MappingProxyType({})
    """The family's own defaults of :class:`TrainSettings` fields (a ViT's learning rate is not a
    GAN's); a space's values override them."""
    reuse_actors: bool = False
    """Torch trials hold CUDA memory and threads; a fresh actor per trial frees them."""
    data_parallel: bool = True
    """Whether a trial can run on several workers (``--workers-per-trial``): False for a family
    whose steps need the whole model in one process (DARTS' architecture step)."""
    compiles: bool = True
    """Whether ``compile: true`` applies: False for a family whose ``train_epoch`` steps its
    model's parts itself rather than through ``state.model`` (DARTS' bilevel search)."""

    @abstractmethod
    def prepare(self, config: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        """On the driver, before anything is created: validate the family's own keys (its
        dataset) and return the config with paths made absolute and ``derived`` fields set.
        Raises ConfigError with one line."""

    @abstractmethod
    def metrics(self) -> frozenset[str]:
        """The metrics ``train_epoch`` and ``evaluate`` report together, every epoch."""

    @abstractmethod
    def load_data(self, config: Mapping[str, Any], smoke: bool) -> Any:
        """In the trial, once: the data (read once per node, see :mod:`..images`);
        ``smoke`` asks for a small subset."""

    @abstractmethod
    def build(self, run: EpochRun) -> TrialState:
        """In the trial, once, before any epoch: the model (on ``run.device``), optimisers and
        schedulers. Called before a checkpoint is restored into what it returns."""

    @abstractmethod
    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        """Train one epoch (``run.epoch``) with ``run.step``, over ``run.shuffled(n)`` in batches
        of ``run.batch_size`` (a data-parallel worker's share), through ``run.state.model``;
        returns its training metrics, means over its samples (the loop averages them over the
        workers), ``n_samples``, the samples it trained on (for ``samples_per_s``), and
        optionally ``n_tokens``, the tokens it trained on (for ``tokens_per_s``)."""

    @abstractmethod
    def evaluate(self, run: EpochRun) -> dict[str, float]:
        """Evaluate on the validation split, without gradients; returns its metrics. Called on
        rank 0 only in a data-parallel trial."""

    def check_config(self, config: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """On the driver, for the space's centre and each categorical choice (a whole trial
        config): ConfigError with one line for a bad value of the family's own keys (a GAN's
        betas), as the model config's own checks do for its fields. Default: nothing to check."""

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:  # noqa: B027 (optional hook)
        """Write this epoch's pictures under ``folder`` (paths naming the epoch). Default: none."""

    def export(self, run: EpochRun) -> tuple[nn.Module, np.ndarray]:
        """The trained model as MLflow should hold it (taking raw inputs) and an input example,
        for the default :meth:`save_model`; a family that writes its own flavour needs none."""
        raise NotImplementedError(f"{self.name}: implement export, or save_model")

    def inference(self, run: EpochRun) -> tuple[nn.Module, Callable[[], Any]]:
        """The model a user gets (the logged one) and a call of it on one validation sample, on
        the trial's device, for ``n_params`` and ``latency_ms``. Default: :meth:`export`'s module
        on its example's first row; a family that writes its own flavour says what its model
        does with one input (a Transformer decodes one word)."""
        module, example = self.export(run)
        inputs = example if isinstance(example, tuple) else (example,)
        tensors = [torch.from_numpy(np.asarray(array[:1])).to(run.device) for array in inputs]
        return module, lambda: module(*tensors)

    def save_model(self, run: EpochRun, folder: Path) -> None:
        """After the last epoch, on rank 0: write the trained model as an MLflow model folder.
        Default: :meth:`export`'s module in MLflow's PyTorch flavour; a family whose model takes
        more than tensors (a Transformer takes text) writes its own flavour."""
        from tuneforge.trainables.torch.export import save_model

        save_model(*self.export(run), folder)

    def search_artifacts(self, config: Mapping[str, Any]) -> dict[str, str]:
        """On the driver, once, with the prepared config: text files for the search's parent run
        (name -> content), e.g. the held-out words anyone can score the logged model on."""
        return {}

    def run_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """On the driver, when a trial starts: params for its MLflow run besides the searched
        ones, that a user of its logged model needs (a generator's latent size). Default: none."""
        return {}

    def default_config(self) -> dict[str, Any]:
        """The value each config key takes when a space leaves it out, where the family has one:
        its model config's defaults (less ``derived``), :class:`TrainSettings`' with the family's
        ``train_defaults``. A family with defaults of its own ``extra_keys`` adds them."""
        def defaults(cls: type) -> dict[str, Any]:
            return {f.name: f.default for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING}

        model = {k: v for k, v in defaults(self.model_config).items() if k not in self.derived}
        return {**model, **defaults(TrainSettings), **self.train_defaults}

    def config_keys(self) -> frozenset[str]:
        fields = {f.name for f in dataclasses.fields(self.model_config)} - set(self.derived)
        return frozenset(fields | {f.name for f in dataclasses.fields(TrainSettings)} | set(self.extra_keys))


def split_config(family: TorchFamily, config: Mapping[str, Any]) -> tuple[TrainSettings, Any]:
    """The trial's settings and model config from its flat config (other keys are the family's)."""
    model_fields = {f.name for f in dataclasses.fields(family.model_config)}
    setting_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    settings = TrainSettings(**{**family.train_defaults,
                                **{k: v for k, v in config.items() if k in setting_fields}})
    model_config = family.model_config(**{k: v for k, v in config.items() if k in model_fields})
    return settings, model_config


def run_trial(family: TorchFamily, config: Mapping[str, Any]) -> None:
    """A trial of ``family``: Ray Tune calls this (through the family's ``train_<name>``) once
    per trial, on the worker Ray chose, or each Ray Train worker of a data-parallel trial once.
    Reports once per epoch; resumes from the trial's checkpoint."""
    settings, model_config = split_config(family, config)
    device = _trial_device()
    _seed_everything(settings.seed)
    run = EpochRun(config=config, settings=settings, model_config=model_config,
                   data=family.load_data(config, settings.smoke), device=device, state=None,
                   scaler=torch.amp.GradScaler(device.type, enabled=device.type == "cuda"),
                   rank=rank(), world_size=world_size())
    run.state = family.build(run)
    with restored_checkpoint() as folder:
        first_epoch = _restore(run, folder / _CHECKPOINT_FILE) + 1 if folder else 1
    run.training_model = _for_training(run)  # after the restore: a wrapper broadcasts rank 0's weights
    for epoch in range(first_epoch, settings.n_epochs + 1):
        run.epoch = epoch
        _report_epoch(family, run, _timed_epoch(family, run), is_last=epoch == settings.n_epochs)


def _trial_device() -> torch.device:
    """The device Ray gave this trial (or worker); on the CPU, torch's threads set to its CPUs."""
    device = torch.device(trial_device())
    if device.type == "cpu":
        torch.set_num_threads(trial_cpus())
    elif device.index is not None:
        torch.cuda.set_device(device)  # NCCL's collectives run on the current device
    return device


def _for_training(run: EpochRun) -> nn.Module | None:
    """:attr:`EpochRun.training_model`: the model behind DistributedDataParallel in a
    data-parallel trial, then compiled where ``compile`` is on; None where neither applies."""
    module = run.state.model
    if run.world_size > 1:
        module = _distributed(module, run.device)
    if run.settings.compile and not run.settings.smoke and can_compile(run.device):
        module = _compiled(module)
    return None if module is run.state.model else module


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels for ``device``: on the CPU, inductor needs a
    C++ compiler and Python's headers; without them, one warning a process and False."""
    import shutil
    import sysconfig
    import warnings

    if device.type != "cpu":
        return True
    candidates = (os.environ.get("CXX"), "g++", "c++", "clang++")
    compiler = next((c for c in candidates if c and shutil.which(c)), None)
    headers = Path(sysconfig.get_paths()["include"], "Python.h").is_file()
    if compiler and headers:
        return True
    include = sysconfig.get_paths()["include"]
    missing = "a C++ compiler (g++)" if not compiler else f"Python's headers ({include})"
    warnings.warn(f"compile: torch.compile needs {missing} on the CPU; training in eager mode "
                  "(Debian: apt-get install g++ python3-dev)", RuntimeWarning, stacklevel=2)
    return False


def _compiled(module: nn.Module) -> nn.Module:
    """``torch.compile`` of ``module``; of each trained part of an ``nn.ModuleDict`` (a GAN's
    generator and discriminator, which ``train_epoch`` calls one by one)."""
    if isinstance(module, nn.ModuleDict):
        return nn.ModuleDict({name: _compiled(part) if _trains(part) else part
                              for name, part in module.items()})
    return torch.compile(module)


def _distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` behind ``DistributedDataParallel`` (the process group is Ray Train's); an
    ``nn.ModuleDict`` (a GAN's generator and discriminator, which step on their own) part by part,
    so that each backward pass reduces the gradients of every parameter of the parts it ran."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, nn.ModuleDict):  # a part that does not train (an average) stays as it is
        return nn.ModuleDict({name: _distributed(part, device) if _trains(part) else part
                              for name, part in model.items()})

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def unwrapped(module: nn.Module) -> nn.Module:
    """The module inside torch.compile's and DistributedDataParallel's wrappers (itself when there
    are none): for a family's ``train_epoch``, which gets :attr:`EpochRun.training_model`."""
    from torch.nn.parallel import DistributedDataParallel

    module = getattr(module, "_orig_mod", module)  # torch.compile's OptimizedModule
    return module.module if isinstance(module, DistributedDataParallel) else module


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


@contextmanager
def _training_model(run: EpochRun) -> Iterator[None]:
    """``run.state.model`` is :attr:`EpochRun.training_model` inside the block (where there is one)."""
    module = run.state.model
    if run.training_model is not None:
        run.state.model = run.training_model
    try:
        yield
    finally:
        run.state.model = module


def _timed_epoch(family: TorchFamily, run: EpochRun) -> dict[str, Any]:
    cpu_started = time.process_time()
    with _training_model(run):
        run.state.model.train()
        started = time.perf_counter()
        metrics = family.train_epoch(run)
        seconds = time.perf_counter() - started
    n_samples = metrics.pop("n_samples", 0.0) * run.world_size  # every rank trains on as many
    n_tokens = metrics.pop("n_tokens", None)
    metrics = _mean_over_workers(metrics, run)
    if n_tokens is not None:  # ranks' batches differ in length: their counts are summed
        metrics["tokens_per_s"] = _sum_over_workers(n_tokens, run) / seconds
    run.state.model.eval()
    if run.rank == 0:
        with torch.no_grad():
            metrics.update({**_size_and_latency(family, run), **family.evaluate(run)})
    wall = time.perf_counter() - started
    return {**metrics, "epoch": float(run.epoch), "progress": run.epoch / run.settings.n_epochs,
            "epoch_s": seconds, "samples_per_s": n_samples / seconds, "peak_rss_mb": _peak_rss_mb(),
            "workers": float(run.world_size), "device": str(run.device),
            **system_metrics(run.device, time.process_time() - cpu_started, wall)}


def _size_and_latency(family: TorchFamily, run: EpochRun) -> dict[str, float]:
    """``n_params`` and ``latency_ms`` of the model :meth:`TorchFamily.inference` gives, in eval
    mode without gradients: the median of :data:`_LATENCY_CALLS` timed calls of one sample (after
    two untimed ones), waited for on a GPU. A family's ``evaluate`` may report its own
    ``n_params`` (the DARTS network's, its auxiliary head left out, as the paper counts)."""
    module, call = family.inference(run)
    seconds = []
    for i in range(2 + _LATENCY_CALLS):
        started = time.perf_counter()
        call()
        if run.is_cuda:
            torch.cuda.synchronize(run.device)
        if i >= 2:
            seconds.append(time.perf_counter() - started)
    return {"n_params": float(sum(p.numel() for p in module.parameters())),
            "latency_ms": 1000.0 * float(np.median(seconds))}


def system_metrics(device: torch.device, cpu_s: float, wall_s: float) -> dict[str, float]:
    """What the MLflow UI's "System metrics" tab plots (metrics named ``system/...``) for the
    epoch just done: the trial process's CPU use (``cpu_s`` of CPU time over ``wall_s``, in % of
    one core: 200 is two cores busy), its resident memory now, the machine's memory in use, and
    on CUDA the GPU's memory held by torch and its utilisation (where NVML is there to say)."""
    metrics = {"system/process_cpu_utilization_percentage": 100.0 * cpu_s / max(wall_s, 1e-9)}
    rss = _rss_mb()
    if rss is not None:
        metrics["system/process_memory_rss_megabytes"] = rss
    memory = _machine_memory_mb()
    if memory is not None:
        used, total = memory
        metrics["system/system_memory_usage_megabytes"] = used
        metrics["system/system_memory_usage_percentage"] = 100.0 * used / total
    if device.type == "cuda":
        index = device.index or 0
        metrics[f"system/gpu_{index}_memory_usage_megabytes"] = torch.cuda.memory_reserved(device) / 2**20
        with contextlib.suppress(Exception):  # torch reads utilisation through NVML, which may be missing
            metrics[f"system/gpu_{index}_utilization_percentage"] = float(torch.cuda.utilization(device))
    return metrics


def _rss_mb() -> float | None:
    """The process's resident memory now, from Linux's /proc (None elsewhere)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _machine_memory_mb() -> tuple[float, float] | None:
    """The machine's memory in use and in all (MiB), as ``free`` counts it (total less available),
    from Linux's /proc/meminfo; None elsewhere."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        total, available = (int(fields[key].split()[0]) / 1024 for key in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return None
    return total - available, total


def _mean_over_workers(metrics: dict[str, float], run: EpochRun) -> dict[str, float]:
    """The family's training metrics averaged over the workers: each is a mean over a worker's
    share, and the shares are equal, so this is the mean over all of the epoch's samples."""
    if run.world_size == 1 or not metrics:
        return metrics
    import torch.distributed as dist

    values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=run.device)
    dist.all_reduce(values)
    return dict(zip(metrics, (values / run.world_size).tolist(), strict=True))


def _sum_over_workers(value: float, run: EpochRun) -> float:
    if run.world_size == 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=run.device)
    dist.all_reduce(total)
    return float(total)


def _peak_rss_mb() -> float:
    """The trial process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _report_epoch(family: TorchFamily, run: EpochRun, metrics: dict[str, Any], *, is_last: bool) -> None:
    if run.rank != 0:  # rank 0 checkpoints, draws and exports; every rank reports
        report(metrics)
        return
    with tempfile.TemporaryDirectory() as checkpoint, tempfile.TemporaryDirectory() as artifacts:
        torch.save(_state_dict(run), Path(checkpoint) / _CHECKPOINT_FILE)
        family.epoch_artifacts(run, Path(artifacts))
        if is_last:
            family.save_model(run, Path(artifacts) / _MODEL_FOLDER)
        has_files = any(Path(artifacts).iterdir())
        report(metrics, checkpoint=checkpoint, artifacts=artifacts if has_files else None)


def _state_dict(run: EpochRun) -> dict[str, Any]:
    state = run.state
    return {"epoch": run.epoch,
            "model": state.model.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in state.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in state.schedulers.items()},
            "scaler": run.scaler.state_dict(),
            "extras": state.extras,
            "rng": _rng_states()}


def _restore(run: EpochRun, path: Path) -> int:
    """Load a checkpoint into ``run``; returns the epoch it was saved after."""
    saved = torch.load(path, map_location=run.device, weights_only=False)
    state = run.state
    if saved.get("extras", {}) != state.extras:
        raise RuntimeError(f"the checkpoint {path} was made with other {', '.join(sorted(state.extras))} "
                           "(its data changed since); start the trial again")
    state.model.load_state_dict(saved["model"])
    for name, optimizer in state.optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    for name, scheduler in state.schedulers.items():
        scheduler.load_state_dict(saved["schedulers"][name])
    run.scaler.load_state_dict(saved["scaler"])
    _set_rng_states(saved["rng"])
    return int(saved["epoch"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def warmup_cosine(warmup_steps: float, total_steps: int) -> Callable[[int], float]:
    """The LR factor at a step, for ``LambdaLR``: linear from ~0 to 1 over ``warmup_steps``,
    then a cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class LossMean:
    """The weighted mean of an epoch's batch losses, summed where the losses are.

    :meth:`add` keeps the sum a tensor on the loss's device, so a step costs no host sync (a
    ``float(loss)`` a batch would stall a GPU's queue every step); :meth:`value` reads it once, at
    the epoch's end. The sum is float64, as the Python floats it replaces were, so the CPU's
    numbers are the same to the bit."""

    def __init__(self) -> None:
        self._total: torch.Tensor | None = None
        self.total_weight = 0

    def add(self, loss: torch.Tensor, weight: int = 1) -> None:
        """Add ``weight * loss`` (a 0-dim tensor; detached here) to the sum."""
        if self._total is None:
            self._total = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._total += loss.detach().double() * weight
        self.total_weight += weight

    def value(self) -> float:
        """The sum over the weights: one host sync."""
        assert self._total is not None, "value() of a LossMean nothing was added to"
        return float(self._total) / self.total_weight


def batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Index arrays of consecutive batches over ``order`` (default ``range(n)``; a worker's
    share from :meth:`EpochRun.shuffled` may be shorter than ``n``); the last may be short."""
    order = np.arange(n) if order is None else order
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
