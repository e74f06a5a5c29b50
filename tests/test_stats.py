"""The paired interval of sdkd.report.stats against scipy and a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sdkd.report.stats import paired_change


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_interval_is_scipys_paired_t_interval_on_log_ratios(seed, n):
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(1e-3, 2e-3, n)
    treated = baseline * np.exp(rng.normal(-0.3, 0.2, n))
    change = paired_change(treated, baseline)
    ci = stats.ttest_rel(np.log(treated), np.log(baseline)).confidence_interval(0.95)
    assert change.n_pairs == n
    assert change.low_pct == pytest.approx(100 * math.expm1(ci.low), rel=1e-10)
    assert change.high_pct == pytest.approx(100 * math.expm1(ci.high), rel=1e-10)
    gmean = stats.gmean(treated / baseline)
    assert change.change_pct == pytest.approx(100 * (gmean - 1), rel=1e-10)


def test_a_hand_computed_interval():
    """Log ratios 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.302653, so the
    interval of the mean log ratio is 0.2 ± 0.248414."""
    change = paired_change(np.exp([0.1, 0.2, 0.3]), [1.0, 1.0, 1.0])
    assert change.low_pct == pytest.approx(100 * math.expm1(0.2 - 0.2484138), abs=1e-4)
    assert change.high_pct == pytest.approx(100 * math.expm1(0.2 + 0.2484138), abs=1e-4)
    assert not change.significant  # the interval holds 0


def test_significance_follows_the_interval():
    gain = paired_change([0.50, 0.52, 0.49], [1.0, 1.01, 0.99])
    assert gain.significant and gain.high_pct < 0
    loss = paired_change([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    assert loss.significant and loss.low_pct > 0
    one = paired_change([0.5], [1.0])
    assert one.change_pct == pytest.approx(-50) and not one.has_interval
    assert not one.significant


@pytest.mark.parametrize(("treated", "baseline"), [([1.0], [1.0, 2.0]), ([], []),
                                                   ([0.0, 1.0], [1.0, 1.0])])
def test_bad_pairs(treated, baseline):
    with pytest.raises(ValueError):
        paired_change(treated, baseline)
