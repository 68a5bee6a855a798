"""A :class:`~.loop.TorchFamily` as the platform's :class:`~tuneforge.trainables._base.Trainable`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tuneforge._checks import check_bool, is_int
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import CategoricalParam, SearchSpace
from tuneforge.trainables._base import Trainable
from tuneforge.trainables.torch.loop import LOOP_METRICS, TorchFamily, split_config

__all__ = ["torch_trainable"]


def torch_trainable(family: TorchFamily, function: Callable[[dict[str, Any]], None]) -> Trainable:
    """The registry entry of ``family``, run by ``function`` (its ``train_<name>``)."""
    return Trainable(name=family.name, function=function,
                     prepare=lambda space: prepare(family, space),
                     metrics=lambda config: family.metrics() | LOOP_METRICS,
                     reuse_actors=family.reuse_actors, smoke=True, iterative=True,
                     data_parallel=family.data_parallel, compiles=family.compiles, step_metric="epoch",
                     search_artifacts=family.search_artifacts,
                     run_params=family.run_params,
                     defaults=lambda config: family.default_config())


def prepare(family: TorchFamily, space: SearchSpace) -> dict[str, Any]:
    """Check every key (fixed or searched) against the family, let the family check its own
    (the dataset), and build the model and settings at the space's centre and at every choice
    of each categorical, so that e.g. a patch size that does not divide the image fails here."""
    valid = family.config_keys()
    where = space.source or space.name
    for key in [*space.config, *space.param_names]:
        if key not in valid:
            raise ConfigError(f"{where}: {key!r} is not a setting of trainable {family.name!r}; "
                              f"valid: {', '.join(sorted(valid))}")
    config = family.prepare(dict(space.config), space.source.parent if space.source else None)
    for values in _probe_values(space):
        _check_config(family, {**config, **values}, where)
    return config


def _probe_values(space: SearchSpace) -> list[dict[str, Any]]:
    """The space's centre, then the centre with each categorical set to each of its choices."""
    centre = space.decode(np.full(space.n_dims, 0.5)) if space.params else {}
    moves = [{param.name: choice} for param in space.params if isinstance(param, CategoricalParam)
             for choice in param.choices]
    return [centre, *({**centre, **move} for move in moves)]


def _check_config(family: TorchFamily, config: Mapping[str, Any], where: Any) -> None:
    try:
        settings, _ = split_config(family, config)
    except TypeError as exc:  # a value of the wrong type reaching a dataclass
        raise ConfigError(f"{where}: {exc}") from None
    for name in ("epochs", "batch_size"):
        value = getattr(settings, name)
        if not is_int(value, minimum=1):
            raise ConfigError(f"{where}: {name}: expected a positive integer, got {value!r}")
    if not settings.lr > 0:
        raise ConfigError(f"{where}: lr: expected a positive learning rate, got {settings.lr!r}")
    try:
        check_bool("compile", settings.compile)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if settings.compile and not family.compiles:
        raise ConfigError(f"{where}: compile: trainable {family.name!r} steps its model's parts itself "
                          "(its architecture and weight steps), which torch.compile does not speed up; "
                          "set compile: false")
    family.check_config(config)

