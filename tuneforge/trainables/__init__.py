"""Trainables: one sub-package per model family, found by name in a lazy registry.

Importing this package imports no model code (and no torch): a family is imported the first
time :func:`get_trainable` asks for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from tuneforge.errors import ConfigError
from tuneforge.trainables._report import report

if TYPE_CHECKING:
    from tuneforge.trainables._base import Trainable

__all__ = ["TRAINABLES", "get_trainable", "report"]

TRAINABLES: dict[str, str] = {
    "sklearn": "tuneforge.trainables.sklearn:TRAINABLE",
    "benchmark": "tuneforge.trainables.benchmark:TRAINABLE",
}
"""Registry name -> ``module:attribute`` of its :class:`~tuneforge.trainables._base.Trainable`."""


def get_trainable(name: str) -> Trainable:
    """The trainable registered as ``name``; ConfigError listing the valid names otherwise."""
    if name not in TRAINABLES:
        raise ConfigError(f"trainable: unknown trainable {name!r}; valid: {', '.join(sorted(TRAINABLES))}")
    module, attribute = TRAINABLES[name].split(":")
    return getattr(import_module(module), attribute)
