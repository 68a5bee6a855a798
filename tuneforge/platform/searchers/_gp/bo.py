"""One step of Bayesian optimisation: observations in, the next point out.

Glossary (shapes in brackets)
    X_obs      evaluated points in the unit cube [n, d]
    y_obs      their values, larger is better [n]
    X_pending  points suggested but not yet evaluated [p, d]

Pending points get the kriging believer's fantasy (Ginsbourger, Le Riche & Carraro 2010):
the GP is conditioned on them as if their values were its posterior mean, with the fitted
hyperparameters kept, and exactly: without the observation noise, which would leave a
suggestion right next to a pending one some of the noise's worth. Their variance, and with it
the expected improvement near them, drops to nothing, so a batch of suggestions spreads out
instead of repeating one point. (q-EI over joint posterior samples of the candidate and the
pending points, Optuna's way, was measured too: no better with 4 trials at a time on Ackley-5,
Levy-6 and Hartmann-6, and slower; BENCHMARKS.md.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tuneforge.platform.searchers._gp.acquisition import log_ei, log_ei_grad, ucb
from tuneforge.platform.searchers._gp.gp import GP, GPParams, fit_gp
from tuneforge.platform.searchers._gp.optimize import Acquisition, maximise
from tuneforge.platform.searchers._gp.outputs import warp

__all__ = ["ACQUISITIONS", "propose"]

_N_ANCHORS = 5
_UCB_BETA = 4.0  # sqrt(beta) = 2 posterior standard deviations
_BELIEF_NOISE = 1e-6  # beliefs are exact (see the module's docstring)


def _log_ei(gp: GP, best: float) -> Acquisition:
    def values(X: np.ndarray) -> np.ndarray:
        mean, var = gp.predict(X)
        return log_ei(mean, var, best)

    def value_and_grad(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return log_ei_grad(*gp.predict_with_grad(X), best)

    return Acquisition(values, value_and_grad)


def _ucb(gp: GP, best: float) -> Acquisition:
    def values(X: np.ndarray) -> np.ndarray:
        return ucb(*gp.predict(X), _UCB_BETA)

    def value_and_grad(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var, dmean, dvar = gp.predict_with_grad(X)
        sigma = np.sqrt(var)
        return mean + np.sqrt(_UCB_BETA) * sigma, dmean + np.sqrt(_UCB_BETA) * dvar / (2 * sigma[:, None])

    return Acquisition(values, value_and_grad)


ACQUISITIONS: dict[str, Callable[[GP, float], Acquisition]] = {"logei": _log_ei, "ucb": _ucb}
"""Acquisition name -> factory from the fitted GP and the incumbent (standardised) value."""


def propose(X_obs: np.ndarray, y_obs: np.ndarray, X_pending: np.ndarray, *,
            snap: Callable[[np.ndarray], np.ndarray], neighbours: Callable[[np.ndarray], np.ndarray],
            fixed: np.ndarray, rng: np.random.Generator, previous: GPParams | None = None,
            acquisition: str = "logei", discrete: bool = False) -> tuple[np.ndarray, GPParams]:
    """The next point [d] to evaluate, and the fitted hyperparameters (to warm-start the next
    fit). ``snap``, ``neighbours`` and ``fixed`` describe the space's discrete coordinates
    (see optimize.py); ``discrete`` says whether it has any (see ``fit_gp``)."""
    assert X_obs.shape[0] == y_obs.shape[0] > 0, "propose needs at least one observation"
    z = warp(y_obs)
    gp = fit_gp(X_obs, z, rng=rng, previous=previous, discrete=discrete)
    incumbent = float(np.max(z))
    if len(X_pending):
        believed, _ = gp.predict(X_pending)
        noise = np.concatenate([np.full(len(z), gp.params.noise), np.full(len(believed), _BELIEF_NOISE)])
        gp = GP.condition(np.vstack([X_obs, X_pending]), np.concatenate([z, believed]), gp.params, noise)
        # The believed values count towards the incumbent too: otherwise a fantasy above it
        # keeps the expected improvement high right next to the pending point.
        incumbent = max(incumbent, float(np.max(believed)))
    anchors = X_obs[np.argsort(-z)[:_N_ANCHORS]]
    x = maximise(ACQUISITIONS[acquisition](gp, incumbent), d=X_obs.shape[1], snap=snap,
                 neighbours=neighbours, fixed=fixed, anchors=anchors,
                 avoid=np.vstack([X_obs, X_pending]), rng=rng)
    return x, gp.params
