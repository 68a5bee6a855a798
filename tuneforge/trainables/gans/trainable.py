"""The GAN trainables ``dcgan``, ``cgan`` and ``wgan-gp``: the networks of :mod:`.dcgan`,
:mod:`.cgan` and :mod:`.wgan_gp` on the epoch loop, judged by :mod:`.metrics`.

Config keys: ``dataset`` (see :mod:`tuneforge.trainables.images`; square images with an even side
of at least 8), the family's model config fields (``latent_dim``, ``g_width``, ``d_width``; the
cGAN's ``label_dim``; image size, channels and classes come from the dataset), the loop's
:class:`~tuneforge.trainables.torch.loop.TrainSettings` (``lr`` is the generator's learning rate,
``batch_size``, ``epochs``, ``seed``, ...) and :class:`GANSettings` (``d_lr``, ``beta1``,
``beta2``, ``n_critic``, ``gp_weight``, ``feature_seed``, ``ema_decay``: the decay of the averaged
generator, the one that is scored, drawn and logged).

An epoch is one pass of the training images through the discriminator (the critic): one
discriminator step a batch, one generator step every ``n_critic`` batches and after the last.
Every epoch reports ``g_loss`` and ``d_loss`` (means over the epoch's steps; WGAN-GP adds
``wasserstein``, the critic's estimate of the distance, and ``gradient_penalty``), the
sample-quality scores of :mod:`.metrics` (``clf_fid``, ``clf_kid``, ``precision``, ``recall``) of
as many generated images as held-out real ones (the validation split's first 5,000; 256 with
``--smoke``), ``classifier_accuracy`` (the feature classifier's on real test images) and, for the
cGAN, ``class_accuracy`` (the classifier's on generated images, for the classes asked for). Each
epoch writes ``samples/epoch-NNNN.png``, a grid from a fixed noise batch (the cGAN: one row per
class). The last carries the generator as an MLflow PyTorch model: ``generator(z)`` (cGAN:
``generator(z, labels)``, labels int64 (N,)) with ``z`` float32 (N, latent_dim) returns images
(N, C, H, W) in [0, 1]; ``latent_dim`` (and ``n_classes``) are params of the trial's run.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge._checks import check_int, check_number
from tuneforge.errors import ConfigError
from tuneforge.trainables.gans import cgan, dcgan, wgan_gp
from tuneforge.trainables.gans.features import TrainedClassifier, feature_classifier
from tuneforge.trainables.gans.metrics import SampleQuality
from tuneforge.trainables.images import ImageSplits, load_image_dataset, prepare_square_dataset
from tuneforge.trainables.torch.classification import as_float
from tuneforge.trainables.torch.loop import (
    EpochRun,
    LossMean,
    TorchFamily,
    TrialState,
    batches,
    run_trial,
    split_config,
    unwrapped,
)

__all__ = ["CGAN", "DCGAN", "WGAN_GP", "ConditionalUnitImages", "GANSettings", "UnitImages", "train_cgan",
           "train_dcgan", "train_wgan_gp"]

_SMOKE_TRAIN, _SMOKE_VAL = 512, 256
_N_EVAL = 5_000
"""Generated and real images in each epoch's scores (fewer if the validation split is smaller)."""
_EVAL_BATCH = 500
_GRID_SIDE = 8
"""An unconditional grid is 8 x 8 samples; a conditional one has one row per class, 8 columns."""
_NOISE_SEED = 1_234
"""Seeds the fixed noise of the scores and the grids (not the trial's seed: every trial of a
search draws the same latents)."""


@dataclass(frozen=True)
class GANSettings:
    """The adversarial settings every GAN trial reads (config keys, fixed or searched)."""

    d_lr: float | None = None
    """The discriminator's (critic's) learning rate; None: the generator's, ``lr``."""
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 1
    """Discriminator steps per generator step."""
    gp_weight: float = 10.0
    """WGAN-GP's lambda."""
    feature_seed: int = 0
    """Seeds the feature classifier of the scores: trials compare only under the same one."""
    loss: str = "bce"
    """DCGAN and cGAN: ``bce``, the non-saturating cross-entropy of the DCGAN paper, or ``hinge``
    (:data:`~.dcgan.LOSSES`); WGAN-GP's critic has its own."""
    ema_decay: float = 0.999
    """The averaged generator's decay: after the n-th generator step its weights (and BatchNorm
    statistics) move 1 - d of the way to the generator's, d = min(ema_decay, (1 + n) / (10 + n))
    (Yazici et al. 2019; the warm-up is TensorFlow's, so that a short run is not an average of
    its first steps). It is the one that is scored, drawn and logged; 0 makes it the generator."""

    def __post_init__(self) -> None:
        if self.d_lr is not None:
            check_number("d_lr", self.d_lr, above=0)
        for name in ("beta1", "beta2"):
            check_number(name, getattr(self, name), at_least=0, below=1)
        check_int("n_critic", self.n_critic, minimum=1)
        check_number("gp_weight", self.gp_weight, at_least=0)
        check_number("ema_decay", self.ema_decay, at_least=0, below=1)
        if self.loss not in dcgan.LOSSES:
            raise ConfigError(f"loss: {self.loss!r} is not allowed; it must be one of "
                              f"{', '.join(dcgan.LOSSES)}")
        check_int("feature_seed", self.feature_seed)


class UnitImages(nn.Module):
    """The logged generator: ``generator(z)``, the network's tanh output mapped to [0, 1]."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.generator(z) + 1) / 2


class ConditionalUnitImages(UnitImages):
    """The logged conditional generator: ``generator(z, labels)`` in [0, 1]."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.generator(z, labels) + 1) / 2


@dataclass
class GANData:
    """What a GAN trial reads: the dataset's splits, the feature classifier and the scorer (made
    on the trial's device the first time it is asked for)."""

    splits: ImageSplits
    classifier: TrainedClassifier
    n_eval: int
    quality: SampleQuality | None = None

    def scorer(self, device: torch.device) -> SampleQuality:
        if self.quality is None:
            network = self.classifier.network.to(device)
            self.quality = SampleQuality(network, as_float(self.splits.val_images[:self.n_eval], device))
        return self.quality


def _moving_average(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``AveragedModel``'s ``avg_fn``: the exponential moving average with the warm-up above."""

    def average(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor) -> torch.Tensor:
        # On the device: float(n_averaged) would be a host sync for every parameter at every step.
        n = n_averaged.to(torch.float64)
        weight = torch.clamp((1 + n) / (10 + n), max=decay)
        return averaged * weight + current * (1 - weight) if averaged.is_floating_point() else current

    return average


def _linear_warmup(steps: float) -> Callable[[int], float]:
    """The LR factor at a step, for ``LambdaLR``: linear from ~0 to 1 over ``steps``, then 1."""
    return lambda step: min(1.0, (step + 1) / steps)


class GANFamily(TorchFamily):
    """What the three GANs share: data, optimisers, the epoch of alternating steps, scores, grids
    and the logged generator. A subclass names its networks and its discriminator's loss.

    The trial's model is ``nn.ModuleDict`` of the ``generator``, the ``discriminator`` and the
    ``averaged_generator`` (an exponential moving average of the generator's weights, torch's
    ``AveragedModel``): the loop checkpoints all three, and a data-parallel trial wraps the two
    that train each in its own DistributedDataParallel (each steps on its own). Both learning
    rates are constant after an optional linear warm-up (``warmup_epochs``, 0 by default), as in
    the DCGAN and WGAN-GP papers' MNIST runs: a cosine decay to 0, measured on dcgan-mnist
    (BENCHMARKS.md), made the last epochs' scores worse, not better."""

    derived: tuple[str, ...] = ("image_size", "channels")
    extra_keys: tuple[str, ...] = ("dataset", "d_lr", "beta1", "beta2", "n_critic", "ema_decay",
                                   "feature_seed")
    train_defaults = MappingProxyType({"lr": 2e-4, "batch_size": 64, "weight_decay": 0.0,
                                       "warmup_epochs": 0.0, "grad_clip": 0.0})
    gan_defaults: Mapping[str, Any] = MappingProxyType({})
    """The family's own defaults of :class:`GANSettings` fields."""
    conditional = False

    @abstractmethod
    def networks(self, model_config: Any) -> tuple[nn.Module, nn.Module]:
        """The generator and the discriminator (critic), initialised."""

    @abstractmethod
    def discriminator_loss(self, run: EpochRun, real: torch.Tensor, fake: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss on a real and a generated batch (detached), and metrics to
        average over the epoch besides ``d_loss``: 0-dim tensors, left on the device (the loop
        reads the epoch's means once)."""

    @abstractmethod
    def generator_loss(self, run: EpochRun, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The generator's loss on a generated batch."""

    # -- the loop's contract ----------------------------------------------------------------------

    def gan_settings(self, config: Mapping[str, Any]) -> GANSettings:
        keys = {f.name for f in fields(GANSettings)} & set(self.extra_keys)
        return GANSettings(**{**self.gan_defaults, **{k: v for k, v in config.items() if k in keys}})

    def prepare(self, config: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        splits = prepare_square_dataset(config, base_dir, self.name)
        channels, side, _ = splits.image_shape
        dcgan.stages(side)
        config.update(image_size=side, channels=channels)
        if "n_classes" in self.derived:
            config["n_classes"] = splits.n_classes
        return config

    def check_config(self, config: Mapping[str, Any]) -> None:
        self.gan_settings(config)

    def default_config(self) -> dict[str, Any]:
        """The loop's defaults with the GAN settings' (``d_lr``: the generator's ``lr``)."""
        defaults = super().default_config()
        gan = self.gan_settings({})
        own = {f.name: getattr(gan, f.name) for f in fields(GANSettings) if f.name in self.extra_keys}
        return {**defaults, **own, "d_lr": gan.d_lr or defaults["lr"]}

    def run_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The logged generator's inputs: ``latent_dim`` (and the cGAN's ``n_classes``)."""
        _, model_config = split_config(self, config)
        return {name: getattr(model_config, name) for name in ("latent_dim", "n_classes")
                if hasattr(model_config, name)}

    def metrics(self) -> frozenset[str]:
        return frozenset({"g_loss", "d_loss", "clf_fid", "clf_kid", "precision", "recall",
                          "classifier_accuracy"})

    def load_data(self, config: Mapping[str, Any], smoke: bool) -> GANData:
        splits = load_image_dataset(config["dataset"])
        seed = self.gan_settings(config).feature_seed
        classifier = feature_classifier(config["dataset"], splits, seed=seed, smoke=smoke)
        if smoke:
            splits = splits.subset(_SMOKE_TRAIN, _SMOKE_VAL)
        return GANData(splits, classifier, n_eval=min(_N_EVAL, len(splits.val_labels)))

    def build(self, run: EpochRun) -> TrialState:
        from torch.optim.swa_utils import AveragedModel

        generator, discriminator = self.networks(run.model_config)
        gan, settings = self.gan_settings(run.config), run.settings
        averaged = AveragedModel(generator, avg_fn=_moving_average(gan.ema_decay), use_buffers=True)
        model = nn.ModuleDict({"generator": generator, "discriminator": discriminator,
                               "averaged_generator": averaged.requires_grad_(False)}).to(run.device)
        betas = (gan.beta1, gan.beta2)
        adam = {"betas": betas, "weight_decay": settings.weight_decay}
        d_lr = gan.d_lr or settings.lr
        optimizers = {"generator": torch.optim.Adam(generator.parameters(), lr=settings.lr, **adam),
                      "discriminator": torch.optim.Adam(discriminator.parameters(), lr=d_lr, **adam)}
        if settings.n_warmup_epochs <= 0:
            return TrialState(model=model, optimizers=optimizers)
        d_steps = run.steps_per_epoch(len(run.data.splits.train_labels))
        warmup = {"discriminator": d_steps * settings.n_warmup_epochs,
                  "generator": math.ceil(d_steps / gan.n_critic) * settings.n_warmup_epochs}
        schedulers = {name: torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup(warmup[name]))
                      for name, optimizer in optimizers.items()}
        return TrialState(model=model, optimizers=optimizers, schedulers=schedulers)

    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        images, labels = run.data.splits.train_images, run.data.splits.train_labels
        nets, n_critic = run.state.model, self.gan_settings(run.config).n_critic
        means: dict[str, LossMean] = defaultdict(LossMean)  # d_loss, extras: per critic step; g_loss
        n_seen = 0
        order = run.shuffled(len(labels))
        last = math.ceil(len(order) / run.batch_size) - 1
        for i, idx in enumerate(batches(len(labels), run.batch_size, order)):
            idx = np.sort(idx)  # sorted reads of a memory-mapped array are sequential
            real = as_float(images[idx], run.device) * 2 - 1
            classes = torch.from_numpy(np.asarray(labels[idx])).to(run.device)
            with run.autocast():
                with torch.no_grad():
                    fake = self.generate(nets["generator"], self.noise(run, len(idx)), classes)
                d_loss, extra = self.discriminator_loss(run, real, fake, classes)
            run.step(d_loss, "discriminator")
            means["d_loss"].add(d_loss)
            for name, value in extra.items():
                means[name].add(value)
            n_seen += len(idx)
            if (i + 1) % n_critic == 0 or i == last:  # every epoch ends with a generator step
                with run.autocast():
                    fake = self.generate(nets["generator"], self.noise(run, len(idx)), classes)
                    g_loss = self.generator_loss(run, fake, classes)
                run.step(g_loss, "generator")
                nets["averaged_generator"].update_parameters(unwrapped(nets["generator"]))
                means["g_loss"].add(g_loss)
        return {**{name: mean.value() for name, mean in means.items()}, "n_samples": float(n_seen)}

    def evaluate(self, run: EpochRun) -> dict[str, float]:
        data = run.data
        scorer = data.scorer(run.device)
        z, labels = self.fixed_inputs(run, data.n_eval)
        fake = self.sample(run, z, labels)
        scores = scorer(fake)
        scores["classifier_accuracy"] = data.classifier.test_accuracy
        if self.conditional:
            predicted = torch.cat([scorer.classifier.classify(b).argmax(1) for b in fake.split(_EVAL_BATCH)])
            scores["class_accuracy"] = float((predicted == labels).double().mean())
        return scores

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:
        from tuneforge.trainables.torch.pictures import image_grid_png

        rows = run.model_config.n_classes if self.conditional else _GRID_SIDE
        z, labels = self.fixed_inputs(run, rows * _GRID_SIDE, seed=_NOISE_SEED + 1)
        if self.conditional:  # row r shows class r
            labels = torch.arange(rows, device=run.device).repeat_interleave(_GRID_SIDE)
        images = self.sample(run, z, labels).cpu().numpy()
        row_names = run.data.splits.class_names if self.conditional else None
        image_grid_png(images, rows, folder / "samples" / f"epoch-{run.epoch:04d}.png",
                       title=f"{self.name}, epoch {run.epoch}", row_names=row_names)

    def export(self, run: EpochRun) -> tuple[nn.Module, np.ndarray | tuple[np.ndarray, ...]]:
        z, labels = self.fixed_inputs(run, 2)
        example = (z.cpu().numpy(), labels.cpu().numpy()) if self.conditional else z.cpu().numpy()
        logged = ConditionalUnitImages if self.conditional else UnitImages
        return logged(run.state.model["averaged_generator"].module), example

    # -- shared steps -----------------------------------------------------------------------------

    def generate(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``generator``'s images in [-1, 1] (call the data-parallel wrapper where there is one)."""
        return generator(z, labels) if self.conditional else generator(z)

    def discriminate(self, nets: nn.ModuleDict, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nets["discriminator"](images, labels) if self.conditional else nets["discriminator"](images)

    def noise(self, run: EpochRun, n: int) -> torch.Tensor:
        """A training batch's latents, from the trial's RNG (seeded, checkpointed)."""
        return torch.randn(n, run.model_config.latent_dim, device=run.device)

    def fixed_inputs(self, run: EpochRun, n: int,
                     seed: int = _NOISE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` latents and labels (classes in turn) that depend only on ``seed``, not the trial's RNG."""
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, run.model_config.latent_dim, generator=generator)
        n_classes = getattr(run.model_config, "n_classes", 1)
        return z.to(run.device), (torch.arange(n) % n_classes).to(run.device)

    def sample(self, run: EpochRun, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The averaged generator's images (eval mode) in [0, 1], in batches."""
        averaged = run.state.model["averaged_generator"]
        with torch.no_grad(), run.autocast():
            pairs = zip(z.split(_EVAL_BATCH), labels.split(_EVAL_BATCH), strict=True)
            return torch.cat([(self.generate(averaged, zs, ys).float() + 1) / 2 for zs, ys in pairs])


class DCGANFamily(GANFamily):
    name = "dcgan"
    model_config = dcgan.DCGANConfig
    extra_keys = (*GANFamily.extra_keys, "loss")

    def networks(self, model_config: dcgan.DCGANConfig) -> tuple[nn.Module, nn.Module]:
        return dcgan.Generator(model_config), dcgan.Discriminator(model_config)

    def discriminator_loss(self, run: EpochRun, real: torch.Tensor, fake: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nets = run.state.model
        loss, _ = dcgan.LOSSES[self.gan_settings(run.config).loss]
        return loss(self.discriminate(nets, real, labels), self.discriminate(nets, fake, labels)), {}

    def generator_loss(self, run: EpochRun, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, loss = dcgan.LOSSES[self.gan_settings(run.config).loss]
        return loss(self.discriminate(run.state.model, fake, labels))


class CGANFamily(DCGANFamily):
    name = "cgan"
    model_config = cgan.CGANConfig
    derived = ("image_size", "channels", "n_classes")
    conditional = True

    def networks(self, model_config: cgan.CGANConfig) -> tuple[nn.Module, nn.Module]:
        return cgan.ConditionalGenerator(model_config), cgan.ConditionalDiscriminator(model_config)

    def metrics(self) -> frozenset[str]:
        return super().metrics() | {"class_accuracy"}


class WGANGPFamily(GANFamily):
    name = "wgan-gp"
    model_config = wgan_gp.WGANGPConfig
    extra_keys = (*GANFamily.extra_keys, "gp_weight")
    train_defaults = MappingProxyType({**GANFamily.train_defaults, "lr": 1e-4})
    gan_defaults = MappingProxyType({"beta1": 0.0, "beta2": 0.9, "n_critic": 5})
    compiles = False
    """The gradient penalty differentiates the critic's gradient (a double backward), which
    torch.compile's autograd does not support."""

    def networks(self, model_config: wgan_gp.WGANGPConfig) -> tuple[nn.Module, nn.Module]:
        return dcgan.Generator(model_config), wgan_gp.Critic(model_config)

    def metrics(self) -> frozenset[str]:
        return super().metrics() | {"wasserstein", "gradient_penalty"}

    def discriminator_loss(self, run: EpochRun, real: torch.Tensor, fake: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        critic = run.state.model["discriminator"]
        # The loss scale as a tensor (1 without AMP): get_scale() would read it to the host each step.
        scale = run.scaler.scale(torch.ones((), device=real.device))
        penalty = wgan_gp.gradient_penalty(critic, real, fake, scale=scale)
        loss, wasserstein = wgan_gp.critic_loss(critic(real), critic(fake), penalty,
                                                self.gan_settings(run.config).gp_weight)
        return loss, {"wasserstein": wasserstein, "gradient_penalty": penalty.detach()}

    def generator_loss(self, run: EpochRun, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return wgan_gp.generator_loss(run.state.model["discriminator"](fake))


DCGAN, CGAN, WGAN_GP = DCGANFamily(), CGANFamily(), WGANGPFamily()


def train_dcgan(config: dict[str, Any]) -> None:
    """One DCGAN trial: what Ray Tune runs."""
    run_trial(DCGAN, config)


def train_cgan(config: dict[str, Any]) -> None:
    """One conditional-GAN trial: what Ray Tune runs."""
    run_trial(CGAN, config)


def train_wgan_gp(config: dict[str, Any]) -> None:
    """One WGAN-GP trial: what Ray Tune runs."""
    run_trial(WGAN_GP, config)
