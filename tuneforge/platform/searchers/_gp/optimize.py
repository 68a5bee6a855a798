"""Maximising an acquisition function over the unit cube [0, 1]^d.

Glossary (shapes in brackets)
    d          width of the encoding (a categorical takes one column per choice)
    snap       maps points [m, d] to the nearest valid encodings [m, d] (ints and steps
               rounded, categoricals one-hot): the space's encode(decode(x))
    neighbours maps a valid point [d] to the valid points one discrete move away [k, d]
               (an int one step, a categorical another choice)
    fixed      [d] bool: coordinates gradient steps leave alone (the one-hot columns)
    anchors    [k, d] points to search near: the best observations so far

A quasi-random sweep (a scrambled Sobol sequence, scipy.stats.qmc; Owen 1998) plus Gaussian
perturbations of the anchors, all snapped, is scored in one vectorised call; the best few
start one L-BFGS-B run (scipy) on all their free coordinates with the analytic gradient; the
refined points are snapped, then improved by a local search over discrete moves (what rounding
a relaxed optimum can miss; Optuna's ``optim_mixed`` does likewise). The winner is the best snapped point
not already evaluated or pending, so a mixed space never gets the same suggestion twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc

__all__ = ["Acquisition", "maximise"]

_N_SWEEP = 1024  # a power of two keeps the Sobol sequence balanced
_N_LOCAL_PER_ANCHOR = 128
_LOCAL_SCALES = (0.02, 0.1)  # std of the perturbations around anchors, in unit-cube widths
_N_STARTS = 8
_MAX_ITERATIONS = 50
_SAME_POINT = 1e-9
_MAX_LOCAL_MOVES = 20


@dataclass(frozen=True)
class Acquisition:
    """An acquisition function: vectorised values [m] at points [m, d], and values [m] with
    their gradients [m, d] at a few points [m, d]."""

    values: Callable[[np.ndarray], np.ndarray]
    value_and_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _candidates(d: int, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sweep = qmc.Sobol(d, scramble=True, seed=rng).random(_N_SWEEP)
    local = [anchor + scale * rng.standard_normal((_N_LOCAL_PER_ANCHOR // len(_LOCAL_SCALES), d))
             for anchor in anchors for scale in _LOCAL_SCALES]
    return _reflect(np.vstack([sweep, *local]))


def _reflect(X: np.ndarray) -> np.ndarray:
    """X folded back into [0, 1] at the faces: clipping would pile the perturbations of a point
    on a face onto that face, and the search would stay there."""
    folded = np.mod(X, 2.0)
    return np.where(folded > 1.0, 2.0 - folded, folded)


def _refine(acquisition: Acquisition, starts: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The starts [m, d] moved uphill together: one L-BFGS-B run over all their free
    coordinates on the sum of their values, whose gradient is each start's own (BoTorch's
    batched ``gen_candidates_scipy``): one vectorised call per step instead of m."""
    free = ~fixed
    if not free.any():
        return starts
    m = len(starts)

    def negative(x_free: np.ndarray) -> tuple[float, np.ndarray]:
        X = starts.copy()
        X[:, free] = x_free.reshape(m, -1)
        values, grads = acquisition.value_and_grad(X)
        return -float(np.sum(values)), -grads[:, free].ravel()

    result = minimize(negative, starts[:, free].ravel(), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, 1.0)] * (m * int(free.sum())), options={"maxiter": _MAX_ITERATIONS})
    refined = starts.copy()
    refined[:, free] = np.clip(result.x.reshape(m, -1), 0.0, 1.0)
    return refined


def _local_search(acquisition: Acquisition, x: np.ndarray,
                  neighbours: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Best-improvement hill climbing over discrete moves from x [d]."""
    value = float(acquisition.values(x[None])[0])
    for _ in range(_MAX_LOCAL_MOVES):
        around = neighbours(x)
        if not len(around):
            break
        values = acquisition.values(around)
        best = int(np.argmax(values))
        if values[best] <= value:
            break
        x, value = around[best], float(values[best])
    return x


def _is_new(x: np.ndarray, avoid: np.ndarray) -> bool:
    return avoid.size == 0 or bool(np.min(np.max(np.abs(avoid - x), axis=1)) > _SAME_POINT)


def maximise(acquisition: Acquisition, *, d: int, snap: Callable[[np.ndarray], np.ndarray],
             neighbours: Callable[[np.ndarray], np.ndarray], fixed: np.ndarray, anchors: np.ndarray,
             avoid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The snapped point [d] with the largest acquisition that is not in ``avoid`` [p, d];
    if every candidate was already evaluated, the best one anyway."""
    candidates = snap(_candidates(d, anchors, rng))
    values = acquisition.values(candidates)
    order = np.argsort(-values)
    starts = candidates[order[:_N_STARTS]]
    refined = snap(_refine(acquisition, starts, fixed))
    refined = np.array([_local_search(acquisition, x, neighbours) for x in refined])
    pool = np.vstack([refined, candidates])
    pool_values = np.concatenate([acquisition.values(refined), values])
    for index in np.argsort(-pool_values):
        if _is_new(pool[index], avoid):
            return pool[index]
    return pool[int(np.argmax(pool_values))]
