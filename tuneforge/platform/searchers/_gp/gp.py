"""Gaussian-process regression: fitting the kernel's hyperparameters, and the posterior.

Glossary (shapes in brackets)
    X        observed points in the unit cube [n, d]
    y        observed values, standardised (mean 0, variance 1) [n]
    theta    log hyperparameters [d + 2]: log ell (d of them), log s, log noise
    K        covariance of the observations, K = K_f(X, X) + noise * I   [n, n]
    L        its lower Cholesky factor, K = L L^T
    alpha    K^-1 y [n]
    mu, var  posterior mean and variance at query points [m]

The hyperparameters maximise the log marginal likelihood plus log priors (a MAP estimate;
Rasmussen & Williams 2006, eqs. 5.8-5.9):
    log p(y | X, theta) = -1/2 y^T alpha - sum_i log L_ii - n/2 log 2pi
    d/d theta_j = 1/2 tr((alpha alpha^T - K^-1) dK/d theta_j)
Priors (Hvarfner, Hellsten & Nardi 2024, "Vanilla Bayesian optimization performs great in high
dimensions", the defaults of BoTorch since 0.12) are log-normal densities over the
hyperparameters themselves: ell ~ LogNormal(sqrt2 + log(d)/2, 3), which scales the expected
length scale with the dimension; s ~ LogNormal(1, 1), whose mode is the standardised variance;
noise ~ LogNormal(-4, 1), on a continuous space only above its mode (7e-3) and flat below it,
down to NOISE_FLOOR. Over theta = log x such a density is N(theta; mu, sigma^2) exp(theta)^-1,
so the MAP estimate without data sits at the mode exp(mu - sigma^2) (ell = 0.4 in 4-d), not at
the median exp(mu) (ell = 8: a GP that flat sends expected improvement to the corners of the
cube).
The noise's prior is cut flat below its mode (issue 13, BENCHMARKS.md): the whole log-normal
charges ~39 nats for the floor and held a noiseless objective's noise near 7e-3 for the first
~30 evaluations, which stopped the search short of the optimum; Optuna's Gamma(1.1, 30), nearly
flat at both ends, let the noise rise to ~0.05 on Ackley's rugged plateau, where a GP that
smooth stops seeing the funnel. Flat below the mode keeps the log-normal's penalty on large
noise and lets the data alone take the noise to the floor. Its gradient is 0 at the mode, so
the cut is smooth. A space with discrete coordinates (an int, a step, a categorical) keeps the
whole log-normal, as before issue 13: there the cut let the GP interpolate the jumps between
lattice points, and on the mixed Levy-6 it measured 0.32 (Bayesmark regret at 40 evaluations,
10 seeds) against the whole prior's 0.17 and 0.23 (two runs that differ only in rounding).
L-BFGS-B (scipy) runs from the priors' modes and, the first time, from prior draws, or from
the previous fit; the best optimum wins.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize

from tuneforge.platform.searchers._gp.kernel import (
    matern52,
    matern52_and_dk_dr2,
    matern52_grad_x,
    scaled_sq_dist,
)

__all__ = ["GP", "NOISE_FLOOR", "GPParams", "fit_gp"]

logger = logging.getLogger(__name__)

_LOG_NOISE_PRIOR = (-4.0, 1.0)  # mu, sigma of the log-normal prior on the noise variance
_LOG_SIGNAL_PRIOR = (1.0, 1.0)
_LOG_ELL_PRIOR_STD = math.sqrt(3.0)
# Box for the optimiser, in log space: length scales 1e-3..1e3 of the unit cube, noise
# 1e-6..1 of the standardised variance (a floor keeps K well conditioned), signal 1e-2..1e2.
_LOG_ELL_BOUNDS = (math.log(1e-3), math.log(1e3))
_LOG_SIGNAL_BOUNDS = (math.log(1e-2), math.log(1e2))
NOISE_FLOOR = 1e-6
"""The smallest noise variance a fit may take (a noiseless objective's), of the standardised variance."""
_LOG_NOISE_BOUNDS = (math.log(NOISE_FLOOR), 0.0)
_N_RANDOM_RESTARTS = 2
_MAX_ITERATIONS = 200
_JITTERS = (0.0, 1e-8, 1e-6, 1e-4)  # tried in turn when a Cholesky factorisation fails


@dataclass(frozen=True)
class GPParams:
    """Kernel hyperparameters: length scales [d], signal variance, noise variance."""

    ell: np.ndarray
    signal: float
    noise: float

    def theta(self) -> np.ndarray:
        return np.concatenate([np.log(self.ell), [math.log(self.signal), math.log(self.noise)]])

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> GPParams:
        return cls(ell=np.exp(theta[:-2]), signal=float(np.exp(theta[-2])), noise=float(np.exp(theta[-1])))


def _prior(d: int) -> tuple[np.ndarray, np.ndarray]:
    """mu and sigma [d + 2] of the log-normal priors, in theta's order."""
    ell_mu = math.sqrt(2.0) + 0.5 * math.log(d)
    mu = np.concatenate([np.full(d, ell_mu), [_LOG_SIGNAL_PRIOR[0], _LOG_NOISE_PRIOR[0]]])
    sigma = np.concatenate([np.full(d, _LOG_ELL_PRIOR_STD), [_LOG_SIGNAL_PRIOR[1], _LOG_NOISE_PRIOR[1]]])
    return mu, sigma


def _log_prior_and_grad(theta: np.ndarray, discrete: bool) -> tuple[float, np.ndarray]:
    """The priors' log densities at exp(theta) (up to a constant), and their gradient in theta.
    Unless ``discrete``, the noise's is flat below its mode: evaluated at the mode there, where
    its gradient is 0."""
    mu, sigma = _prior(theta.size - 2)
    if not discrete:
        theta = np.append(theta[:-1], max(theta[-1], mu[-1] - sigma[-1] ** 2))
    z = (theta - mu) / sigma
    return float(np.sum(-0.5 * z**2 - theta)), -z / sigma - 1.0


def _cholesky(K: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """The Cholesky factor of K, with the smallest jitter that makes it work (or None)."""
    scale = float(np.mean(np.diag(K)))
    for jitter in _JITTERS:
        try:
            return cho_factor(K + jitter * scale * np.eye(len(K)), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
    return None


def _neg_log_posterior(theta: np.ndarray, X: np.ndarray, y: np.ndarray, D2: np.ndarray,
                       discrete: bool = False) -> tuple[float, np.ndarray]:
    """-(log marginal likelihood + log prior) and its gradient in theta [d + 2].

    D2 [n, n, d] holds the squared coordinate differences of X, reused by every call;
    ``discrete`` as for ``fit_gp``.
    """
    params = GPParams.from_theta(theta)
    r2 = D2 @ (1.0 / params.ell**2)
    Kf, dK_dr2 = matern52_and_dk_dr2(r2, params.signal)
    factor = _cholesky(Kf + params.noise * np.eye(len(y)))
    if factor is None:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve(factor, y, check_finite=False)
    log_det_half = np.sum(np.log(np.diag(factor[0])))
    nll = 0.5 * y @ alpha + log_det_half + 0.5 * len(y) * math.log(2 * math.pi)
    W = np.outer(alpha, alpha) - cho_solve(factor, np.eye(len(y)), check_finite=False)
    # dK/d log ell_k = dK/d(r^2) * d(r^2)/d log ell_k = dK/d(r^2) * (-2 D2_k / ell_k^2)
    grad_ell = (W * dK_dr2).ravel() @ D2.reshape(-1, D2.shape[-1]) * (-2.0 / params.ell**2)
    grad = -0.5 * np.concatenate([grad_ell, [np.sum(W * Kf), params.noise * np.trace(W)]])
    log_prior, prior_grad = _log_prior_and_grad(theta, discrete)
    return float(nll - log_prior), grad - prior_grad


def _bounds(d: int) -> list[tuple[float, float]]:
    return [_LOG_ELL_BOUNDS] * d + [_LOG_SIGNAL_BOUNDS, _LOG_NOISE_BOUNDS]


def _starts(d: int, previous: GPParams | None, rng: np.random.Generator) -> list[np.ndarray]:
    mu, spread = _prior(d)
    centre = mu - spread**2  # the priors' modes
    if previous is not None and previous.ell.size == d:
        # The last fit is close to this one (one more point): it and the priors' modes suffice.
        # (From the last fit alone, a Branin and a Hartmann-6 seed of 10 stalled: BENCHMARKS.md.)
        starts = [previous.theta(), centre]
    else:
        starts = [centre] + [centre + spread * rng.standard_normal(d + 2) for _ in range(_N_RANDOM_RESTARTS)]
    low, high = np.array(_bounds(d)).T
    return [np.clip(start, low, high) for start in starts]


def fit_gp(X: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
           previous: GPParams | None = None, discrete: bool = False) -> GP:
    """The MAP-fitted GP of standardised values y [n] at X [n, d]. ``discrete``: some
    coordinates take only lattice values (ints, steps, one-hot categoricals), which keeps the
    noise's whole log-normal prior (see the module's docstring).

    Survives what the data allow: if every optimisation fails, it falls back to the priors'
    modes with one warning, so a suggestion is always possible.
    """
    assert X.ndim == 2 and y.shape == (X.shape[0],), f"X {X.shape}, y {y.shape}"
    d = X.shape[1]
    D2 = (X[:, None, :] - X[None, :, :]) ** 2
    best: tuple[float, np.ndarray] | None = None
    for start in _starts(d, previous, rng):
        result = minimize(_neg_log_posterior, start, args=(X, y, D2, discrete), jac=True, method="L-BFGS-B",
                          bounds=_bounds(d), options={"maxiter": _MAX_ITERATIONS})
        if np.isfinite(result.fun) and (best is None or result.fun < best[0]):
            best = (float(result.fun), result.x)
    if best is None or best[0] >= 1e10:
        logger.warning("GP fit failed on %d points; using the priors' modes", len(y))
        best = (math.inf, _starts(d, None, rng)[-_N_RANDOM_RESTARTS - 1])
    return GP.condition(X, y, GPParams.from_theta(best[1]))


@dataclass(frozen=True)
class GP:
    """A GP conditioned on (X, y) with fixed hyperparameters."""

    X: np.ndarray
    y: np.ndarray
    params: GPParams
    factor: tuple[np.ndarray, bool]
    alpha: np.ndarray
    K_inv: np.ndarray  # [n, n], for the gradients at a few points: a product, not a solve

    @classmethod
    def condition(cls, X: np.ndarray, y: np.ndarray, params: GPParams,
                  noise: np.ndarray | None = None) -> GP:
        """The posterior given (X, y), with ``params`` as they are (no fitting); ``noise`` [n]
        overrides the noise variance point by point."""
        noise = np.full(len(y), params.noise) if noise is None else noise
        K = matern52(scaled_sq_dist(X, X, params.ell), params.signal) + np.diag(noise)
        factor = _cholesky(K)
        assert factor is not None, "K is not positive definite even with jitter"
        return cls(X=X, y=y, params=params, factor=factor, alpha=cho_solve(factor, y, check_finite=False),
                   K_inv=cho_solve(factor, np.eye(len(y)), check_finite=False))

    def predict(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of f at Xq [m, d]; each [m]. Variance floored at 1e-12."""
        Kq = matern52(scaled_sq_dist(Xq, self.X, self.params.ell), self.params.signal)  # [m, n]
        mean = Kq @ self.alpha
        V = solve_triangular(self.factor[0], Kq.T, lower=True, check_finite=False)  # [n, m]
        var = self.params.signal - np.sum(V**2, axis=0)
        return mean, np.maximum(var, 1e-12)

    def predict_with_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean and variance [m] and their gradients [m, d] in x, at points x [m, d]:
        d mean/dx = dk^T alpha,  d var/dx = -2 dk^T K^-1 k."""
        k, dk = matern52_grad_x(x, self.X, self.params.ell, self.params.signal)  # [m, n], [m, n, d]
        Kinv_k = k @ self.K_inv  # K^-1 is symmetric
        var = self.params.signal - np.sum(k * Kinv_k, axis=1)
        return (k @ self.alpha, np.maximum(var, 1e-12), dk.transpose(0, 2, 1) @ self.alpha,
                -2.0 * np.einsum("mnd,mn->md", dk, Kinv_k))
