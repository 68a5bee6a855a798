"""Trainables: one sub-package per model family, found by name in a lazy registry.

Importing this package imports no model code (and no torch): a family is imported the first
time :func:`get_trainable` asks for it.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.errors import ConfigError
from tuneforge.trainables._session import report, restored_checkpoint

if TYPE_CHECKING:
    from tuneforge.trainables._base import Trainable

__all__ = ["TRAINABLES", "get_trainable", "report", "restored_checkpoint"]

TRAINABLES: dict[str, str] = {
    "sklearn": "tuneforge.trainables.sklearn:TRAINABLE",
    "benchmark": "tuneforge.trainables.benchmark:TRAINABLE",
    "vit": "tuneforge.trainables.vit:TRAINABLE",
    "transformer": "tuneforge.trainables.transformer:TRAINABLE",
    "dcgan": "tuneforge.trainables.gans:DCGAN_TRAINABLE",
    "cgan": "tuneforge.trainables.gans:CGAN_TRAINABLE",
    "wgan-gp": "tuneforge.trainables.gans:WGAN_GP_TRAINABLE",
    "darts": "tuneforge.trainables.darts:DARTS_TRAINABLE",
    "darts-net": "tuneforge.trainables.darts:DARTS_NET_TRAINABLE",
}
"""Registry name -> ``module:attribute`` of its :class:`~tuneforge.trainables._base.Trainable`."""


def get_trainable(name: str, base_dir: Path | None = None) -> Trainable:
    """The trainable registered as ``name``, or a user's function named ``module:function`` or
    ``file.py:function`` (relative to ``base_dir``, the space file's folder); ConfigError
    listing the valid names otherwise."""
    if ":" in name:
        from tuneforge.trainables.user import user_trainable

        return user_trainable(name, base_dir)
    if name not in TRAINABLES:
        raise ConfigError(f"trainable: unknown trainable {name!r}; valid: {', '.join(sorted(TRAINABLES))}, "
                          "or your own function as module:function or path/to/file.py:function")
    module, attribute = TRAINABLES[name].split(":")
    return getattr(import_module(module), attribute)
