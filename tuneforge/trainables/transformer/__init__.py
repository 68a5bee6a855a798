"""The seq2seq Transformer as a trainable: the model (:mod:`.model`), its data (:mod:`.data`), the
glue (:mod:`.trainable`) and the logged model (:mod:`.pyfunc`)."""

from __future__ import annotations

from tuneforge.trainables.torch.adapter import torch_trainable
from tuneforge.trainables.transformer.trainable import TRANSFORMER, train_transformer

__all__ = ["TRAINABLE", "train_transformer"]

TRAINABLE = torch_trainable(TRANSFORMER, train_transformer)
