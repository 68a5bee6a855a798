"""A trained torch model as an MLflow model folder (the PyTorch flavour), written in the trial.

The folder travels to the driver with the trial's last result and is logged as the run's
``model`` artifact, so ``mlflow.pytorch.load_model("runs:/<run_id>/model")`` loads it. The model
is saved as a ``torch.export`` program (MLflow's "pt2" format, its default): the graph and
weights in eval mode, with a dynamic batch dimension, so loading it needs torch and no tuneforge
code, and predicting needs no preprocessing: families export modules that take raw inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["save_model"]


def save_model(model: nn.Module, example: np.ndarray | tuple[np.ndarray, ...], folder: Path) -> None:
    """Write ``model`` (moved to the CPU, in eval mode) with a signature inferred from
    ``example`` and its output, and ``example`` as the input example, to ``folder``. A tuple
    ``example`` is a model of several tensors (a conditional generator's latents and labels),
    named ``input_0``, ``input_1``, ... in the signature."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    inputs = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        output = model(*(torch.from_numpy(array) for array in inputs)).numpy()
    schema = example if len(inputs) == 1 else {f"input_{i}": array for i, array in enumerate(inputs)}
    mlflow.pytorch.save_model(
        model, str(folder), signature=infer_signature(schema, output), input_example=example,
        serialization_format="pt2", pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"])
