"""Calibration of the A/B verdict and the baseline tracker on synthetic scores (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from accord.eval import stats as st
from accord.eval.compare import (
    BETTER,
    NO_DIFFERENCE,
    NON_INFERIOR,
    WORSE,
    CompareError,
    compare_scores,
    decide,
    decide_batch,
)

SIMS = 2000


def test_aa_comparisons_say_no_detectable_difference_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    verdicts, _ = decide_batch(rng.normal(0, 1, (SIMS, 10)), rng.normal(0, 1, (SIMS, 10)))
    false_positive = np.mean(verdicts != NO_DIFFERENCE)
    assert 0.03 <= false_positive <= 0.07, false_positive
    # Both directions err equally often.
    assert abs(np.sum(verdicts == BETTER) - np.sum(verdicts == WORSE)) < 0.03 * SIMS
    # Skewed, heavy-tailed scores (as returns across seeds often are) stay near the nominal rate too.
    verdicts, _ = decide_batch(rng.gamma(2.0, 1.0, (SIMS, 10)), rng.gamma(2.0, 1.0, (SIMS, 10)))
    assert 0.03 <= np.mean(verdicts != NO_DIFFERENCE) <= 0.07
    # The one-sample entry point agrees with the batch.
    a, b = rng.normal(0, 1, 10), rng.normal(0, 1, 10)
    assert decide(a, b)[0] == decide_batch(a[None], b[None])[0][0]


@pytest.mark.parametrize("effect,n", [(1.0, 10), (1.5, 5), (0.6, 30)])
def test_a_known_effect_is_detected_at_the_predicted_power(effect, n):
    rng = np.random.default_rng(1)
    predicted = st.t_power(effect, n)
    verdicts, _ = decide_batch(rng.normal(0, 1, (SIMS, n)), rng.normal(effect, 1, (SIMS, n)))
    detected = np.mean(verdicts == BETTER)
    assert abs(detected - predicted) <= 0.10, (detected, predicted)


def test_seeds_needed_reaches_the_asked_power():
    for d in (0.5, 1.0, 2.0):
        n = st.seeds_needed(d)
        assert st.t_power(d, n) >= 0.8 > st.t_power(d, n - 1)
    assert st.seeds_needed(1.0) == 17  # the textbook figure for d = 1, alpha 0.05, power 0.8
    assert st.seeds_needed(0.0) is None


def test_non_inferiority_within_a_margin():
    rng = np.random.default_rng(2)
    a = rng.normal(10, 0.5, 20)
    b = a + rng.normal(-0.05, 0.05, 20)  # a hair worse, not by the margin
    assert decide(a, b, margin=1.0)[0] == NON_INFERIOR
    assert decide(a, b, margin=0.0)[0] in (NO_DIFFERENCE, WORSE)
    assert decide(a, a - 5)[0] == WORSE


def test_verdict_fields_and_bad_input():
    rng = np.random.default_rng(3)
    v = compare_scores(rng.normal(0, 1, 8), rng.normal(3, 1, 8))
    assert v.verdict == BETTER and v.exit_code == 0
    assert v.iqm_diff_ci[0] < v.iqm_diff < v.iqm_diff_ci[1]
    assert 0.9 < v.prob_improvement <= 1.0 and v.n_needed is not None and v.n_needed <= 8
    assert "better" in v.summary()
    with pytest.raises(CompareError, match="at least 2"):
        compare_scores([1.0], [1.0, 2.0])


def test_stratified_iqm_interval_and_t_interval():
    rng = np.random.default_rng(4)
    m, lo, hi = st.iqm_stratified_ci([rng.normal(0, 1, 10), rng.normal(1, 1, 10)])
    assert lo < m < hi
    m, lo, hi = st.t_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2.0 < hi and np.isclose(hi - m, 4.303 * 1 / np.sqrt(3), atol=1e-3)
    assert st.probability_of_improvement([0, 0], [1, 1]) == 1.0


def test_baseline_false_alarm_rate_under_aa_is_at_most_nominal():
    from accord.eval.baseline import regression_p

    rng = np.random.default_rng(5)
    base, cand = rng.normal(10, 1, (SIMS, 10)), rng.normal(10, 1, (SIMS, 10))
    strict = np.mean(regression_p(base, cand, 0.0) < 0.05)  # no tolerance: exactly the test's level
    assert strict <= 0.05 + 0.02, strict
    tolerant = np.mean(regression_p(base, cand, 0.03 * 10) < 0.05)  # 3% tolerance: fewer alarms still
    assert tolerant <= strict
    # A real fall of 10% (1 sd) beyond the 3% tolerance is caught most of the time.
    fallen = rng.normal(9, 1, (SIMS, 10))
    assert np.mean(regression_p(base, fallen, 0.3) < 0.05) > 0.3
