"""Keeps count of the time a Tune search algorithm spends on its suggestions."""

from __future__ import annotations

import time
from typing import Any

from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

__all__ = ["TimedSearch"]


class TimedSearch:
    """Times ``next_trial``, the suggestion, of one search algorithm (a ``Searcher`` is first
    wrapped as Tune would, in a ``SearchGenerator``): ``seconds`` adds up over ``n_suggestions``.

    The timing is installed on that instance, not around it: ``algorithm`` keeps its type and
    is what Tune is given, because Tune's controller reads the type (and any ConcurrencyLimiter
    inside) to decide how many trials may wait for resources at once.
    """

    def __init__(self, algorithm: SearchAlgorithm | Searcher) -> None:
        self.algorithm = SearchGenerator(algorithm) if isinstance(algorithm, Searcher) else algorithm
        self.seconds = 0.0
        self.n_suggestions = 0
        self._untimed = self.algorithm.next_trial
        self.algorithm.next_trial = self._next_trial

    @property
    def seconds_per_suggestion(self) -> float:
        return self.seconds / self.n_suggestions if self.n_suggestions else 0.0

    def _next_trial(self) -> Any:
        start = time.perf_counter()
        trial = self._untimed()
        self.seconds += time.perf_counter() - start
        self.n_suggestions += trial is not None
        return trial
