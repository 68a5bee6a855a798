"""Image classification on the epoch loop: what the ViT (and any image classifier) shares.

A subclass of :class:`ImageClassification` names its model config and builds its network
(``network``); this class owns the data (``dataset`` in the config, see
:mod:`tuneforge.trainables.images`), the optimiser (AdamW, warm-up then cosine), cross-entropy
training, validation metrics, a confusion-matrix picture per epoch and the exported model, which
takes raw images (a float tensor (N, C, H, W) in [0, 1]) and returns class logits: the
normalisation lives inside it. ``max_shift`` (default 0: off) moves each training image by a
random whole number of pixels, up to that many on each axis: the translation augmentation that
keeps a ViT from memorising MNIST in a dozen epochs (its training loss falls to 0.004 while the
validation loss stops falling; BENCHMARKS.md). ``flip`` (default false) mirrors each training
image left to right with probability 1/2, for data whose classes keep under a mirror (clothes in
Fashion-MNIST; not digits).

Metrics every epoch: ``train_loss``, ``val_loss``, ``val_accuracy`` (with the loop's ``epoch``,
``epoch_s``, ``samples_per_s``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_bool, check_int
from tuneforge.trainables.images import ImageSplits, load_image_dataset, prepare_square_dataset
from tuneforge.trainables.torch.loop import (
    EpochRun,
    LossMean,
    TorchFamily,
    TrialState,
    batches,
    warmup_cosine,
)

__all__ = ["ImageClassification", "NormalisedClassifier", "as_float", "channel_stats", "predict",
           "random_flip", "random_shift"]

_SMOKE_TRAIN, _SMOKE_VAL = 2048, 256  # 16 steps an epoch at batch 128: enough to learn something
_EVAL_BATCH = 512
_N_EXAMPLE_IMAGES = 2


class NormalisedClassifier(nn.Module):
    """``network`` behind a per-channel standardisation: raw images (N, C, H, W) in [0, 1] in,
    logits out. Images of another (C, H, W) than it was trained on are refused with a
    ``ValueError`` that names both shapes."""

    def __init__(self, network: nn.Module, mean: torch.Tensor, std: torch.Tensor,
                 image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.network = network
        self.image_shape = tuple(int(size) for size in image_shape)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))  # (1, C, 1, 1)
        self.register_buffer("std", std.reshape(1, -1, 1, 1))

    @classmethod
    def for_images(cls, network: nn.Module, images: np.ndarray) -> NormalisedClassifier:
        """``network`` standardised by the channel statistics of uint8 ``images`` (N, C, H, W),
        taking images of their shape."""
        return cls(network, *channel_stats(images), image_shape=images.shape[1:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) in [0, 1] -> (N, K)
        if tuple(images.shape[1:]) != self.image_shape:
            channels, height, width = self.image_shape
            raise ValueError(f"this model takes images of shape (N, {channels}, {height}, {width}) "
                             f"with values in [0, 1]; got {tuple(images.shape)}")
        return self.network(self.standardise(images))

    def standardise(self, images: torch.Tensor) -> torch.Tensor:
        """What the network sees of raw images (N, C, H, W) in [0, 1]: per-channel z-scores."""
        return (images - self.mean) / self.std


def as_float(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.asarray(images)).to(device).float().div_(255.0)


def random_shift(images: torch.Tensor, max_shift: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image (N, C, H, W) moved by its own offset of -max_shift..max_shift whole pixels on
    each axis (drawn from ``rng``); the border it uncovers is 0, black in [0, 1] units."""
    if max_shift == 0:
        return images
    n, channels, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = (torch.from_numpy(rng.integers(0, 2 * max_shift + 1, size=n)).to(images.device)
              for _ in range(2))
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    samples = torch.arange(n, device=images.device)[:, None, None, None]
    return padded[samples, torch.arange(channels, device=images.device)[None, :, None, None], rows, cols]


def random_flip(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each image (N, C, H, W) mirrored left to right with probability 1/2 (drawn from ``rng``)."""
    mirrored = torch.from_numpy(rng.random(len(images)) < 0.5).to(images.device)
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


def channel_stats(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), as floats in [0, 1] units."""
    sample = np.asarray(images[: min(len(images), 10_000)], dtype=np.float32) / 255.0
    mean = sample.mean(axis=(0, 2, 3))
    std = np.maximum(sample.std(axis=(0, 2, 3)), 1e-3)
    return torch.from_numpy(mean), torch.from_numpy(std)


def predict(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Logits (N, K) of uint8 images (N, C, H, W), in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([model(as_float(images[idx], device)).float().cpu()
                          for idx in batches(len(images), _EVAL_BATCH)]).numpy()


class ImageClassification(TorchFamily):
    """The shared part of image classifiers; ``derived`` fields come from the dataset."""

    derived = ("image_size", "channels", "n_classes")
    extra_keys = ("dataset", "max_shift", "flip")

    @abstractmethod
    def network(self, model_config: Any) -> nn.Module:
        """The classifier on standardised images, from the model config."""

    def prepare(self, config: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        splits = prepare_square_dataset(config, base_dir, self.name)
        channels, side, _ = splits.image_shape
        config.update(image_size=side, channels=channels, n_classes=splits.n_classes)
        return config

    def check_config(self, config: Mapping[str, Any]) -> None:
        check_int("max_shift", config.get("max_shift", 0), minimum=0)
        check_bool("flip", config.get("flip", False))

    def default_config(self) -> dict[str, Any]:
        return {**super().default_config(), "max_shift": 0, "flip": False}

    def metrics(self) -> frozenset[str]:
        return frozenset({"train_loss", "val_loss", "val_accuracy"})

    def load_data(self, config: Mapping[str, Any], smoke: bool) -> ImageSplits:
        splits = load_image_dataset(config["dataset"])
        return splits.subset(_SMOKE_TRAIN, _SMOKE_VAL) if smoke else splits

    def build(self, run: EpochRun) -> TrialState:
        data, settings = run.data, run.settings
        model = NormalisedClassifier.for_images(self.network(run.model_config), data.train_images)
        model.to(run.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        steps_per_epoch = run.steps_per_epoch(len(data.train_labels))
        schedule = warmup_cosine(settings.n_warmup_epochs * steps_per_epoch,
                                  settings.n_epochs * steps_per_epoch)
        return TrialState(model=model, optimizers={"main": optimizer},
                          schedulers={"main": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)})

    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        data, model = run.data, run.state.model
        losses = LossMean()
        max_shift, flip = run.config.get("max_shift", 0), run.config.get("flip", False)
        # Drawn from the seed and the epoch, as run.shuffled is: a resumed trial sees the same images.
        shifts = np.random.default_rng([run.settings.seed, run.epoch, run.rank, 1])
        flips = np.random.default_rng([run.settings.seed, run.epoch, run.rank, 2])
        for idx in batches(len(data.train_labels), run.batch_size, run.shuffled(len(data.train_labels))):
            idx = np.sort(idx)  # sorted reads of a memory-mapped array are sequential
            images = random_shift(as_float(data.train_images[idx], run.device), max_shift, shifts)
            images = random_flip(images, flips) if flip else images
            labels = torch.from_numpy(np.asarray(data.train_labels[idx])).to(run.device)
            with run.autocast():
                loss = F.cross_entropy(model(images), labels)
            run.step(loss)
            losses.add(loss, len(idx))
        return {"train_loss": losses.value(), "n_samples": float(losses.total_weight)}

    def evaluate(self, run: EpochRun) -> dict[str, float]:
        data = run.data
        with run.autocast():
            logits = predict(run.state.model, data.val_images, run.device)
        labels = np.array(data.val_labels)  # a copy: the memory-mapped split is read-only
        loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
        run.evaluation = predicted = logits.argmax(1)
        return {"val_loss": float(loss), "val_accuracy": float(np.mean(predicted == labels))}

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:
        from tuneforge.trainables.torch.pictures import confusion_matrix_png

        data = run.data
        confusion_matrix_png(np.asarray(data.val_labels), run.evaluation, data.class_names,
                             folder / "confusion_matrix" / f"epoch-{run.epoch:04d}.png",
                             title=f"{self.name}, validation, epoch {run.epoch}")

    def export(self, run: EpochRun) -> tuple[nn.Module, np.ndarray]:
        example = np.asarray(run.data.val_images[:_N_EXAMPLE_IMAGES], dtype=np.float32) / 255.0
        return run.state.model, example

