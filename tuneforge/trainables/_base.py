"""The contract every trainable family meets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.search_spaces import SearchSpace

__all__ = ["Trainable"]


@dataclass(frozen=True)
class Trainable:
    """A model family as Ray Tune runs it.

    ``function`` is what Ray runs, once per trial, on the worker Ray placed the trial on:
        ``train_<model>(config: dict) -> None``. It reads only ``config``, calls
        ``tune.report(metrics, checkpoint=...)`` at least once, resumes from
        ``tune.get_checkpoint()`` when there is one, and uses the GPU when Ray assigned one.
        Files in a reported checkpoint become the trial's MLflow artifacts.
    ``prepare`` is called once by the runner, on the driver, before anything is created:
        it validates the space's fixed ``config`` and searched param names against the family
        (raising ConfigError with one clear message) and returns the fixed config every trial
        receives (defaults filled in, paths made absolute).
    ``metrics`` names what ``function`` reports for a prepared config, so that a search on a
        metric nobody reports fails before it starts.
    """

    name: str
    function: Callable[[dict[str, Any]], None]
    prepare: Callable[[SearchSpace], dict[str, Any]]
    metrics: Callable[[Mapping[str, Any]], frozenset[str]]
