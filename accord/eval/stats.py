"""Aggregate scores the way rliable recommends: interquartile mean and percentile-bootstrap CIs.

Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (NeurIPS): report the IQM
(mean of the middle 50 % of runs) with a 95 % bootstrap interval rather than a mean over few seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np
from scipy import special


def _stats() -> ModuleType:
    """scipy.stats, imported on first use: 0.33 s that a training run's evaluations (t intervals, from
    ``scipy.special``) skip."""
    from scipy import stats

    return stats


def iqm(x: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` (rliable's definition)."""
    return _stats().trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def bootstrap_ci(x: Sequence[float] | np.ndarray, statistic: Callable[..., float | np.ndarray] = np.mean,
                 confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` (called with ``axis``) over the samples ``x``.

    Fewer than two samples, or samples all alike, give the degenerate interval ``(s, s)``.
    """
    x = np.asarray(x, dtype=float)
    point = float(statistic(x, axis=0))
    if x.size < 2 or np.ptp(x) == 0:
        return point, point
    res = _stats().bootstrap((x,), statistic, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci_t(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low and high of the Student-t interval over the first axis (independent estimates)."""
    samples = np.asarray(samples, dtype=float)
    m = samples.mean(0)
    if len(samples) < 2:
        return m, m, m
    half = special.stdtrit(len(samples) - 1, 0.5 + confidence / 2) * samples.std(0, ddof=1) / np.sqrt(len(samples))
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
    res = _stats().bootstrap((a, b), statistic, paired=True, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return point, point
    return low, high


# -- one task, one sample: Student-t ----------------------------------------------------------------

def t_ci(x: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` with its two-sided Student-t interval (quantiles from ``scipy.special.stdtrit``,
    which ``scipy.stats.t.ppf`` calls).

    Fewer than two samples give the degenerate interval ``(m, m)``.
    """
    m, lo, hi = mean_ci_t(np.asarray(x, dtype=float).reshape(-1), confidence)
    return float(m), float(lo), float(hi)


# -- across seeds and tasks: IQM with stratified bootstrap --------------------------------------------

def iqm_stratified_ci(scores: Sequence[Sequence[float] | np.ndarray], confidence: float = 0.95,
                      resamples: int = 5_000, seed: int = 0) -> tuple[float, float, float]:
    """IQM of all runs of all tasks (``scores[t]``: one score per seed of task t) with a stratified
    percentile-bootstrap interval: ``scipy.stats.bootstrap`` resamples the seeds of each task
    independently, as rliable does, so every resample keeps each task's number of runs."""
    groups = [np.asarray(s, dtype=float) for s in scores]
    point = float(iqm(np.concatenate(groups)))
    if sum(g.size for g in groups) < 2 or all(g.size < 2 or np.ptp(g) == 0 for g in groups):
        return point, point, point

    # Tasks with one run cannot be resampled; they enter every resample unchanged.
    free = [g for g in groups if g.size >= 2]
    fixed = [g for g in groups if g.size < 2]
    const = np.concatenate(fixed) if fixed else np.empty(0)

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        pinned = np.broadcast_to(const, (*samples[0].shape[:-1], const.size))
        return _stats().trim_mean(np.concatenate([*samples, pinned], axis=-1), 0.25, axis=-1)

    res = _stats().bootstrap(tuple(free), statistic, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm_difference_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      confidence: float = 0.95, resamples: int = 5_000, seed: int = 0
                      ) -> tuple[float, float, float]:
    """IQM(b) - IQM(a) with a percentile-bootstrap interval; a and b resampled independently."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    point = float(iqm(b) - iqm(a))
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return point, point, point

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return _stats().trim_mean(y, 0.25, axis=axis) - _stats().trim_mean(x, 0.25, axis=axis)

    res = _stats().bootstrap((a, b), statistic, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


# -- two samples: tests, probability of improvement, power ---------------------------------------------

def probability_of_improvement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """P(B > A) + P(B = A) / 2 over all pairs: the Mann-Whitney U of b over a, divided by n_a n_b."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(_stats().mannwhitneyu(b, a).statistic / (a.size * b.size))


def mannwhitney_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (rank test, no normality assumed)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(_stats().mannwhitneyu(b, a, alternative="two-sided").pvalue)


def welch_p(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided", shift: float = 0.0) -> float:
    """Welch's t-test p-value for mean(b) + shift vs mean(a) (``alternative`` as in scipy: 'less' asks
    whether b + shift is below a). Identical constant samples give 1 (no evidence either way)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float) + shift
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        diff = b.mean() - a.mean()
        if diff == 0:
            return 1.0
        holds = {"two-sided": True, "less": diff < 0, "greater": diff > 0}[alternative]
        return 0.0 if holds else 1.0
    return float(_stats().ttest_ind(b, a, equal_var=False, alternative=alternative).pvalue)


def welch_diff_ci(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(b) - mean(a) with the Welch-Satterthwaite t interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(special.stdtrit(df, 0.5 + confidence / 2) * se)
    return d, d - half, d + half


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference (b - a) / pooled standard deviation."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    if pooled == 0:
        return 0.0 if a.mean() == b.mean() else float(np.sign(b.mean() - a.mean()) * np.inf)
    return float((b.mean() - a.mean()) / pooled)


def t_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test with n per group at standardized effect ``effect``
    (noncentral t, ``scipy.stats.nct``)."""
    if n < 2:
        return 0.0
    df = 2 * n - 2
    ncp = abs(effect) * np.sqrt(n / 2)
    crit = special.stdtrit(df, 1 - alpha / 2)
    return float(_stats().nct.sf(crit, df, ncp) + _stats().nct.cdf(-crit, df, ncp))


def seeds_needed(effect: float, power: float = 0.8, alpha: float = 0.05, limit: int = 100_000) -> int | None:
    """Smallest n per group at which the two-sided t-test reaches ``power`` for ``effect`` (None: no
    effect, or more than ``limit``)."""
    if not np.isfinite(effect):
        return 2
    if effect == 0:
        return None
    lo, hi = 2, 2
    while t_power(effect, hi, alpha) < power:
        if hi >= limit:
            return None
        lo, hi = hi, min(hi * 2, limit)
    while lo < hi:
        mid = (lo + hi) // 2
        if t_power(effect, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi
