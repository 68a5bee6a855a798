"""A trained torch model as an MLflow model folder (the PyTorch flavour), written in the trial.

The folder travels to the driver with the trial's last result and is logged as the run's
``model`` artifact, so ``mlflow.pytorch.load_model("runs:/<run_id>/model")`` loads it: the
module itself, in eval mode on the CPU, taking raw inputs (families export modules with their
preprocessing inside), ready for what a PyTorch user does next (``.eval()``, ``.to(device)``,
fine-tuning). It is saved in MLflow's "pickle" format (``torch.save`` of the module), so loading
it needs torch and tuneforge installed, as the Transformer's pyfunc does. (MLflow's "pt2" format,
a ``torch.export`` program, needs no tuneforge code but loads as a graph whose ``eval()`` and
``train()`` raise and whose shape guards fail with torch's internals in the message.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
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
    with _quiet("mlflow.pytorch"):  # its warning that pickles can run code: these are our own
        mlflow.pytorch.save_model(
            model, str(folder), signature=infer_signature(schema, output), input_example=example,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "tuneforge"])


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Within the block, the named logger shows errors only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
