"""Whether a band setting beats the plain student: paired differences with an interval.

Seed s of every setting of a student starts from the same initial weights and sees the
same batches (both follow the run's seed), so its runs come in pairs: (setting, s) and
(none, s). The effect of a setting is measured on each pair as the log ratio of the
test MSEs, d_s = log(MSE_setting,s / MSE_none,s): a multiplicative change, as MSEs of
one model vary by factors rather than by amounts, and one that does not depend on the
field's units. Over n pairs the 95 % confidence interval of the mean log ratio is the
paired t-interval

    mean(d) ± t_{0.975, n-1} · sd(d) / √n        (sd with n − 1 degrees of freedom)

and the interval of the % change is 100 · (exp(·) − 1) of its ends. It treats the
seeds as the random draw and each run's test error (a mean over its test windows) as
exact: the spread between seeds is what decides whether a gain is real. With one pair
there is no interval.

Two sets of runs that do not share their seeds (``sdkd compare`` of two experiments
that ran different seeds) have no pairs: :func:`welch_change` compares them unpaired,
by Welch's t-interval of the difference of the mean log values,

    mean(log t) − mean(log b) ± t_{0.975, ν} · √(s_t²/n_t + s_b²/n_b)

with the Welch–Satterthwaite degrees of freedom ν; it needs two runs a side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sdkd.report.fmt import DASH, fmt_pct

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedChange:
    """The % change of a metric against a baseline over paired seeds (negative = lower).

    ``change_pct`` is 100 · (exp(mean log ratio) − 1), the geometric-mean change;
    ``low_pct``/``high_pct`` the ends of its confidence interval (NaN with one pair).
    """

    change_pct: float
    low_pct: float
    high_pct: float
    n_pairs: int
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.n_pairs > 1 and has_interval(self.low_pct, self.high_pct)

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (no change)."""
        return self.has_interval and excludes_zero(self.low_pct, self.high_pct)


def excludes_zero(low: float, high: float) -> bool:
    """Whether the interval [low, high] of a change lies wholly on one side of no change."""
    return high < 0 or low > 0


def has_interval(low: float | None, high: float | None) -> bool:
    """Whether both ends of an interval are known (two paired seeds or more)."""
    return low is not None and high is not None and math.isfinite(low) and math.isfinite(high)


def interval_text(low: float | None, high: float | None) -> str:
    """``−30.1 % to −5.2 %``, or a dash without an interval."""
    return f"{fmt_pct(low)} to {fmt_pct(high)}" if has_interval(low, high) else DASH


def change_verdict(low: float | None, high: float | None) -> str:
    """What a paired change of MSE with interval (low, high) says, in a table's words: a
    difference only when the interval excludes zero."""
    if not has_interval(low, high):
        return "one seed: suggestive at most"
    return ("lower MSE" if high < 0 else "higher MSE" if low > 0
            else "no significant difference")


def paired_change(
    treated: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> PairedChange:
    """The paired % change of ``treated`` against ``baseline`` (module docstring).

    Both sequences hold one positive value per seed, in the same seed order.
    """
    t, b = np.asarray(treated, dtype=float), np.asarray(baseline, dtype=float)
    if t.shape != b.shape or t.ndim != 1 or len(t) == 0:
        raise ValueError(f"paired values expected, got {len(t)} and {len(b)}")
    if not (np.all(t > 0) and np.all(b > 0)):
        raise ValueError("log ratios need positive values")
    d = np.log(t / b)
    n, mean = len(d), float(d.mean())
    low = high = math.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(d.std(ddof=1)) / n**0.5
        low, high = mean - half, mean + half
    return PairedChange(_pct(mean), _pct(low), _pct(high), n, confidence)


def welch_change(
    treated: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(change, low, high) in %: the unpaired change of ``treated`` against ``baseline``
    (module docstring), 100 · (exp(·) − 1) of the difference of mean log values and of the
    ends of its Welch t-interval. Each sequence holds two positive values or more.
    """
    t, b = np.asarray(treated, dtype=float), np.asarray(baseline, dtype=float)
    if t.ndim != 1 or b.ndim != 1 or min(len(t), len(b)) < 2:
        raise ValueError(f"two values a side expected, got {len(t)} and {len(b)}")
    if not (np.all(t > 0) and np.all(b > 0)):
        raise ValueError("log values need positive values")
    t, b = np.log(t), np.log(b)
    var_t, var_b = float(t.var(ddof=1)) / len(t), float(b.var(ddof=1)) / len(b)
    diff, se2 = float(t.mean() - b.mean()), var_t + var_b
    half = 0.0  # no spread on either side: the interval is the point
    if se2 > 0:
        df = se2**2 / (var_t**2 / (len(t) - 1) + var_b**2 / (len(b) - 1))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return _pct(diff), _pct(diff - half), _pct(diff + half)


def _pct(log_ratio: float) -> float:
    return 100.0 * math.expm1(log_ratio)
