"""Output warping: the observed values as the GP models them.

Glossary (shapes in brackets)
    y   observed values, larger is better [n]
    z   warped values [n]: scaled robustly (median, interquartile range), Yeo-Johnson
        transformed, then standardised

A GP assumes Gaussian outputs. Objectives such as losses, or Rosenbrock, have a long tail of
bad values that would otherwise set the kernel's scale and flatten the good region. A power
transform fitted by maximum likelihood (Yeo & Johnson 2000, via scipy.stats.yeojohnson) pulls
the tail in; it is monotone, so the best observation stays the best. HEBO (Cowen-Rivers et al.
2022, "HEBO: pushing the limits of sample-efficient hyper-parameter optimisation") warps
outputs this way; Optuna's GPSampler does not (it lists it as missing). The robust scaling
first keeps one huge outlier from squashing every other value together before the transform
sees them (and keeps the transform's powers from overflowing).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import yeojohnson

__all__ = ["warp"]

_MIN_POINTS = 3  # a power transform fitted to fewer points says nothing


def _standardise(y: np.ndarray) -> np.ndarray:
    std = float(np.std(y))
    return (y - np.mean(y)) / (std if std > 0 else 1.0)


def _robust_scale(y: np.ndarray) -> np.ndarray:
    low, median, high = np.percentile(y, [25, 50, 75])
    spread = high - low if high > low else float(np.ptp(y))
    return (y - median) / (spread if spread > 0 else 1.0)


def warp(y: np.ndarray) -> np.ndarray:
    """z [n] from y [n]: same order, mean 0, variance 1 (all zeros when y is constant)."""
    assert y.ndim == 1 and np.all(np.isfinite(y)), "warp expects finite values"
    z = _standardise(y)
    if len(y) >= _MIN_POINTS and np.ptp(z) > 0:
        with np.errstate(all="ignore"):
            transformed, _ = yeojohnson(_robust_scale(y))
        if np.all(np.isfinite(transformed)) and np.ptp(transformed) > 0:
            z = _standardise(transformed)
    return z
