"""What every PyTorch family shares: the epoch loop (:mod:`.loop`), image classification on it
(:mod:`.classification`), the model as MLflow holds it (:mod:`.export`) and pictures.

Importing this package imports torch; the registry in :mod:`tuneforge.trainables` imports it
only when a torch family is asked for.
"""

from __future__ import annotations

from tuneforge.trainables.torch.loop import EpochRun, TorchFamily, TrainSettings, TrialState, run_trial

__all__ = ["EpochRun", "TorchFamily", "TrainSettings", "TrialState", "run_trial"]
