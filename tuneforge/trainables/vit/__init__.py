"""The Vision Transformer as a trainable: the model (:mod:`.model`) and its glue (:mod:`.trainable`)."""

from __future__ import annotations

from tuneforge.trainables.torch.adapter import torch_trainable
from tuneforge.trainables.vit.trainable import VIT, train_vit

__all__ = ["TRAINABLE", "train_vit"]

TRAINABLE = torch_trainable(VIT, train_vit)
