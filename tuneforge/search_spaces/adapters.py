"""One pure function per search algorithm, from our :class:`SearchSpace` to its format.

- :func:`to_grid` -> the values grid search tries for each param;
- :func:`to_tune_domains` -> Ray Tune sampling domains for random search;
- :func:`to_optuna_distributions` -> Optuna distributions (its samplers, its importance tools);
- :func:`from_tune_domains`, the other way: a plain Ray Tune param space -> our params.

(The unit cube, used by the Gaussian-process searcher, is ``SearchSpace.encode/decode``.)
Bounds are inclusive everywhere: Ray's exclusive ``randint`` upper bound is handled here.
A parameter type an adapter does not know raises ``ValueError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.search_spaces._params import CategoricalParam, FloatParam, IntParam, Param, n_values
from tuneforge.search_spaces.space import SearchSpace

__all__ = ["DEFAULT_GRID_POINTS", "from_tune_domains", "grid_size", "to_grid", "to_optuna_distributions",
           "to_tune_domains"]

DEFAULT_GRID_POINTS = 5
"""Values per numeric param in a grid search when the space gives no explicit ``grid:``."""
_MAX_GRID_POINTS = 10_000
"""More values for one param make a grid no search runs (grid search stops at 10,000 trials);
the values would be computed before that check."""

# A stepped float or int becomes a categorical Tune domain; beyond this many values the list
# itself would cost more than the search, and the step is better dropped (or made larger).
_MAX_STEPPED_VALUES = 100_000


def _dispatch(table: dict[type, Callable], param: Param, adapter: str) -> Callable:
    try:
        return table[type(param)]
    except KeyError:
        raise ValueError(f"{adapter}: unsupported parameter type {type(param).__name__} "
                         f"for {getattr(param, 'name', param)!r}") from None


# -- grid ------------------------------------------------------------------------------------


def _spaced(low: float, high: float, log: bool, n_points: int) -> np.ndarray:
    return np.geomspace(low, high, n_points) if log else np.linspace(low, high, n_points)


def _float_grid(param: FloatParam, n_points: int) -> list[float]:
    points = _spaced(param.low, param.high, param.log, n_points)
    if param.step is None:
        return [float(f"{x:.12g}") for x in points]
    encoded = [param.encode(float(x)) for x in points]
    return list(dict.fromkeys(param.decode(np.asarray(u)) for u in encoded))


def _int_grid(param: IntParam, n_points: int) -> list[int]:
    if n_values(param.low, param.high, param.step) <= n_points:
        return list(range(param.low, param.high + 1, param.step))
    points = _spaced(param.low, param.high, param.log, n_points)
    snapped = (param.low + round((x - param.low) / param.step) * param.step for x in points)
    return list(dict.fromkeys(int(min(max(v, param.low), param.high)) for v in snapped))


def _categorical_grid(param: CategoricalParam, n_points: int) -> list[Any]:
    return list(param.choices)


_GRID = {FloatParam: _float_grid, IntParam: _int_grid, CategoricalParam: _categorical_grid}


def to_grid(space: SearchSpace, n_points: int = DEFAULT_GRID_POINTS) -> dict[str, list[Any]]:
    """The values grid search tries for each param.

    Categoricals try every choice, a param with ``grid:`` exactly those values, and other
    numbers ``n_points`` values from low to high inclusive (log-spaced where ``log: true``;
    ints and stepped floats rounded to their step, so a short int range is enumerated).
    Example: ``{kernel: [rbf, linear], C: float log [0.1, 10]}`` with ``n_points=3`` gives
    ``C in [0.1, 1.0, 10.0]`` and a grid of 6 configs.
    """
    if not 2 <= n_points <= _MAX_GRID_POINTS:
        raise ConfigError(f"--grid-points: expected 2 to {_MAX_GRID_POINTS}, got {n_points}")
    return {
        param.name: list(param.grid) if getattr(param, "grid", None) else
        _dispatch(_GRID, param, "grid")(param, n_points)
        for param in space.params
    }


def grid_size(space: SearchSpace, n_points: int = DEFAULT_GRID_POINTS) -> int:
    """How many configs one pass over the grid makes."""
    return math.prod(len(values) for values in to_grid(space, n_points).values())


# -- Ray Tune domains ------------------------------------------------------------------------


def _n_stepped_values(param: FloatParam | IntParam) -> int:
    """How many values a stepped param's Tune domain lists; ConfigError past the limit."""
    n = n_values(param.low, param.high, param.step)
    if n > _MAX_STEPPED_VALUES:
        raise ConfigError(f"params.{param.name}: step {param.step:g} gives {n} values "
                          f"(more than {_MAX_STEPPED_VALUES}); use a larger step or none")
    return n


def _float_domain(param: FloatParam) -> Any:
    from ray import tune

    if param.step is not None:
        n = _n_stepped_values(param)
        return tune.choice([param.decode(np.array([(k + 0.5) / n])) for k in range(n)])
    return (tune.loguniform if param.log else tune.uniform)(param.low, param.high)


def _int_domain(param: IntParam) -> Any:
    from ray import tune

    if param.step != 1:
        _n_stepped_values(param)
        return tune.choice(list(range(param.low, param.high + 1, param.step)))
    # Ray's randint and lograndint exclude their upper bound; ours is inclusive.
    return (tune.lograndint if param.log else tune.randint)(param.low, param.high + 1)


def _categorical_domain(param: CategoricalParam) -> Any:
    from ray import tune

    return tune.choice(list(param.choices))


_TUNE = {FloatParam: _float_domain, IntParam: _int_domain, CategoricalParam: _categorical_domain}


def to_tune_domains(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune sampling domains (``tune.uniform``, ``tune.randint``...) for each param.

    Random search samples each uniformly over its values, in log space where ``log: true``.
    """
    return {param.name: _dispatch(_TUNE, param, "tune")(param) for param in space.params}


# -- Optuna distributions --------------------------------------------------------------------


def _float_distribution(param: FloatParam) -> Any:
    from optuna.distributions import FloatDistribution

    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def _int_distribution(param: IntParam) -> Any:
    from optuna.distributions import IntDistribution

    return IntDistribution(param.low, param.high, log=param.log, step=param.step)


def _categorical_distribution(param: CategoricalParam) -> Any:
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution(param.choices)


_OPTUNA = {FloatParam: _float_distribution, IntParam: _int_distribution,
           CategoricalParam: _categorical_distribution}


def to_optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions with the same bounds (inclusive in both), scales and steps."""
    return {param.name: _dispatch(_OPTUNA, param, "optuna")(param) for param in space.params}


# -- from Ray Tune domains (for searchers given a plain Tune param space) --------------------


def _from_float(name: str, domain: Any) -> Param:
    from ray.tune.search.sample import LogUniform, Quantized, Uniform

    sampler = domain.get_sampler()
    quantum = sampler.q if isinstance(sampler, Quantized) else None
    base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
    if isinstance(base, Uniform):
        if quantum is None:
            return FloatParam(name, float(domain.lower), float(domain.upper))
        low, high = math.ceil(domain.lower / quantum) * quantum, math.floor(domain.upper / quantum) * quantum
        return FloatParam(name, float(low), float(high), step=float(quantum))
    if isinstance(base, LogUniform) and quantum is None:
        return FloatParam(name, float(domain.lower), float(domain.upper), log=True)
    raise ValueError(f"{name}: unsupported Tune domain {domain!r} (use uniform, loguniform or quniform)")


def _from_integer(name: str, domain: Any) -> Param:
    from ray.tune.search.sample import LogUniform, Quantized, Uniform

    sampler = domain.get_sampler()
    quantum = int(sampler.q) if isinstance(sampler, Quantized) else 1
    base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
    if quantum == 1:  # Tune's randint and lograndint exclude their upper bound
        return IntParam(name, int(domain.lower), int(domain.upper) - 1, log=isinstance(base, LogUniform))
    if isinstance(base, Uniform):  # qrandint includes it, and draws multiples of q
        low, high = -(-int(domain.lower) // quantum) * quantum, int(domain.upper) // quantum * quantum
        return IntParam(name, low, high, step=quantum)
    raise ValueError(f"{name}: unsupported Tune domain {domain!r} (use randint, lograndint or qrandint)")


def from_tune_domains(config: Mapping[str, Any]) -> tuple[tuple[Param, ...], dict[str, Any]]:
    """The searched params of a Ray Tune param space, and its fixed values.

    Nested dicts are flattened with "/" (``{"opt": {"lr": ...}}`` -> param ``opt/lr``). Tune's
    uniform, loguniform, quniform, randint, lograndint, qrandint and choice map to our params
    with the same values (bounds made inclusive); anything else raises ValueError naming it.
    """
    from ray.tune.search.sample import Categorical, Domain, Float, Integer
    from ray.tune.utils.util import flatten_dict

    params, fixed = [], {}
    for name, value in flatten_dict(dict(config), delimiter="/").items():
        if isinstance(value, Float):
            params.append(_from_float(name, value))
        elif isinstance(value, Integer):
            params.append(_from_integer(name, value))
        elif isinstance(value, Categorical):
            params.append(CategoricalParam(name, tuple(value.categories)))
        elif isinstance(value, Domain) or (isinstance(value, Mapping) and "grid_search" in value):
            raise ValueError(f"{name}: unsupported Tune domain {value!r}")
        else:
            fixed[name] = value
    return tuple(params), fixed
