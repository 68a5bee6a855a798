"""The contract every search algorithm meets, driven the way Tune drives it.

Each algorithm is built by the registry exactly as the runner builds it and driven through
Tune's SearchAlgorithm interface (:class:`AskTell`: ``next_trial``, ``on_trial_complete``,
``save_to_dir``/``restore_from_dir``), so grid and random (Tune's variant generator) and the
Searchers (GP, Optuna's) are held to the same contract. Adding an algorithm to
``ALGORITHMS`` adds it here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tuneforge.platform.searchers import ALGORITHMS
from tuneforge.platform.searchers.ask_tell import AskTell
from tuneforge.search_spaces import CategoricalParam, FloatParam, IntParam, SearchSpace

SPACE = SearchSpace(
    name="conformance", trainable="sklearn", metric="score", mode="max", config={"fixed": 7},
    params=(FloatParam("lr", 1e-4, 1.0, log=True), FloatParam("dropout", 0.0, 0.5, step=0.1),
            IntParam("layers", 1, 4), IntParam("units", 8, 512, log=True), IntParam("batch", 16, 64, step=16),
            CategoricalParam("act", ("relu", "tanh", None))))


def objective(values: dict) -> float:
    """Smooth, with its best inside the space: lr near 1e-2, dropout 0.2, 3 layers."""
    return (-(math.log10(values["lr"]) + 2) ** 2 - (values["dropout"] - 0.2) ** 2
            - (values["layers"] - 3) ** 2 - 0.1 * math.log2(values["units"] / 64) ** 2
            + (values["act"] == "tanh"))


class Driver(AskTell):
    """AskTell with this suite's space and objective."""

    def __init__(self, algo: str, seed: int = 0, trials: int = 30) -> None:
        super().__init__(algo, SPACE, seed=seed, trials=trials, grid_points=2)

    def suggest(self) -> tuple[str, dict]:
        return self.ask()

    def complete(self, trial_id: str, config: dict, *, error: bool = False,
                 value: float | None = None) -> None:
        self.tell(trial_id, None if error else objective(config) if value is None else value, error=error)

    def run(self, n: int) -> list[dict]:
        configs = []
        for _ in range(n):
            trial_id, config = self.suggest()
            self.complete(trial_id, config)
            configs.append(config)
        return configs


@pytest.fixture(params=sorted(ALGORITHMS))
def algo(request: pytest.FixtureRequest) -> str:
    return request.param


def _searched(config: dict) -> dict:
    return {name: config[name] for name in SPACE.param_names}


def test_suggestions_are_inside_the_space_with_native_types(algo: str) -> None:
    driver = Driver(algo)
    configs = driver.run(min(25, driver.n_trials))
    for config in configs:
        assert config["fixed"] == 7, "fixed config reaches the trial"
        values = _searched(config)
        assert SPACE.contains(values), values  # bounds, steps, int vs float, choices
        assert type(values["layers"]) is int and type(values["lr"]) is float


def test_log_scales_are_respected(algo: str) -> None:
    configs = Driver(algo).run(10)
    below = sum(c["lr"] < 1e-2 for c in configs)
    # Uniform on [1e-4, 1] would put about 1% of the draws below 1e-2; log-uniform about half.
    assert below >= 3, [c["lr"] for c in configs]


def test_the_same_seed_gives_the_same_suggestions(algo: str) -> None:
    first, again = Driver(algo, seed=3).run(15), Driver(algo, seed=3).run(15)
    assert [_searched(c) for c in first] == [_searched(c) for c in again]


def test_failed_and_nan_trials_do_not_stop_the_search(algo: str) -> None:
    driver = Driver(algo)
    for index in range(16):
        trial_id, config = driver.suggest()
        if index % 3 == 0:
            driver.complete(trial_id, config, error=True)
        elif index % 3 == 1:
            driver.complete(trial_id, config, value=math.nan)
        else:
            driver.complete(trial_id, config)
        assert SPACE.contains(_searched(config))


def test_save_then_restore_continues_from_the_same_state(algo: str, tmp_path: Path) -> None:
    original = Driver(algo, seed=5)
    original.run(12)
    original.algorithm.save_to_dir(str(tmp_path), session_str="conformance")
    expected = [_searched(c) for c in original.run(3)]
    restored = Driver(algo, seed=99)  # another seed: only the saved state can explain a match
    restored.algorithm.restore_from_dir(str(tmp_path))
    assert [_searched(c) for c in restored.run(3)] == expected


def test_pending_trials_get_distinct_suggestions(algo: str) -> None:
    driver = Driver(algo)
    driver.run(12)
    batch = [_searched(driver.suggest()[1]) for _ in range(4)]
    assert len({tuple(sorted((k, str(v)) for k, v in c.items())) for c in batch}) == 4, batch


MODEL_BASED = sorted(set(ALGORITHMS) - {"grid", "random"})
"""The algorithms that learn from their results (grid and random do not: they are not generated)."""


@pytest.mark.parametrize("algo", MODEL_BASED)
def test_model_based_algorithms_beat_their_start(algo: str) -> None:
    scores = [objective(c) for c in Driver(algo, seed=1).run(30)]
    assert max(scores[15:]) > max(scores[:10])
    assert np.isfinite(scores).all()
