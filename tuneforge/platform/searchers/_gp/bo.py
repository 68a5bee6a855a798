"""One step of Bayesian optimisation: observations in, the next point out.

Glossary (shapes in brackets)
    X_obs      evaluated points in the unit cube [n, d]
    y_obs      their values, larger is better [n]
    X_pending  points suggested but not yet evaluated [p, d]
    Z          standard normal quasi-random draws [S, p + 1] (scipy.stats.qmc), one row per
               joint sample of (pending points, candidate)

Pending points shape the acquisition, so that a batch of suggestions spreads out instead of
repeating one point. Expected improvement becomes q-EI (acquisition.py): the candidate's joint
samples with the pending points come from the posterior covariance, f_pending = mean_P + Z_P
L_P^T with L_P L_P^T = cov(P, P), and for candidates f_x = mean_x + Z_P A + Z_x sqrt(var_x -
sum A^2), A = L_P^-1 cov(P, x), the same draws Z for every candidate so that the values are
a smooth, deterministic function of x. UCB instead uses the kriging believer (Ginsbourger, Le
Riche & Carraro 2010): the GP is conditioned on the pending points as if their values were its
posterior mean, which lowers the variance, and with it the bound, around them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_triangular
from scipy.stats import qmc

from tuneforge.platform.searchers._gp.acquisition import log_ei, log_ei_grad, log_q_ei, ucb
from tuneforge.platform.searchers._gp.gp import GP, GPParams, cholesky, fit_gp
from tuneforge.platform.searchers._gp.optimize import Acquisition, maximise
from tuneforge.platform.searchers._gp.outputs import warp

__all__ = ["ACQUISITIONS", "propose"]

_N_ANCHORS = 5
_UCB_BETA = 4.0  # sqrt(beta) = 2 posterior standard deviations
_N_JOINT_SAMPLES = 256  # a power of two keeps the Sobol sequence balanced
_FINITE_DIFFERENCE = 1e-6  # step of q-EI's gradient, in unit-cube widths


def _log_ei(gp: GP, best: float) -> Acquisition:
    def values(X: np.ndarray) -> np.ndarray:
        mean, var = gp.predict(X)
        return log_ei(mean, var, best)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        mean, var, dmean, dvar = gp.predict_with_grad(x)
        return log_ei_grad(mean, var, dmean, dvar, best)

    return Acquisition(values, value_and_grad)


def _log_q_ei(gp: GP, best: float, X_pending: np.ndarray, rng: np.random.Generator) -> Acquisition:
    p = len(X_pending)
    mean_p, _ = gp.predict(X_pending)
    L_p = cholesky(gp.covariance(X_pending, X_pending))[0]
    Z = qmc.MultivariateNormalQMC(np.zeros(p + 1), seed=rng).random(_N_JOINT_SAMPLES)
    f_pending = mean_p + Z[:, :p] @ L_p.T

    def values(X: np.ndarray) -> np.ndarray:
        mean, var = gp.predict(X)
        A = solve_triangular(L_p, gp.covariance(X_pending, X), lower=True, check_finite=False)
        sd = np.sqrt(np.maximum(var - np.sum(A**2, axis=0), 1e-12))
        return log_q_ei(mean + Z[:, :p] @ A + Z[:, p:] * sd, f_pending, best)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        # Forward differences, all d of them in one vectorised call (stepping inwards at 1).
        steps = np.where(x + _FINITE_DIFFERENCE <= 1.0, _FINITE_DIFFERENCE, -_FINITE_DIFFERENCE)
        at = values(np.vstack([x, x + np.diag(steps)]))
        return float(at[0]), (at[1:] - at[0]) / steps

    return Acquisition(values, value_and_grad)


def _ucb(gp: GP) -> Acquisition:
    def values(X: np.ndarray) -> np.ndarray:
        return ucb(*gp.predict(X), _UCB_BETA)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        mean, var, dmean, dvar = gp.predict_with_grad(x)
        sigma = np.sqrt(var)
        return mean + np.sqrt(_UCB_BETA) * sigma, dmean + np.sqrt(_UCB_BETA) * dvar / (2 * sigma)

    return Acquisition(values, value_and_grad)


def _expected_improvement(gp: GP, best: float, X_pending: np.ndarray,
                          rng: np.random.Generator) -> Acquisition:
    return _log_q_ei(gp, best, X_pending, rng) if len(X_pending) else _log_ei(gp, best)


def _upper_confidence_bound(gp: GP, best: float, X_pending: np.ndarray,
                            rng: np.random.Generator) -> Acquisition:
    if len(X_pending):  # the kriging believer
        believed, _ = gp.predict(X_pending)
        gp = GP.condition(np.vstack([gp.X, X_pending]), np.concatenate([gp.y, believed]), gp.params)
    return _ucb(gp)


ACQUISITIONS: dict[str, Callable[[GP, float, np.ndarray, np.random.Generator], Acquisition]] = {
    "logei": _expected_improvement, "ucb": _upper_confidence_bound}
"""Acquisition name -> factory from the fitted GP, the incumbent (the best standardised
value), the pending points and a generator for any random draws."""


def propose(X_obs: np.ndarray, y_obs: np.ndarray, X_pending: np.ndarray, *,
            snap: Callable[[np.ndarray], np.ndarray], neighbours: Callable[[np.ndarray], np.ndarray],
            fixed: np.ndarray, rng: np.random.Generator, previous: GPParams | None = None,
            acquisition: str = "logei") -> tuple[np.ndarray, GPParams]:
    """The next point [d] to evaluate, and the fitted hyperparameters (to warm-start the next
    fit). ``snap``, ``neighbours`` and ``fixed`` describe the space's discrete coordinates
    (see optimize.py)."""
    assert X_obs.shape[0] == y_obs.shape[0] > 0, "propose needs at least one observation"
    z = warp(y_obs)
    gp = fit_gp(X_obs, z, rng=rng, previous=previous)
    anchors = X_obs[np.argsort(-z)[:_N_ANCHORS]]
    x = maximise(ACQUISITIONS[acquisition](gp, float(np.max(z)), X_pending, rng), d=X_obs.shape[1],
                 snap=snap, neighbours=neighbours, fixed=fixed, anchors=anchors,
                 avoid=np.vstack([X_obs, X_pending]), rng=rng)
    return x, gp.params
