"""Search algorithms, by the name ``--algo`` takes.

Each entry turns a space and a budget into a :class:`SearchSetup`: what ``tune.Tuner``
needs to run that algorithm. The planner checks it before Ray starts; the runner builds its
search algorithm once, when the search's concurrency is known (a data-parallel search's
depends on the cluster).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneforge._checks import did_you_mean
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import (
    CategoricalParam,
    SearchSpace,
    grid_size,
    n_values,
    to_grid,
    to_tune_domains,
)

__all__ = ["ALGORITHMS", "WARM_BEST", "Budget", "Evaluated", "SearchSetup", "check_algorithm",
           "optuna_search", "setup_search"]

_DEFAULT_RANDOM_TRIALS = 20
WARM_BEST = 3
"""Random search and grid search, warm-started, first run this many of the earlier trials' best."""
# Beyond this a grid is almost surely a mistake (a forgotten `grid:` or --grid-points).
_MAX_GRID_TRIALS = 10_000
# Optuna's GPSampler lists every value of an int or stepped float param at each suggestion
# (optuna/_gp/search_space.py, get_choices_of_discrete_params): 10^7 values cost ~150 MB and
# a second a suggestion; an int param over [0, 2**53] cannot be allocated at all.
_MAX_OPTUNA_GP_VALUES = 10_000_000


@dataclass(frozen=True)
class Evaluated:
    """A trial of an earlier search (a warm start): its searched values and score, and the step
    (``step_metric``) its score was reached at."""

    values: Mapping[str, Any]
    score: float
    step: float = 1.0


@dataclass(frozen=True)
class Budget:
    """What every algorithm is given besides the space."""

    trials: int | None
    """None: the algorithm's default, or no limit where ``unlimited``."""
    seed: int
    grid_points: int
    step_metric: str = "training_iteration"
    """The result key counting a trial's steps (a torch family's ``epoch``), for searchers that
    read learning curves."""
    start: tuple[Mapping[str, Any], ...] = ()
    """Points every algorithm evaluates first, in order (a value for each searched param); they
    count in ``trials`` (a grid runs them besides its cells)."""
    evaluated: tuple[Evaluated, ...] = ()
    """Earlier trials (a warm start): ``bayes`` and ``optuna-*`` condition on them without running
    them again; random and grid search run the best :data:`WARM_BEST` of them first."""
    unlimited: bool = False
    """Without ``trials``, run trials until something else ends the search (a time budget)."""
    evaluated_here: bool = False
    """``evaluated`` are this search's own finished trials (a resume whose saved state was lost):
    random and grid search do not run them again (a grid skips their cells)."""

    def first_points(self, mode: str, limit: int | None = None) -> list[dict[str, Any]]:
        """What random and grid search evaluate first: the starting points, then the best of the
        earlier trials that are not among them; at most ``limit``."""
        points = [dict(point) for point in self.start]
        sign = 1.0 if mode == "max" else -1.0
        for earlier in sorted(() if self.evaluated_here else self.evaluated, key=lambda e: -sign * e.score):
            if len(points) >= len(self.start) + WARM_BEST:
                break
            if dict(earlier.values) not in points:
                points.append(dict(earlier.values))
        return points[:limit]

    def n_trials(self, default: int) -> int | None:
        """The number of trials: ``trials``, else None where ``unlimited``, else ``default``."""
        return self.trials or (None if self.unlimited else default)


@dataclass(frozen=True)
class SearchSetup:
    """The algorithm-specific part of a ``tune.Tuner``."""

    param_space: dict[str, Any]
    """The searched params as Ray Tune domains (fixed config is added by the runner)."""
    num_samples: int
    """Tune's ``num_samples`` (-1: no limit)."""
    n_trials: int | None
    """How many trials the search will run; None: as many as its time budget allows."""
    make_search_alg: Callable[[int | None], Any] = field(repr=False)
    """Builds the ``ray.tune.search`` algorithm, which itself keeps to the ``max_concurrent``
    it is given (None: as many trials at once as the cluster's resources allow). Called once
    per search; the space was checked and converted when the setup was made."""


def _grid(space: SearchSpace, budget: Budget) -> SearchSetup:
    """Every combination of :func:`to_grid`'s values, repeated ``trials`` times (default 1):
    a 3 x 4 grid with ``--trials 2`` runs 24 trials; the budget's first points run before them,
    besides the grid."""
    from ray import tune

    trials, grid_points = budget.trials, budget.grid_points

    repeats = trials or 1
    n_cells = grid_size(space, grid_points) * repeats
    if n_cells > _MAX_GRID_TRIALS:
        raise ConfigError(f"{space.source or space.name}: the grid has {n_cells} trials (more than "
                          f"{_MAX_GRID_TRIALS}); lower --grid-points or give params an explicit `grid:`")
    values = to_grid(space, grid_points)
    first = budget.first_points(space.mode)
    done = [dict(earlier.values) for earlier in budget.evaluated] if budget.evaluated_here else []
    if not first and not done:
        return SearchSetup({name: tune.grid_search(v) for name, v in values.items()}, repeats, n_cells,
                           _variants())
    # Tune expands a grid again around each of its points_to_evaluate: with first points, every
    # cell is a point of its own, after them.
    cells = [dict(zip(values, cell, strict=True)) for cell in itertools.product(*values.values())] * repeats
    for cell in done:  # run once already
        if cell in cells:
            cells.remove(cell)
    points = first + cells
    return SearchSetup(to_tune_domains(space), len(points), len(points), _variants(points_to_evaluate=points))


def _random(space: SearchSpace, budget: Budget) -> SearchSetup:
    """``trials`` (default 20) independent uniform draws from the space, seeded, after the
    budget's first points."""
    # (The model-based algorithms below default to the same budget.)
    n_trials = budget.n_trials(_DEFAULT_RANDOM_TRIALS)
    return SearchSetup(to_tune_domains(space), _num_samples(n_trials), n_trials,
                       _variants(random_state=budget.seed,
                                 points_to_evaluate=budget.first_points(space.mode, n_trials)))


def _num_samples(n_trials: int | None) -> int:
    return -1 if n_trials is None else n_trials


def _variants(**settings: Any) -> Callable[[int | None], Any]:
    """Builds Tune's BasicVariantGenerator with ``settings``, kept to ``max_concurrent`` trials
    at once."""
    from ray.tune.search import BasicVariantGenerator

    return lambda max_concurrent: BasicVariantGenerator(max_concurrent=max_concurrent or 0, **settings)


def _limited(make_searcher: Callable[[], Any], budget: Budget) -> Callable[[int | None], Any]:
    """Builds a ``Searcher`` told the budget's earlier trials (Ray's ``add_evaluated_point``),
    kept to ``max_concurrent`` trials at once (Tune's ConcurrencyLimiter)."""
    from ray.tune.search import ConcurrencyLimiter

    def make(max_concurrent: int | None) -> Any:
        searcher = make_searcher()
        for earlier in budget.evaluated:
            _tell(searcher, earlier)
        return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher

    return make


def _tell(searcher: Any, earlier: Evaluated) -> None:
    from tuneforge.platform.searchers.gp_searcher import GPSearcher

    if isinstance(searcher, GPSearcher):
        searcher.add_evaluated_point(dict(earlier.values), earlier.score, step=earlier.step)
    else:
        searcher.add_evaluated_point(dict(earlier.values), earlier.score)


def _bayes(space: SearchSpace, budget: Budget) -> SearchSetup:
    """tuneforge's Gaussian-process Bayesian optimiser (:class:`GPSearcher`), ``trials`` long,
    from the budget's starting points, conditioned on its earlier trials."""
    from tuneforge.platform.searchers.gp_searcher import GPSearcher

    n_trials = budget.n_trials(_DEFAULT_RANDOM_TRIALS)
    start = [dict(point) for point in budget.start][:n_trials]
    return SearchSetup({}, _num_samples(n_trials), n_trials, _limited(lambda: GPSearcher(
        space, metric=space.metric, mode=space.mode, seed=budget.seed, step_metric=budget.step_metric,
        points_to_evaluate=start), budget))


def optuna_search(space: SearchSpace, budget: Budget, sampler: Any) -> SearchSetup:
    """An Optuna ``sampler`` (any ``optuna.samplers.BaseSampler``) through Ray Tune's
    OptunaSearch on ``space``, ``trials`` long: how ``optuna-tpe`` and ``optuna-gp`` are built,
    and how a benchmark drives samplers tuneforge does not list (BoTorch's)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from tuneforge.search_spaces import to_optuna_distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = budget.n_trials(_DEFAULT_RANDOM_TRIALS)
    distributions = to_optuna_distributions(space)
    start = [dict(point) for point in budget.start][:n_trials] or None  # Optuna's enqueue_trial
    return SearchSetup({}, _num_samples(n_trials), n_trials, _limited(lambda: OptunaSearch(
        space=distributions, metric=space.metric, mode=space.mode, sampler=sampler,
        points_to_evaluate=start), budget))


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
        raise ConfigError(f"{flag}: unknown algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}"
                          f"{did_you_mean(algo, ALGORITHMS)}")


def setup_search(algo: str, space: SearchSpace, budget: Budget) -> SearchSetup:
    """The :class:`SearchSetup` of ``algo``; ConfigError listing the valid names otherwise."""
    check_algorithm(algo)
    return ALGORITHMS[algo](space, budget)
