"""Keeps count of the time a Tune search algorithm spends on its suggestions."""

from __future__ import annotations

import time
from typing import Any

from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

__all__ = ["TimedSearch"]


class TimedSearch:
    """Times ``next_trial``, the suggestion, of one search algorithm (a ``Searcher`` is first
    wrapped as Tune would, in a ``SearchGenerator``): ``seconds`` adds up over ``n_suggestions``.

    ``algorithm`` is that instance, given a subclass of its own class that times ``next_trial``,
    and is what Tune is given: it keeps its type, because Tune's controller reads the type (and
    any ConcurrencyLimiter inside) to decide how many trials may wait for resources at once, and
    nothing is added to its ``__dict__``, which Tune saves as the algorithm's state and restores
    onto the algorithm of a resumed search (``Tuner.restore``) but for the two counters.
    """

    def __init__(self, algorithm: SearchAlgorithm | Searcher) -> None:
        self.algorithm = SearchGenerator(algorithm) if isinstance(algorithm, Searcher) else algorithm
        self.algorithm.__class__ = _timed(type(self.algorithm))
        self.algorithm._suggest_seconds, self.algorithm._n_suggestions = 0.0, 0

    @property
    def seconds(self) -> float:
        return self.algorithm._suggest_seconds

    @property
    def n_suggestions(self) -> int:
        return self.algorithm._n_suggestions

    @property
    def seconds_per_suggestion(self) -> float:
        return self.seconds / self.n_suggestions if self.n_suggestions else 0.0


_TIMED: dict[type, type] = {}


def _timed(cls: type) -> type:
    """``cls`` with a timed ``next_trial`` (one subclass per class)."""
    if getattr(cls, "_is_timed", False):
        return cls
    if cls not in _TIMED:
        def next_trial(self: Any) -> Any:
            start = time.perf_counter()
            trial = cls.next_trial(self)
            self._suggest_seconds += time.perf_counter() - start
            self._n_suggestions += trial is not None
            return trial

        _TIMED[cls] = type(cls.__name__, (cls,), {"next_trial": next_trial, "_is_timed": True,
                                                  "__module__": cls.__module__})
    return _TIMED[cls]
