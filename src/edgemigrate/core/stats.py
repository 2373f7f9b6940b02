"""Confidence intervals, computed one way for every table and plot.

Results over seeds are summarised as mean +- the half-width of a two-sided 95 % Student-t interval: few seeds
(5-20) make the normal 1.96 too narrow. One sample has no spread, so its half-width is 0 and tables print the
mean alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def t95(n: int) -> float:
    """Two-sided 95 % Student-t quantile for ``n`` samples (``n - 1`` degrees of freedom, at least 1)."""
    from scipy.stats import t

    return float(t.ppf(0.975, max(n - 1, 1)))


def ci95(values: Sequence[float] | NDArray[np.float64]) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values``; 0.0 for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return 0.0
    return float(t95(len(v)) * v.std(ddof=1) / np.sqrt(len(v)))


def mean_ci95(values: Sequence[float] | NDArray[np.float64]) -> tuple[float, float]:
    """``(mean, ci95 half-width)`` of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), ci95(v)
