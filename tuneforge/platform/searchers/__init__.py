"""Search algorithms, by the name ``--algo`` takes.

Each entry turns a space and a budget into a :class:`SearchSetup`: what ``tune.Tuner``
needs to run that algorithm. The planner checks it before Ray starts; the runner builds its
search algorithm once, when the search's concurrency is known (a data-parallel search's
depends on the cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import (
    CategoricalParam,
    SearchSpace,
    grid_size,
    n_values,
    to_grid,
    to_tune_domains,
)

__all__ = ["ALGORITHMS", "Budget", "SearchSetup", "check_algorithm", "optuna_search", "setup_search"]

_DEFAULT_RANDOM_TRIALS = 20
# Beyond this a grid is almost surely a mistake (a forgotten `grid:` or --grid-points).
_MAX_GRID_TRIALS = 10_000
# Optuna's GPSampler lists every value of an int or stepped float param at each suggestion
# (optuna/_gp/search_space.py, get_choices_of_discrete_params): 10^7 values cost ~150 MB and
# a second a suggestion; an int param over [0, 2**53] cannot be allocated at all.
_MAX_OPTUNA_GP_VALUES = 10_000_000


@dataclass(frozen=True)
class Budget:
    """What every algorithm is given besides the space."""

    trials: int | None
    """None: the algorithm's default."""
    seed: int
    grid_points: int
    step_metric: str = "training_iteration"
    """The result key counting a trial's steps (a torch family's ``epoch``), for searchers that
    read learning curves."""


@dataclass(frozen=True)
class SearchSetup:
    """The algorithm-specific part of a ``tune.Tuner``."""

    param_space: dict[str, Any]
    """The searched params as Ray Tune domains (fixed config is added by the runner)."""
    num_samples: int
    n_trials: int
    """How many trials the search will run."""
    make_search_alg: Callable[[int | None], Any] = field(repr=False)
    """Builds the ``ray.tune.search`` algorithm, which itself keeps to the ``max_concurrent``
    it is given (None: as many trials at once as the cluster's resources allow). Called once
    per search; the space was checked and converted when the setup was made."""


def _grid(space: SearchSpace, budget: Budget) -> SearchSetup:
    """Every combination of :func:`to_grid`'s values, repeated ``trials`` times (default 1):
    a 3 x 4 grid with ``--trials 2`` runs 24 trials."""
    from ray import tune

    trials, grid_points = budget.trials, budget.grid_points

    repeats = trials or 1
    n_trials = grid_size(space, grid_points) * repeats
    if n_trials > _MAX_GRID_TRIALS:
        raise ConfigError(f"{space.source or space.name}: the grid has {n_trials} trials (more than "
                          f"{_MAX_GRID_TRIALS}); lower --grid-points or give params an explicit `grid:`")
    values = to_grid(space, grid_points)
    return SearchSetup({name: tune.grid_search(v) for name, v in values.items()}, repeats, n_trials,
                       _variants())


def _random(space: SearchSpace, budget: Budget) -> SearchSetup:
    """``trials`` (default 20) independent uniform draws from the space, seeded."""
    # (The model-based algorithms below default to the same budget.)
    n_trials = budget.trials or _DEFAULT_RANDOM_TRIALS
    return SearchSetup(to_tune_domains(space), n_trials, n_trials,
                       _variants(random_state=budget.seed))


def _variants(**settings: Any) -> Callable[[int | None], Any]:
    """Builds Tune's BasicVariantGenerator with ``settings``, kept to ``max_concurrent`` trials
    at once."""
    from ray.tune.search import BasicVariantGenerator

    return lambda max_concurrent: BasicVariantGenerator(max_concurrent=max_concurrent or 0, **settings)


def _limited(make_searcher: Callable[[], Any]) -> Callable[[int | None], Any]:
    """Builds a ``Searcher``, kept to ``max_concurrent`` trials at once (Tune's ConcurrencyLimiter)."""
    from ray.tune.search import ConcurrencyLimiter

    def make(max_concurrent: int | None) -> Any:
        searcher = make_searcher()
        return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher

    return make


def _bayes(space: SearchSpace, budget: Budget) -> SearchSetup:
    """tuneforge's Gaussian-process Bayesian optimiser (:class:`GPSearcher`), ``trials`` long."""
    from tuneforge.platform.searchers.gp_searcher import GPSearcher

    n_trials = budget.trials or _DEFAULT_RANDOM_TRIALS
    return SearchSetup({}, n_trials, n_trials, _limited(lambda: GPSearcher(
        space, metric=space.metric, mode=space.mode, seed=budget.seed, step_metric=budget.step_metric)))


def optuna_search(space: SearchSpace, budget: Budget, sampler: Any) -> SearchSetup:
    """An Optuna ``sampler`` (any ``optuna.samplers.BaseSampler``) through Ray Tune's
    OptunaSearch on ``space``, ``trials`` long: how ``optuna-tpe`` and ``optuna-gp`` are built,
    and how a benchmark drives samplers tuneforge does not list (BoTorch's)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from tuneforge.search_spaces import to_optuna_distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = budget.trials or _DEFAULT_RANDOM_TRIALS
    distributions = to_optuna_distributions(space)
    return SearchSetup({}, n_trials, n_trials, _limited(lambda: OptunaSearch(
        space=distributions, metric=space.metric, mode=space.mode, sampler=sampler)))


def _optuna(sampler: str) -> Callable[[SearchSpace, Budget], SearchSetup]:
    """One of Optuna's samplers by its class name, seeded with the budget's seed."""

    def setup(space: SearchSpace, budget: Budget) -> SearchSetup:
        if sampler == "GPSampler":
            _check_discrete_sizes(space)
        import optuna

        return optuna_search(space, budget, getattr(optuna.samplers, sampler)(seed=budget.seed))

    setup.__doc__ = f"Optuna's {sampler} through Ray Tune's OptunaSearch, ``trials`` long."
    return setup


def _check_discrete_sizes(space: SearchSpace) -> None:
    """ConfigError for a param with more values than Optuna's GPSampler can list."""
    for param in space.params:
        step = None if isinstance(param, CategoricalParam) else param.step
        n = 0 if step is None else n_values(param.low, param.high, step)
        if n > _MAX_OPTUNA_GP_VALUES:
            raise ConfigError(f"--algo optuna-gp: params.{param.name} has {n} values; Optuna's GP sampler "
                              f"lists every one (at most {_MAX_OPTUNA_GP_VALUES}); use bayes or optuna-tpe, "
                              "or a larger step")


ALGORITHMS: dict[str, Callable[[SearchSpace, Budget], SearchSetup]] = {
    "grid": _grid,
    "random": _random,
    "bayes": _bayes,
    "optuna-tpe": _optuna("TPESampler"),
    "optuna-gp": _optuna("GPSampler"),
}


def check_algorithm(algo: str, flag: str = "--algo") -> None:
    """ConfigError, listing the valid names, unless ``algo`` is one of :data:`ALGORITHMS`."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"{flag}: unknown algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}")


def setup_search(algo: str, space: SearchSpace, budget: Budget) -> SearchSetup:
    """The :class:`SearchSetup` of ``algo``; ConfigError listing the valid names otherwise."""
    check_algorithm(algo)
    return ALGORITHMS[algo](space, budget)
