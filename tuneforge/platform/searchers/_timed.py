"""A Tune SearchAlgorithm that keeps count of the time its suggestions take."""

from __future__ import annotations

import time
from typing import Any

from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

__all__ = ["TimedSearch"]


class TimedSearch(SearchAlgorithm):
    """Wraps a search algorithm (a ``Searcher`` is first wrapped as Tune would, in a
    ``SearchGenerator``) and delegates everything; ``seconds`` adds up the time spent in
    ``next_trial``, the suggestion, over ``n_suggestions`` trials."""

    def __init__(self, inner: SearchAlgorithm | Searcher) -> None:
        self.inner = SearchGenerator(inner) if isinstance(inner, Searcher) else inner
        self.seconds = 0.0
        self.n_suggestions = 0

    @property
    def seconds_per_suggestion(self) -> float:
        return self.seconds / self.n_suggestions if self.n_suggestions else 0.0

    def next_trial(self) -> Any:
        start = time.perf_counter()
        trial = self.inner.next_trial()
        self.seconds += time.perf_counter() - start
        self.n_suggestions += trial is not None
        return trial

    # Everything else is the wrapped algorithm's.
    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def total_samples(self) -> int:
        return self.inner.total_samples

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments: Any) -> None:
        self.inner.add_configurations(experiments)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self.inner.is_finished()

    def set_finished(self) -> None:
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def save_to_dir(self, dirpath: str, **kwargs: Any) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)
