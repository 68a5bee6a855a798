"""scikit-learn estimators as Ray Tune trainables, scored by cross-validation."""

from __future__ import annotations

from tuneforge.trainables._base import Trainable
from tuneforge.trainables.sklearn.trainable import (
                      check,
                      defaults,
                      final_model,
                      metrics,
                      prepare,
                      train_sklearn,
)

__all__ = ["TRAINABLE", "train_sklearn"]

TRAINABLE = Trainable(name="sklearn", function=train_sklearn, prepare=prepare, metrics=metrics,
                      final_model=final_model, check=check, defaults=defaults)
