"""The Matérn-5/2 kernel with one length scale per dimension (ARD).

Glossary (shapes in brackets)
    X1, X2   points in the unit cube, [n1, d] and [n2, d]
    ell      length scales, [d]
    s        signal variance, a scalar
    r        scaled distance, r^2 = sum_d ((x_d - x'_d) / ell_d)^2, [n1, n2]
    K        covariance, K = s * (1 + sqrt5 r + 5/3 r^2) * exp(-sqrt5 r)   (Rasmussen & Williams,
             *Gaussian Processes for Machine Learning*, 2006, eq. 4.17 with nu = 5/2)

Derivatives are written out where they are used (the marginal likelihood's gradient in
``gp.py``, the acquisition's gradient in x here), since both need the kernel's own
``dK/d(r^2) = -5/6 s (1 + sqrt5 r) exp(-sqrt5 r)``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["matern52", "matern52_and_dk_dr2", "matern52_grad_x", "scaled_sq_dist"]

_SQRT5 = np.sqrt(5.0)


def scaled_sq_dist(X1: np.ndarray, X2: np.ndarray, ell: np.ndarray) -> np.ndarray:
    """r^2 between every row of X1 [n1, d] and of X2 [n2, d]; returns [n1, n2]."""
    return cdist(X1 / ell, X2 / ell, "sqeuclidean")


def matern52(r2: np.ndarray, s: float) -> np.ndarray:
    """K from squared scaled distances r2 (any shape); same shape."""
    r = np.sqrt(np.maximum(r2, 0.0))
    return s * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * np.exp(-_SQRT5 * r)


def matern52_and_dk_dr2(r2: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """K and dK/d(r^2) = -5/6 s (1 + sqrt5 r) exp(-sqrt5 r) from r2 (any shape), one exp for
    both; dK/d(r^2) is finite at r = 0 (where the kernel is smooth), which is why it is taken in
    r^2 and not in r."""
    sqrt5_r = _SQRT5 * np.sqrt(np.maximum(r2, 0.0))
    decay = s * np.exp(-sqrt5_r)
    return (1.0 + sqrt5_r + (5.0 / 3.0) * r2) * decay, -(5.0 / 6.0) * (1.0 + sqrt5_r) * decay


def matern52_grad_x(x: np.ndarray, X: np.ndarray, ell: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """k(x, X) [m, n] and its gradient in x, d k(x_i, X_j) / dx_i = dK/d(r^2) * 2 (x_i - X_j) /
    ell^2, [m, n, d], for points x [m, d]."""
    diff = x[:, None, :] - X[None, :, :]
    k, dk_dr2 = matern52_and_dk_dr2(np.sum((diff / ell) ** 2, axis=2), s)
    return k, (2.0 * dk_dr2)[:, :, None] * diff / ell**2
