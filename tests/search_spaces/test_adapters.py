from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from ray.tune.search.variant_generator import generate_variants

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    grid_size,
    to_grid,
    to_tune_domains,
)


def _space(*params: object) -> SearchSpace:
    return SearchSpace(name="s", trainable="sklearn", metric="m", mode="max", params=tuple(params))


MIXED = _space(
    FloatParam("lr", 1e-4, 1e-1, log=True),
    FloatParam("dropout", 0.0, 0.5, step=0.1),
    IntParam("layers", 1, 3),
    IntParam("units", 16, 512, log=True),
    IntParam("batch", 8, 64, step=8),
    CategoricalParam("act", ("relu", "gelu", None)),
)


def test_grid_values_include_both_bounds_and_respect_scale_and_step() -> None:
    grid = to_grid(MIXED, n_points=4)
    assert grid["lr"] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert grid["dropout"] == [0.0, 0.2, 0.3, 0.5]  # 4 points on [0, 0.5] snapped to 0.1
    assert grid["layers"] == [1, 2, 3]  # a short int range is enumerated
    assert grid["units"][0] == 16 and grid["units"][-1] == 512 and len(grid["units"]) == 4
    assert all(v in range(8, 65, 8) for v in grid["batch"])
    assert grid["act"] == ["relu", "gelu", None]
    assert grid_size(MIXED, n_points=4) == 4 * 4 * 3 * 4 * 4 * 3


def test_explicit_grid_wins() -> None:
    space = _space(FloatParam("c", 0.1, 10.0, log=True, grid=(0.1, 10.0)), IntParam("k", 1, 9, grid=(2, 3)))
    assert to_grid(space) == {"c": [0.1, 10.0], "k": [2, 3]}
    assert grid_size(space) == 4


def test_grid_needs_two_points() -> None:
    with pytest.raises(ConfigError, match="--grid-points: expected 2 to 10000, got"):
        to_grid(MIXED, n_points=1)


def _samples(space: SearchSpace, n: int, seed: int) -> list[dict]:
    rng, domains = np.random.default_rng(seed), to_tune_domains(space)
    return [config for _ in range(n) for _, config in generate_variants(domains, random_state=rng)]


def test_tune_domains_sample_every_value_inside_inclusive_bounds() -> None:
    configs = _samples(MIXED, 600, seed=0)
    assert all(MIXED.contains(config) for config in configs)
    assert {c["layers"] for c in configs} == {1, 2, 3}  # randint's exclusive bound is handled
    assert {c["batch"] for c in configs} == set(range(8, 65, 8))
    assert {c["dropout"] for c in configs} == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    assert max(c["units"] for c in configs) > 400 and min(c["units"] for c in configs) < 20
    small_lr = sum(c["lr"] < 1e-3 for c in configs) / len(configs)
    assert 0.2 < small_lr < 0.47  # log-uniform: a third of the draws below 1e-3


def test_tune_domains_are_reproducible_with_a_seed() -> None:
    assert _samples(MIXED, 20, seed=7) == _samples(MIXED, 20, seed=7)
    assert _samples(MIXED, 20, seed=7) != _samples(MIXED, 20, seed=8)


@dataclass(frozen=True)
class OrdinalParam:
    """A kind of param the adapters do not know."""

    name: str
    grid = None


@pytest.mark.parametrize("adapter", [to_tune_domains, to_grid])
def test_unsupported_param_type_is_named(adapter) -> None:
    with pytest.raises(ValueError, match="unsupported parameter type OrdinalParam for 'size'"):
        adapter(_space(OrdinalParam("size")))


def test_optuna_distributions_keep_bounds_scales_and_steps() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from tuneforge.search_spaces import to_optuna_distributions

    assert to_optuna_distributions(MIXED) == {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "dropout": FloatDistribution(0.0, 0.5, step=0.1),
        "layers": IntDistribution(1, 3),
        "units": IntDistribution(16, 512, log=True),
        "batch": IntDistribution(8, 64, step=8),
        "act": CategoricalDistribution(("relu", "gelu", None)),
    }
