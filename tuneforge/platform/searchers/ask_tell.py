"""Driving a search algorithm without Ray trials: ask for configs, tell their results.

The algorithm is built by the registry exactly as the runner builds it and driven through
Tune's own ``SearchAlgorithm`` interface (the one the Tune loop calls), so what is measured
or tested here is what runs in a search. For benchmarks and tests of the searchers themselves,
where an objective takes microseconds and a Ray trial would take a hundred milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.platform.searchers import Budget, SearchSetup, setup_search
from tuneforge.search_spaces import DEFAULT_GRID_POINTS, SearchSpace

__all__ = ["AskTell"]

_TRAINABLE = "tuneforge_ask_tell"  # Tune wants a registered trainable name to build trials


class AskTell:
    """One search of ``algo`` on ``space``; ``ask`` and ``tell`` in any interleaving.

    ``seconds_asking`` adds up the time spent inside the algorithm's suggestions. ``setup``
    builds the algorithm instead of the registry's entry for ``algo`` (a benchmark's reference
    that tuneforge does not offer).
    """

    @property
    def seconds_asking(self) -> float:
        self._ready()
        return self._timer.seconds

    def __init__(self, algo: str, space: SearchSpace, *, seed: int, trials: int | None = None,
                 max_concurrent: int | None = None, grid_points: int = DEFAULT_GRID_POINTS,
                 setup: Callable[[SearchSpace, Budget], SearchSetup] | None = None) -> None:
        self.algo, self.space, self.seed = algo, space, seed
        self._build = setup or (lambda space, budget: setup_search(algo, space, budget))
        self.trials, self.max_concurrent, self.grid_points = trials, max_concurrent, grid_points
        self._timer: Any = None
        self._setup: Any = None

    @property
    def n_trials(self) -> int:
        return self._ready().n_trials

    def _ready(self) -> Any:
        if self._setup is None:
            from ray import tune

            from tuneforge.platform.searchers._timed import TimedSearch

            self._setup = self._build(self.space, Budget(trials=self.trials, seed=self.seed,
                                                         grid_points=self.grid_points))
            self._timer = TimedSearch(self._setup.make_search_alg(self.max_concurrent))
            config = {**self.space.config, **self._setup.param_space}
            tune.register_trainable(_TRAINABLE, lambda config: None)
            self._timer.algorithm.set_search_properties(self.space.metric, self.space.mode, config)
            self._timer.algorithm.add_configurations({"ask_tell": {
                "run": _TRAINABLE, "config": config, "num_samples": self._setup.num_samples}})
        return self._setup

    @property
    def algorithm(self) -> Any:
        """Tune's SearchAlgorithm being driven (for save_to_dir / restore_from_dir)."""
        self._ready()
        return self._timer.algorithm

    def ask(self) -> tuple[str, dict[str, Any]]:
        """The next trial's id and full config; raises RuntimeError when the algorithm has none."""
        self._ready()
        trial = self._timer.algorithm.next_trial()
        if trial is None:
            raise RuntimeError(f"{self.algo} has no suggestion (budget spent, or waiting on results)")
        return trial.trial_id, trial.config

    def tell(self, trial_id: str, value: float | None = None, *, error: bool = False) -> None:
        """The result of a trial: its metric ``value`` (NaN allowed), or ``error=True``."""
        result = None if error or value is None else {self.space.metric: value}
        self._timer.algorithm.on_trial_complete(trial_id, result=result, error=error or value is None)

    def values(self, config: dict[str, Any]) -> dict[str, Any]:
        """The searched values of a trial's config."""
        return {name: config[name] for name in self.space.param_names}
