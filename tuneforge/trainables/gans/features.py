"""The feature extractor of the GANs' sample-quality metrics: a small CNN classifier of the
dataset, trained once per dataset and seed on its training split and cached on the node.

Inception-v3 features (the published FID) need a download and describe ImageNet photographs; a
classifier of the dataset itself describes what matters in its images (which digit, which garment)
and costs seconds. Its penultimate layer (128 numbers an image) is what :mod:`.metrics` compares,
so its scores are "classifier-feature" FID and KID: comparable between trials and searches on the
same dataset and seed, never with published Inception FIDs.

The first trial on a node to ask trains it (on the CPU, seeded, about a minute for MNIST on one
core; a ``--smoke`` trial trains a cheaper one on a subset, cached apart), saves it with its test
accuracy next to the dataset's cached arrays (:func:`~tuneforge.trainables.images.derived_file`),
and every later trial loads that file. Training runs under its own RNG, so it changes nothing the
trial's seed decides.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge.trainables.images import ImageSplits, derived_file, node_lock

__all__ = ["FeatureClassifier", "TrainedClassifier", "accuracy", "feature_classifier", "train_classifier"]

_FORMAT = 2
"""Part of the cached file's name: bump it when the network or its training changes."""
_EPOCHS, _SMOKE_EPOCHS = 2, 2
_SMOKE_TRAIN = 4_000
_BATCH = 128
_LR = 2e-3


class FeatureClassifier(nn.Module):
    """Images (N, C, H, W) in [0, 1] to features (N, 128): three 3x3 convolutions (32, 64, 64
    channels; 2x max-pooling after the first two), average pooling to 4x4 and a 128-unit layer;
    :meth:`classify` adds the class logits (N, K).

    ``forward`` returns the features, as torchmetrics' FID and KID expect of a custom feature
    extractor (``num_features`` tells them the width)."""

    num_features = 128

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, self.num_features), nn.ReLU())
        self.out = nn.Linear(self.num_features, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images * 2 - 1)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self(images))


@dataclass(frozen=True)
class TrainedClassifier:
    """The classifier (eval mode, no gradients) and its accuracy on the dataset's test split."""

    network: FeatureClassifier
    test_accuracy: float


def feature_classifier(spec: str | Mapping[str, str], splits: ImageSplits, *, seed: int = 0,
                       smoke: bool = False) -> TrainedClassifier:
    """The dataset's classifier for ``seed``, on the CPU: the node's cached one, else trained
    now (one trial of the node trains, the others wait for its file)."""
    path = derived_file(spec, f"feature-classifier-v{_FORMAT}-seed{seed}{'-smoke' if smoke else ''}.pt")
    with node_lock(path):
        if not path.is_file():
            trained = train_classifier(splits, seed=seed, smoke=smoke)
            _save(trained, path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    network = FeatureClassifier(splits.image_shape[0], splits.n_classes)
    network.load_state_dict(saved["state"])
    return TrainedClassifier(_frozen(network), float(saved["test_accuracy"]))


def train_classifier(splits: ImageSplits, *, seed: int = 0, smoke: bool = False) -> TrainedClassifier:
    """Train a :class:`FeatureClassifier` on ``splits``' training images (Adam, cross-entropy;
    ``smoke``: two epochs on the first 4,000) and measure it on the test split. Runs under a forked
    RNG seeded with ``seed``: the caller's random state is untouched."""
    n_train = min(_SMOKE_TRAIN, len(splits.train_labels)) if smoke else len(splits.train_labels)
    epochs = _SMOKE_EPOCHS if smoke else _EPOCHS
    order_rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = FeatureClassifier(splits.image_shape[0], splits.n_classes)
        optimizer = torch.optim.Adam(network.parameters(), lr=_LR)
        steps = epochs * -(-n_train // _BATCH)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, _LR, total_steps=steps)
        network.train()
        for _ in range(epochs):
            order = order_rng.permutation(n_train)
            for start in range(0, n_train, _BATCH):
                idx = np.sort(order[start:start + _BATCH])
                loss = F.cross_entropy(network.classify(_floats(splits.train_images[idx])),
                                       torch.from_numpy(np.asarray(splits.train_labels[idx])))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    network = _frozen(network)
    return TrainedClassifier(network, accuracy(network, splits.test_images, splits.test_labels))


def accuracy(network: FeatureClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of uint8 ``images`` (N, C, H, W) that ``network`` classifies as ``labels``."""
    device = next(network.parameters()).device
    with torch.no_grad():
        predicted = torch.cat([network.classify(_floats(images[i:i + 1000]).to(device)).argmax(1).cpu()
                               for i in range(0, len(images), 1000)])
    return float((predicted.numpy() == np.asarray(labels)).mean())


def _floats(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)


def _frozen(network: FeatureClassifier) -> FeatureClassifier:
    network.eval()
    network.requires_grad_(False)
    return network


def _save(trained: TrainedClassifier, path: os.PathLike) -> None:
    """Write the classifier all at once: into a temporary file that is renamed into place."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix="staging-", suffix=".pt", dir=os.path.dirname(path))
    os.close(handle)
    try:
        torch.save({"state": trained.network.state_dict(), "test_accuracy": trained.test_accuracy}, staging)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
