"""Acquisition functions, to be maximised: log expected improvement, and UCB.

Glossary (shapes in brackets)
    mu, var   posterior mean and variance at the candidates [m]; sigma = sqrt(var)
    best      the incumbent: the best (largest) standardised value observed so far
    z         (mu - best) / sigma [m]
    h(z)      phi(z) + z Phi(z), so that EI = sigma h(z) (Jones et al. 1998, eq. 15)

log EI = log h(z) + log sigma. Computed naively, h(z) underflows to 0 for z below about -38
and its log is -inf, which leaves an optimiser no slope to follow far from the incumbent.
``log_h`` follows Ament et al. 2023 ("Unexpected improvements to expected improvement for
Bayesian optimization", NeurIPS, eq. 9): for z > -1 the direct formula; below, the
rearrangement log h(z) = -z^2/2 - log(2pi)/2 + log(1 - exp(log(erfcx(-z/sqrt2) |z|) + log(pi/2)/2))
with the scaled complementary error function erfcx, which stays accurate for any z; and
-z^2/2 - log(2pi)/2 - 2 log|z| beyond -1/sqrt(eps), its asymptote.
Its derivative is d log h / dz = Phi(z) / h(z) = exp(log Phi(z) - log h(z)).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, log_ndtr, ndtr

__all__ = ["log_ei", "log_ei_grad", "log_h", "ucb"]

_C1 = 0.5 * math.log(2 * math.pi)
_C2 = 0.5 * math.log(math.pi / 2)
_ASYMPTOTIC_Z = -1.0 / math.sqrt(np.finfo(float).eps)


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    near_zero = x > -math.log(2)
    return np.where(near_zero, np.log(-np.expm1(np.where(near_zero, x, -1.0))),
                    np.log1p(-np.exp(np.where(near_zero, -1.0, x))))


def log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)), finite for every finite z."""
    z = np.asarray(z, dtype=float)
    # Each branch is evaluated on arguments inside its own domain, then the right one picked.
    above = np.maximum(z, -1.0)
    direct = np.log(np.exp(-0.5 * above**2) / math.sqrt(2 * math.pi) + above * ndtr(above))
    below = np.minimum(z, -1.0)
    middle = -0.5 * below**2 - _C1 + _log1mexp(
        np.minimum(np.log(erfcx(-below / math.sqrt(2)) * np.abs(below)) + _C2, -1e-300))
    tail = -0.5 * below**2 - _C1 - 2.0 * np.log(np.abs(below))
    return np.where(z > -1.0, direct, np.where(z > _ASYMPTOTIC_Z, middle, tail))


def log_ei(mu: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    """log EI at each candidate [m]."""
    sigma = np.sqrt(var)
    return log_h((mu - best) / sigma) + np.log(sigma)


def log_ei_grad(mu: np.ndarray, var: np.ndarray, dmu: np.ndarray, dvar: np.ndarray,
                best: float) -> tuple[np.ndarray, np.ndarray]:
    """log EI at points [m] and its gradient in x [m, d], from the posterior's gradients dmu,
    dvar [m, d]: d logEI = (Phi/h)(z) dz + dsigma / sigma, dz = (dmu - z dsigma) / sigma,
    dsigma = dvar/(2 sigma).
    """
    sigma = np.sqrt(var)
    z = (mu - best) / sigma
    log_h_z = log_h(z)
    ratio = np.exp(log_ndtr(z) - log_h_z)  # Phi(z) / h(z)
    dsigma = dvar / (2.0 * sigma[:, None])
    grad = (ratio[:, None] * (dmu - z[:, None] * dsigma) + dsigma) / sigma[:, None]
    return log_h_z + np.log(sigma), grad


def ucb(mu: np.ndarray, var: np.ndarray, beta: float) -> np.ndarray:
    """Upper confidence bound mu + sqrt(beta) sigma (Srinivas et al. 2010)."""
    return mu + math.sqrt(beta) * np.sqrt(var)
