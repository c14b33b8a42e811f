"""A/B verdicts: is B better than A, worse, non-inferior within a margin, or not detectably different?

The unit of a comparison is whatever the two sides hold several of: seeds (one score per seed,
for studies) or evaluation episodes (for two single runs; then the verdict speaks about these two
trained policies, not about the configs that made them). Higher scores are better.

Decision (``decide``), at level ``alpha`` (default 0.05):

- **better** / **worse**: Welch's two-sided t-test on the means rejects equality, in B's favour or
  against it. Under A/A the rate of either is alpha (calibrated in tests/test_stats_calibration.py).
- **non-inferior**: not better, not worse, and the one-sided Welch test rejects "B is worse than A by
  ``margin`` or more" (only with a margin > 0).
- **no detectable difference**: otherwise.

Alongside the verdict: the IQM difference with its percentile-bootstrap interval, the probability
of improvement P(B > A) (the Mann-Whitney U statistic over n_a n_b), the Mann-Whitney p-value as a
check that needs no normality, and the seeds (or episodes) per side the t-test needs to detect the
observed standardized effect with 80 % power (noncentral t).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from accord.errors import AccordError
from accord.eval import stats as st

BETTER, WORSE, NON_INFERIOR, NO_DIFFERENCE = "better", "worse", "non-inferior", "no detectable difference"
# Exit codes of `accord compare`, so a CI pipeline can gate on the verdict (2 is every usage error).
EXIT_CODES = {BETTER: 0, NON_INFERIOR: 0, NO_DIFFERENCE: 3, WORSE: 4}


class CompareError(AccordError):
    """The two sides cannot be compared (different tasks, too few samples, ...)."""


def decide(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05,
           margin: float = 0.0) -> tuple[str, float]:
    """The verdict for B against A and the two-sided Welch p-value; ``margin`` is absolute (score units)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # constant scores: the t statistic is undefined
        p = st.welch_p(a, b)
        if p < alpha:
            return (BETTER if b.mean() > a.mean() else WORSE), p
        ok = margin > 0 and st.welch_p(a, b, alternative="greater", shift=margin) < alpha
        return (NON_INFERIOR if ok else NO_DIFFERENCE), p
    verdicts, p = decide_batch(a[None], b[None], alpha, margin)
    return str(verdicts[0]), float(p[0])


def decide_batch(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, margin: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decide` for many comparisons at once: ``a`` [S, n_a], ``b`` [S, n_b] -> verdicts [S], p [S]."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with warnings.catch_warnings():  # near-identical samples: scipy warns about precision, result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(b, a, axis=-1, equal_var=False).pvalue
        p_ni = stats.ttest_ind(b + margin, a, axis=-1, equal_var=False, alternative="greater").pvalue
    up = b.mean(-1) > a.mean(-1)
    verdicts = np.full(p.shape, NO_DIFFERENCE, dtype=object)
    if margin > 0:
        verdicts[p_ni < alpha] = NON_INFERIOR
    verdicts[(p < alpha) & up] = BETTER
    verdicts[(p < alpha) & ~up] = WORSE
    return verdicts, p


@dataclass
class Verdict:
    verdict: str
    unit: str  # "seeds" or "episodes"
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    iqm_a: float
    iqm_b: float
    iqm_diff: float
    iqm_diff_ci: tuple[float, float]
    mean_diff_ci: tuple[float, float]
    p_welch: float
    p_mannwhitney: float
    prob_improvement: float
    effect_size: float
    n_needed: int | None  # per side, for 80 % power at the observed effect
    alpha: float
    margin: float
    a: dict[str, Any] = field(default_factory=dict)  # what each side was (names, task, metric)
    b: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}

    def summary(self) -> str:
        need = "more than 100000" if self.n_needed is None else str(self.n_needed)
        return (f"verdict: B is {self.verdict} than A" if self.verdict in (BETTER, WORSE) else
                f"verdict: {self.verdict}") + (
            f" (Welch p = {self.p_welch:.3g}, alpha {self.alpha}); IQM difference B - A {self.iqm_diff:+.3f} "
            f"[95% CI {self.iqm_diff_ci[0]:+.3f}, {self.iqm_diff_ci[1]:+.3f}]; P(B > A) = "
            f"{self.prob_improvement:.2f}; {need} {self.unit} per side would detect the observed effect "
            f"(d = {self.effect_size:.2f}) with 80% power")


def compare_scores(a: Sequence[float], b: Sequence[float], unit: str = "seeds", alpha: float = 0.05,
                   margin: float = 0.0, power: float = 0.8) -> Verdict:
    """The full verdict for two samples of scores (at least 2 each)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    for side, arr in (("A", a_arr), ("B", b_arr)):
        if arr.size < 2:
            raise CompareError(f"side {side} has {arr.size} {unit}; a comparison needs at least 2 per side "
                               "(train a study with --seeds, or evaluate on more episodes)")
        if not np.all(np.isfinite(arr)):
            raise CompareError(f"side {side} holds non-finite scores")
    verdict, p = decide(a_arr, b_arr, alpha, margin)
    d = st.cohens_d(a_arr, b_arr)
    diff, lo, hi = st.iqm_difference_ci(a_arr, b_arr)
    _, mlo, mhi = st.welch_diff_ci(a_arr, b_arr)
    return Verdict(verdict=verdict, unit=unit, n_a=int(a_arr.size), n_b=int(b_arr.size),
                   mean_a=float(a_arr.mean()), mean_b=float(b_arr.mean()), iqm_a=float(st.iqm(a_arr)),
                   iqm_b=float(st.iqm(b_arr)), iqm_diff=diff, iqm_diff_ci=(lo, hi), mean_diff_ci=(mlo, mhi),
                   p_welch=p, p_mannwhitney=st.mannwhitney_p(a_arr, b_arr),
                   prob_improvement=st.probability_of_improvement(a_arr, b_arr),
                   effect_size=d if np.isfinite(d) else float(np.sign(d) * 1e9),
                   n_needed=st.seeds_needed(d, power, alpha), alpha=alpha, margin=margin)
