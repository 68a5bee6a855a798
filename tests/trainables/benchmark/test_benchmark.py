from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import FloatParam, bundled_spaces, load_space
from tuneforge.trainables.benchmark import FUNCTIONS
from tuneforge.trainables.benchmark.trainable import prepare

# Known minimisers, from the same library as the definitions.
MINIMISERS = {
    "branin": [[-np.pi, 12.275], [np.pi, 2.275], [9.42478, 2.475]],
    "hartmann3": [[0.114614, 0.555649, 0.852547]],
    "hartmann6": [[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]],
    "ackley5": [[0.0] * 5],
    "rosenbrock4": [[1.0] * 4],
    "levy6": [[1.0] * 6],
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_minimum_is_reached_at_the_known_minimisers_and_nowhere_lower(name: str) -> None:
    function = FUNCTIONS[name]
    np.testing.assert_allclose(function.evaluate(np.array(MINIMISERS[name])), function.minimum, atol=1e-4)
    low, high = np.array(function.bounds).T
    samples = low + (high - low) * np.random.default_rng(0).random((20_000, function.dims))
    assert function.evaluate(samples).min() >= function.minimum


def test_every_bundled_benchmark_space_prepares_and_contains_its_minimiser() -> None:
    spaces = [load_space(n) for n in bundled_spaces() if load_space(n).trainable == "benchmark"]
    assert {s.config["function"] for s in spaces} == set(FUNCTIONS)
    for space in spaces:
        prepare(space)
        best = dict(zip(space.param_names, MINIMISERS[space.config["function"]][0], strict=True))
        values = {p.name: type(p.choices[0])(best[p.name]) if hasattr(p, "choices")
                  else (int(best[p.name]) if isinstance(p.low, int) else best[p.name]) for p in space.params}
        assert space.contains(values), (space.name, values)


def test_prepare_refuses_a_space_that_does_not_fit_the_function() -> None:
    space = load_space("branin")
    with pytest.raises(ConfigError, match="branin takes x1, x2; got x1, y"):
        prepare(dataclasses.replace(space, params=(space.params[0], FloatParam("y", 0.0, 1.0))))
    with pytest.raises(ConfigError, match=r"params.x2: outside branin's domain \[0.0, 15.0\]"):
        prepare(dataclasses.replace(space, params=(space.params[0], FloatParam("x2", 0.0, 20.0))))
    with pytest.raises(ConfigError, match="'sphere' is not a benchmark function; valid: branin"):
        prepare(dataclasses.replace(space, config={"function": "sphere"}))
