"""The ``vit`` trainable: a Vision Transformer (:mod:`.model`) classifying images on the epoch loop.

Config keys: ``dataset`` (see :mod:`tuneforge.trainables.images`), the model's
:class:`~.model.ViTConfig` fields (``patch_size``, ``width``, ``depth``, ``heads``, ``mlp_ratio``,
``dropout``; image size, channels and classes come from the dataset) and the loop's
:class:`~tuneforge.trainables.torch.loop.TrainSettings` (``epochs``, ``batch_size``, ``lr``,
``weight_decay``, ``warmup_epochs``, ``grad_clip``, ``seed``). Reports ``train_loss``,
``val_loss``, ``val_accuracy``, ``samples_per_s`` every epoch, with a confusion matrix of the
validation split; the last epoch carries the trained model (raw images in, logits out).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from torch import nn

from tuneforge.trainables.torch.classification import ImageClassification
from tuneforge.trainables.torch.loop import run_trial
from tuneforge.trainables.vit.model import VisionTransformer, ViTConfig

__all__ = ["VIT", "train_vit"]


class ViTFamily(ImageClassification):
    name = "vit"
    model_config = ViTConfig
    # Measured on MNIST (the first epoch's validation accuracy, patch 7): lr 3e-3 with half an
    # epoch of warm-up 0.906; lr 1e-3 with one epoch 0.30 on a 20k subset. ViTs start slowly.
    train_defaults = MappingProxyType({"lr": 3e-3, "warmup_epochs": 0.5})

    def network(self, model_config: ViTConfig) -> nn.Module:
        return VisionTransformer(model_config)


VIT = ViTFamily()


def train_vit(config: dict[str, Any]) -> None:
    """One ViT trial: what Ray Tune runs."""
    run_trial(VIT, config)
