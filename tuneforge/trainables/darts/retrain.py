"""The space of ``tuneforge darts retrain``: a DARTS search's derived genotype beside random
genotypes of the same size, each trained from scratch as a ``darts-net`` trial with the same
seed, epochs, width and data (the paper's comparison, section 3.3).

The space is a grid over one categorical, ``genotype``, whose choices name the config's
``genotypes`` mapping (:func:`~.trainable.resolve_genotype`): :data:`DERIVED`, then
``random-1`` ... ``random-N``. The command that runs it, and reads the source run, is the
platform's (:mod:`tuneforge.platform.darts_retrain`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from tuneforge.search_spaces import SearchSpace, parse_space
from tuneforge.trainables.darts.genotypes import Genotype, random_genotype
from tuneforge.trainables.darts.trainable import DARTS_NET

__all__ = ["DERIVED", "retrain_space"]

DERIVED = "derived"
"""The source's genotype among the retrain's choices."""
_CARRIED_PARAMS = ("train_images", "val_images", "stem_stride")
"""The supernet trial's params a retrain keeps, where it had them: the same data, the same stem."""


def retrain_space(genotype: Mapping[str, Any], supernet_params: Mapping[str, str], *, source_run_id: str,
                  n_random: int, epochs: int, channels: int, layers: int, seed: int,
                  train_images: int | None = None) -> SearchSpace:
    """The grid space that trains ``genotype`` (a ``darts`` trial's ``genotype.json``) and
    ``n_random`` random genotypes of as many nodes, distinct from it and from each other (drawn
    from ``seed``), ``epochs`` epochs each at ``channels`` x ``layers``, with ``seed``.

    ``supernet_params`` are the source trial's run params as MLflow keeps them (text, mappings
    as JSON): its ``dataset`` and, where it had them, its images' caps and stem stride carry
    over; ``train_images`` replaces its cap. With ``n_random=2`` the grid is 3 trials:
    ``derived``, ``random-1``, ``random-2``. ConfigError for a genotype that is not one.
    """
    config = {"dataset": _param(supernet_params["dataset"]), "epochs": epochs, "channels": channels,
              "layers": layers, "seed": seed, "genotypes": _genotypes(genotype, n_random, seed)}
    for key in _CARRIED_PARAMS:
        value = _param(supernet_params.get(key))
        if value is not None:
            config[key] = value
    if train_images is not None:
        config["train_images"] = train_images
    document = {"description": f"DARTS retrain of run {source_run_id}: derived vs {n_random} random "
                               "genotypes, same budget",
                "trainable": DARTS_NET.name, "metric": "val_accuracy", "mode": "max", "config": config,
                "params": {"genotype": {"type": "categorical", "choices": list(config["genotypes"])}}}
    return parse_space(document, name=f"darts-retrain-{source_run_id[:8]}")


def _genotypes(genotype: Mapping[str, Any], n_random: int, seed: int) -> dict[str, Any]:
    """``{DERIVED: genotype, "random-1": ..., ...}``, each as its JSON shape."""
    derived = Genotype.from_dict(genotype)
    genotypes, rng = {DERIVED: derived.to_dict()}, np.random.default_rng(seed)
    while len(genotypes) < n_random + 1:  # distinct from the derived one and from each other
        candidate = random_genotype(rng, steps=derived.steps).to_dict()
        if candidate not in genotypes.values():
            genotypes[f"random-{len(genotypes)}"] = candidate
    return genotypes


def _param(text: str | None) -> Any:
    """A run param back as the value the trial had (MLflow keeps text; mappings as JSON)."""
    if text is None or text == "None":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
