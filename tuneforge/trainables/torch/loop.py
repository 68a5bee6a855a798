"""The one epoch loop every PyTorch family runs in: device, threads, AMP, checkpoints, resume,
reporting and the trained model in MLflow.

A family (:class:`TorchFamily`) is data for the loop: a config dataclass for its model, its data,
a builder of its model and optimisers, one training epoch and one evaluation. :func:`run_trial`
owns everything else, so a fix here fixes every family:

- the device is the GPU Ray assigned the trial (with mixed precision), else the CPU with
  ``torch.set_num_threads`` set to the trial's CPUs, so concurrent trials do not oversubscribe;
- after every epoch it reports the family's metrics with ``epoch``, ``progress`` (the fraction
  of the trial's epochs done), ``epoch_s``, ``samples_per_s`` (training samples a second) and
  ``peak_rss_mb`` (the trial process's peak memory), a checkpoint, and the family's pictures;
- a checkpoint holds the model, optimisers, LR schedulers, the AMP scaler, every RNG state and
  the epoch, so a trial stopped after epoch k and resumed reports the same epoch-(k+1) metrics
  as one never stopped (seeded, on the CPU);
- the last epoch's report carries the trained model as an MLflow model folder (``model/``).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge.trainables._session import report, restored_checkpoint, trial_cpus, trial_device

__all__ = ["LOOP_METRICS", "EpochRun", "TorchFamily", "TrainSettings", "TrialState", "run_trial"]

_CHECKPOINT_FILE = "state.pt"
_MODEL_FOLDER = "model"
LOOP_METRICS = frozenset({"epoch", "progress", "epoch_s", "samples_per_s", "peak_rss_mb"})
"""What the loop reports every epoch besides the family's metrics."""
SMOKE_EPOCHS = 2
"""``--smoke``: at most this many epochs (and the family's small data subset)."""


@dataclass(frozen=True)
class TrainSettings:
    """What every torch family's trial reads besides its model config; each is a config key,
    fixed in a space or searched like any other."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    """Linear warm-up of the learning rate over this many epochs, then a cosine decay to 0."""
    grad_clip: float = 1.0
    """Largest gradient norm; 0 turns clipping off."""
    seed: int = 0
    smoke: bool = False
    """Set by ``tuneforge search --smoke``: SMOKE_EPOCHS epochs on the family's small subset."""

    @property
    def n_epochs(self) -> int:
        return min(self.epochs, SMOKE_EPOCHS) if self.smoke else self.epochs


@dataclass
class TrialState:
    """What a family builds for a trial and a checkpoint saves: the model, its optimisers and
    LR schedulers (each by name; a GAN has two of each, a classifier one)."""

    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)


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
        """A permutation of ``range(n)`` that depends only on the seed and the epoch, so a
        resumed trial sees the same batches as one never stopped."""
        return np.random.default_rng([self.settings.seed, self.epoch]).permutation(n)


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
        """Train one epoch (``run.epoch``) with ``run.step``; returns its training metrics and
        ``n_samples``, the samples it trained on (for the loop's ``samples_per_s``)."""

    @abstractmethod
    def evaluate(self, run: EpochRun) -> dict[str, float]:
        """Evaluate on the validation split, without gradients; returns its metrics."""

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:  # noqa: B027 (optional hook)
        """Write this epoch's pictures under ``folder`` (paths naming the epoch). Default: none."""

    @abstractmethod
    def export(self, run: EpochRun) -> tuple[nn.Module, np.ndarray]:
        """The trained model as MLflow should hold it (taking raw inputs) and an input example."""

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
    per trial, on the worker Ray chose. Reports once per epoch; resumes from Tune's checkpoint."""
    settings, model_config = split_config(family, config)
    device = torch.device(trial_device())
    if device.type == "cpu":
        torch.set_num_threads(trial_cpus())
    _seed_everything(settings.seed)
    run = EpochRun(config=config, settings=settings, model_config=model_config,
                   data=family.load_data(config, settings.smoke), device=device, state=None,
                   scaler=torch.amp.GradScaler(device.type, enabled=device.type == "cuda"))
    run.state = family.build(run)
    with restored_checkpoint() as folder:
        first_epoch = _restore(run, folder / _CHECKPOINT_FILE) + 1 if folder else 1
    for epoch in range(first_epoch, settings.n_epochs + 1):
        run.epoch = epoch
        _report_epoch(family, run, _timed_epoch(family, run), is_last=epoch == settings.n_epochs)


def _timed_epoch(family: TorchFamily, run: EpochRun) -> dict[str, float]:
    run.state.model.train()
    started = time.perf_counter()
    metrics = family.train_epoch(run)
    seconds = time.perf_counter() - started
    n_samples = metrics.pop("n_samples", 0.0)
    run.state.model.eval()
    with torch.no_grad():
        metrics.update(family.evaluate(run))
    return {**metrics, "epoch": float(run.epoch), "progress": run.epoch / run.settings.n_epochs,
            "epoch_s": seconds, "samples_per_s": n_samples / seconds, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """The trial process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _report_epoch(family: TorchFamily, run: EpochRun, metrics: dict[str, float], *, is_last: bool) -> None:
    with tempfile.TemporaryDirectory() as checkpoint, tempfile.TemporaryDirectory() as artifacts:
        torch.save(_state_dict(run), Path(checkpoint) / _CHECKPOINT_FILE)
        family.epoch_artifacts(run, Path(artifacts))
        if is_last:
            from tuneforge.trainables.torch.export import save_model

            save_model(*family.export(run), Path(artifacts) / _MODEL_FOLDER)
        has_files = any(Path(artifacts).iterdir())
        report(metrics, checkpoint=checkpoint, artifacts=artifacts if has_files else None)


def _state_dict(run: EpochRun) -> dict[str, Any]:
    state = run.state
    return {"epoch": run.epoch,
            "model": state.model.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in state.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in state.schedulers.items()},
            "scaler": run.scaler.state_dict(),
            "rng": _rng_states()}


def _restore(run: EpochRun, path: Path) -> int:
    """Load a checkpoint into ``run``; returns the epoch it was saved after."""
    saved = torch.load(path, map_location=run.device, weights_only=False)
    state = run.state
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


def batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Index arrays of consecutive batches over ``order`` (default ``range(n)``); the last may
    be short."""
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
