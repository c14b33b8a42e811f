"""Aggregate scores the way rliable recommends: interquartile mean and percentile-bootstrap CIs.

Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (NeurIPS): report the IQM
(mean of the middle 50 % of runs) with a 95 % bootstrap interval rather than a mean over few seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats


def iqm(x: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` (rliable's definition)."""
    return stats.trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def bootstrap_ci(x: Sequence[float] | np.ndarray, statistic: Callable[..., float | np.ndarray] = np.mean,
                 confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` (called with ``axis``) over the samples ``x``.

    Fewer than two samples, or samples all alike, give the degenerate interval ``(s, s)``.
    """
    x = np.asarray(x, dtype=float)
    point = float(statistic(x, axis=0))
    if x.size < 2 or np.ptp(x) == 0:
        return point, point
    res = stats.bootstrap((x,), statistic, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci_t(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low and high of the Student-t interval over the first axis (independent estimates)."""
    samples = np.asarray(samples, dtype=float)
    m = samples.mean(0)
    if len(samples) < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + confidence / 2, len(samples) - 1) * samples.std(0, ddof=1) / np.sqrt(len(samples))
    return m, m - half, m + half


def paired_bootstrap_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                        statistic: Callable[[np.ndarray, np.ndarray], float | np.ndarray],
                        confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic(a, b, axis=-1)`` resampling *pairs* ``(a_i, b_i)``.

    For paired evaluations (the same episode seeds with and without a change): the interval of, e.g.,
    the mean difference is far tighter than two independent intervals would suggest. Degenerate
    samples (fewer than two pairs, or every pair alike) give ``(s, s)``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    point = float(statistic(a, b, axis=-1))
    if a.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return point, point
    res = stats.bootstrap((a, b), statistic, paired=True, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return point, point
    return low, high
