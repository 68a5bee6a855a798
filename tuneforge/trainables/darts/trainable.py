"""The DARTS trainables: ``darts``, the supernet search as a trial, and ``darts-net``, a discrete
network trained from scratch from a genotype (how ``tuneforge darts retrain`` compares them).

``darts`` config keys: ``dataset`` (see :mod:`tuneforge.trainables.images`), the
:class:`~.search_model.SupernetConfig` fields (``channels``, ``layers``, ``steps``,
``stem_multiplier``; the image's side, channels and classes come from the dataset), the loop's
:class:`~tuneforge.trainables.torch.loop.TrainSettings` (``lr`` is the weights' SGD learning rate,
cosine-annealed to ``lr_min``; ``batch_size``, ``epochs``, ``seed``, ...) and
:class:`SearchSettings` (``order``, ``hvp``, ``arch_lr``, ``arch_weight_decay``, ``lr_min``,
``momentum``, ``train_images``, ``val_images``). The training images are split in two halves:
the weights train on the first, the architecture on the second (:mod:`.architect`); every weight
step follows an architecture step. Each epoch reports ``train_loss``, ``arch_loss`` (the held-out half's),
``val_loss`` and ``val_accuracy`` (the supernet's, on the dataset's validation split) and writes
``genotype.json`` (the derived genotype, :mod:`.genotypes`), ``cells.png`` (its two cells) and
``alphas/epoch-NNNN.png`` (a heat map of the softmaxed architecture weights). The last epoch
carries the supernet as an image classifier (raw images in, logits out).

``darts-net`` config keys: ``dataset``, ``genotype`` (a name of :data:`~.genotypes.GENOTYPES`, a
name of the config's ``genotypes`` mapping, or a genotype itself as a mapping), the
:class:`~.model.NetworkConfig` fields (``channels``, ``layers``, ``auxiliary``, ``drop_path``), the
loop's settings, ``momentum``, ``lr_min``, ``auxiliary_weight``, ``train_images`` and
``val_images``. It reports ``train_loss``, ``val_loss``, ``val_accuracy`` and ``n_params`` every
epoch, and ``test_accuracy`` at the last; ``genotype.json`` and ``cells.png`` at the first; the
model at the last.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_int, check_number
from tuneforge.errors import ConfigError
from tuneforge.trainables.darts.architect import HVP_METHODS, arch_step
from tuneforge.trainables.darts.genotypes import GENOTYPES, Genotype
from tuneforge.trainables.darts.model import DartsNetwork, NetworkConfig
from tuneforge.trainables.darts.search_model import Supernet, SupernetConfig
from tuneforge.trainables.images import ImageSplits, prepare_square_dataset
from tuneforge.trainables.torch.classification import (
    ImageClassification,
    NormalisedClassifier,
    as_float,
    predict,
)
from tuneforge.trainables.torch.loop import (
    EpochRun,
    LossMean,
    TrialState,
    batches,
    run_trial,
    split_config,
    unwrapped,
)

__all__ = ["DARTS", "DARTS_NET", "GENOTYPE_FILE", "SearchSettings", "train_darts", "train_darts_net"]

logger = logging.getLogger(__name__)

GENOTYPE_FILE = "genotype.json"
CELLS_FILE = "cells.png"
_NO_GRAPHVIZ = ("Graphviz is not installed (no `dot` on the PATH): this trial logs its genotype.json but no "
                f"{CELLS_FILE}; install it (apt-get install graphviz, brew install graphviz) for the picture")


@dataclass(frozen=True)
class SearchSettings:
    """What the DARTS families read besides their network's config (config keys, fixed or
    searched). The defaults are the paper's CIFAR-10 search."""

    order: int = 1
    """1: first-order architecture gradients; 2: second order (the unrolled step, eq. 7-8)."""
    hvp: str = "finite_difference"
    """Second order: the Hessian-vector product by the paper's finite difference, or ``exact``
    (double backward; :mod:`.architect`)."""
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    lr_min: float = 1e-3
    """The weights' learning rate at the end of its cosine annealing."""
    momentum: float = 0.9
    auxiliary_weight: float = 0.4
    """darts-net with ``auxiliary``: the auxiliary head's share of the loss."""
    train_images: int | None = None
    """Train on the first N training images only (None: all): a CPU's budget."""
    val_images: int | None = None
    """Evaluate on the first N validation images only (None: all; the test split stays whole)."""

    def __post_init__(self) -> None:
        if self.order not in (1, 2) or isinstance(self.order, bool):
            raise ConfigError(f"order: {self.order!r} is not allowed; it must be 1 or 2")
        if self.hvp not in HVP_METHODS:
            raise ConfigError(f"hvp: {self.hvp!r} is not allowed; it must be one of {', '.join(HVP_METHODS)}")
        for name in ("arch_lr", "lr_min"):
            check_number(name, getattr(self, name), above=0)
        for name in ("arch_weight_decay", "auxiliary_weight"):
            check_number(name, getattr(self, name), at_least=0)
        check_number("momentum", self.momentum, at_least=0, below=1)
        for name in ("train_images", "val_images"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=2)


def _settings(config: Mapping[str, Any]) -> SearchSettings:
    keys = {f.name for f in fields(SearchSettings)}
    return SearchSettings(**{k: v for k, v in config.items() if k in keys})


class _DartsFamily(ImageClassification):
    """What both DARTS families share: the dataset with an optional cap on the training images,
    SGD with momentum on a cosine schedule (the paper's), and models built with checked configs."""

    derived = ("image_size", "in_channels", "n_classes")
    train_defaults = MappingProxyType({"lr": 0.025, "weight_decay": 3e-4, "batch_size": 64,
                                       "grad_clip": 5.0, "warmup_epochs": 0.0})

    def default_config(self) -> dict[str, Any]:
        """The loop's defaults with :class:`SearchSettings`' (the paper's)."""
        own = {f.name: f.default for f in fields(SearchSettings) if f.name in self.extra_keys}
        return {**super().default_config(), **own}

    def prepare(self, config: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        splits = prepare_square_dataset(config, base_dir, self.name)
        channels, side, _ = splits.image_shape
        config.update(image_size=side, in_channels=channels, n_classes=splits.n_classes)
        return config

    def check_config(self, config: Mapping[str, Any]) -> None:
        _settings(config)  # the network's config checks itself where split_config builds it

    def run_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What ``tuneforge darts retrain`` reads back: the dataset, the training images' cap and
        the stem's stride."""
        return {"dataset": config["dataset"], "train_images": config.get("train_images"),
                "val_images": config.get("val_images"),
                "stem_stride": split_config(self, config)[1].stem_stride}

    def load_data(self, config: Mapping[str, Any], smoke: bool) -> ImageSplits:
        splits, settings = super().load_data(config, smoke), _settings(config)
        return splits.subset(settings.train_images or len(splits.train_labels),
                             settings.val_images or len(splits.val_labels))

    def sgd(self, run: EpochRun, parameters: Any) -> tuple[torch.optim.Optimizer, Any]:
        """SGD with the settings' momentum, annealed per step to ``lr_min`` over the trial."""
        settings, search = run.settings, _settings(run.config)
        optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=search.momentum,
                                    weight_decay=settings.weight_decay)
        total = settings.n_epochs * run.steps_per_epoch(self.n_weight_images(run))
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total, eta_min=search.lr_min)

    def n_weight_images(self, run: EpochRun) -> int:
        return len(run.data.train_labels)

    def batch(self, run: EpochRun, images: np.ndarray, labels: np.ndarray,
              idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw images in [0, 1] and labels of the training images at ``idx``."""
        idx = np.sort(idx)  # sorted reads of a memory-mapped array are sequential
        return as_float(images[idx], run.device), torch.from_numpy(np.asarray(labels[idx])).to(run.device)


class DartsSearchFamily(_DartsFamily):
    name = "darts"
    model_config = SupernetConfig
    extra_keys = ("dataset", "order", "hvp", "arch_lr", "arch_weight_decay", "lr_min", "momentum",
                  "train_images", "val_images")
    data_parallel = False
    """The architecture step differentiates through the whole supernet in one process."""
    compiles = False
    """Its weight and architecture steps call the supernet itself, alternately."""

    def network(self, model_config: SupernetConfig) -> nn.Module:
        return Supernet(model_config)

    def metrics(self) -> frozenset[str]:
        return frozenset({"train_loss", "arch_loss", "val_loss", "val_accuracy"})

    def n_weight_images(self, run: EpochRun) -> int:
        return len(run.data.train_labels) // 2

    def build(self, run: EpochRun) -> TrialState:
        search = _settings(run.config)
        model = NormalisedClassifier.for_images(Supernet(run.model_config), run.data.train_images)
        model.to(run.device)
        supernet = model.network
        weights, schedule = self.sgd(run, list(supernet.weights()))
        arch = torch.optim.Adam(supernet.arch_parameters(), lr=search.arch_lr, betas=(0.5, 0.999),
                                weight_decay=search.arch_weight_decay)
        return TrialState(model=model, optimizers={"main": weights, "arch": arch},
                          schedulers={"main": schedule})

    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        """Alternate an architecture step on the second half and a weight step on the first."""
        images, labels = run.data.train_images, run.data.train_labels
        supernet, settings = run.state.model.network, _settings(run.config)
        half = len(labels) // 2
        rng = np.random.default_rng([run.settings.seed, run.epoch, 1])  # apart from run.shuffled's
        held_out = half + rng.permutation(len(labels) - half)
        losses, arch_losses = LossMean(), LossMean()
        standardise = run.state.model.standardise
        for i, idx in enumerate(batches(half, run.batch_size, run.shuffled(half))):
            x, y = self.batch(run, images, labels, idx)
            train_batch = standardise(x), y
            start = (i * run.batch_size) % len(held_out)
            x, y = self.batch(run, images, labels, held_out[start:start + run.batch_size])
            val_batch = standardise(x), y
            xi = run.state.schedulers["main"].get_last_lr()[0]
            arch_losses.add(arch_step(supernet, run.state.optimizers["arch"], train_batch, val_batch,
                                      order=settings.order, xi=xi, hvp=settings.hvp), len(idx))
            with run.autocast():
                loss = F.cross_entropy(supernet(train_batch[0]), train_batch[1])
            run.step(loss)
            losses.add(loss, len(idx))
        return {"train_loss": losses.value(), "arch_loss": arch_losses.value(),
                "n_samples": float(losses.total_weight)}

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:
        from tuneforge.trainables.darts.pictures import alphas_heatmap_png

        supernet = run.state.model.network
        genotype = supernet.genotype()
        _write_genotype(genotype, folder, title=f"{self.name}, epoch {run.epoch}", first=run.epoch == 1)
        alphas_heatmap_png(*supernet.arch_weights(), folder / "alphas" / f"epoch-{run.epoch:04d}.png",
                           title=f"softmax(alpha), epoch {run.epoch}")


def resolve_genotype(config: Mapping[str, Any]) -> Genotype:
    """A darts-net config's ``genotype``: a bundled name, a name in its ``genotypes`` mapping, or
    a genotype mapping. ConfigError with one line otherwise."""
    value = config.get("genotype", "darts-v2")
    named = {**GENOTYPES, **(config.get("genotypes") or {})}
    if isinstance(value, str):
        if value not in named:
            raise ConfigError(f"genotype: unknown genotype {value!r}; valid: {', '.join(sorted(named))}, "
                              "or a genotype mapping")
        value = named[value]
    if isinstance(value, Genotype):
        return value
    try:
        return Genotype.from_dict(value)
    except ValueError as exc:
        raise ConfigError(f"genotype: {exc}") from None


class DartsNetFamily(_DartsFamily):
    name = "darts-net"
    model_config = NetworkConfig
    extra_keys = ("dataset", "genotype", "genotypes", "lr_min", "momentum", "auxiliary_weight",
                  "train_images", "val_images")

    def network(self, model_config: NetworkConfig) -> nn.Module:  # the genotype comes from the config
        raise NotImplementedError("darts-net builds its network in build()")

    def check_config(self, config: Mapping[str, Any]) -> None:
        super().check_config(config)
        resolve_genotype(config)

    def metrics(self) -> frozenset[str]:
        return frozenset({"train_loss", "val_loss", "val_accuracy", "n_params"})

    def build(self, run: EpochRun) -> TrialState:
        network = DartsNetwork(run.model_config, resolve_genotype(run.config))
        model = NormalisedClassifier.for_images(network, run.data.train_images).to(run.device)
        optimizer, schedule = self.sgd(run, model.parameters())
        return TrialState(model=model, optimizers={"main": optimizer}, schedulers={"main": schedule})

    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        images, labels = run.data.train_images, run.data.train_labels
        model = run.state.model  # the data-parallel wrapper, in such a trial
        drop_prob = run.model_config.drop_path * (run.epoch - 1) / run.settings.n_epochs
        unwrapped(model).network.drop_prob = drop_prob
        auxiliary_weight = _settings(run.config).auxiliary_weight
        losses = LossMean()
        for idx in batches(len(labels), run.batch_size, run.shuffled(len(labels))):
            x, y = self.batch(run, images, labels, idx)
            with run.autocast():
                output = model(x)  # in training, with an auxiliary head: (logits, auxiliary logits)
                logits, auxiliary = output if isinstance(output, tuple) else (output, None)
                loss = F.cross_entropy(logits, y)
                if auxiliary is not None:
                    loss = loss + auxiliary_weight * F.cross_entropy(auxiliary, y)
            run.step(loss)
            losses.add(loss, len(idx))
        return {"train_loss": losses.value(), "n_samples": float(losses.total_weight)}

    def evaluate(self, run: EpochRun) -> dict[str, float]:
        metrics = super().evaluate(run)
        metrics["n_params"] = float(sum(p.numel() for name, p in run.state.model.named_parameters()
                                        if "auxiliary" not in name))
        if run.epoch == run.settings.n_epochs:  # the held-out number, never searched on
            data = run.data
            with run.autocast():
                predicted = predict(run.state.model, data.test_images, run.device).argmax(1)
            metrics["test_accuracy"] = float(np.mean(predicted == np.asarray(data.test_labels)))
        return metrics

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:
        super().epoch_artifacts(run, folder)
        if run.epoch == 1:
            genotype = run.state.model.network.genotype
            _write_genotype(genotype, folder, title=f"{self.name}: {run.config.get('genotype')}", first=True)


def _write_genotype(genotype: Genotype, folder: Path, *, title: str, first: bool) -> None:
    """``genotype.json`` and ``cells.png`` (its picture) into ``folder``; where Graphviz is
    missing, no picture, and one warning at a trial's ``first`` call."""
    from tuneforge.trainables.darts.pictures import cells_png

    (folder / GENOTYPE_FILE).write_text(json.dumps(genotype.to_dict(), indent=1))
    if not cells_png(genotype, folder / CELLS_FILE, title=title) and first:
        logger.warning(_NO_GRAPHVIZ)


DARTS, DARTS_NET = DartsSearchFamily(), DartsNetFamily()


def train_darts(config: dict[str, Any]) -> None:
    """One DARTS supernet search: what Ray Tune runs."""
    run_trial(DARTS, config)


def train_darts_net(config: dict[str, Any]) -> None:
    """One discrete DARTS network trained from scratch: what Ray Tune runs."""
    run_trial(DARTS_NET, config)
