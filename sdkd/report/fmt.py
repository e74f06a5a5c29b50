"""How the report writes numbers, in its tables, its verdicts and the README's results.

The tests format their expectations with these functions too, so a change of format
changes both sides. Missing or non-finite values are written as :data:`DASH`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DASH = "—"

# The SDKD paper's headline result as its abstract states it, and what is known (only
# second-hand) of its conditions; the report, its figures and the README quote these.
PAPER_MSE_REDUCTION_PCT = 81.3
PAPER_MAE_REDUCTION_PCT = 52.3
PAPER_CONDITIONS = ("Navier–Stokes (FNO's ν = 1e-5 data, 64 × 64, by second-hand "
                    "accounts); the reference point of the reductions is not stated")


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (a numeric string counts)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_metric(name: str, value: Any) -> str:
    """A metric value as shown in the tables: SSIM 4 decimals, PSNR 2, others 4 digits."""
    if not finite(value):
        return DASH
    value = float(value)
    if name == "ssim":
        return f"{value:.4f}"
    if name == "psnr":
        return f"{value:.2f}"
    return f"{value:.4g}"


def fmt_pct(value: Any, spread: Any = None) -> str:
    """A signed % change (``-52.6 %``), with ``± spread`` when one is given."""
    if not finite(value):
        return DASH
    text = f"{float(value):+.1f} %"
    if finite(spread):
        text += f" ± {float(spread):.1f}"
    return text


def fmt_si(value: Any, digits: int = 3) -> str:
    """A count with an SI prefix: ``60 k``, ``1.5 M``, ``192 M``, ``3.1 G``."""
    if not finite(value):
        return DASH
    value = float(value)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}"
    return f"{value:.{digits}g}"


def fmt_duration(seconds: Any) -> str:
    """Seconds as ``12.3 s``, ``4.5 min`` or ``2.1 h``."""
    if not finite(seconds):
        return DASH
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def fmt_plain(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant digits, without a prefix."""
    return f"{float(value):.{digits}g}" if finite(value) else DASH


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def stat_text(stats: Mapping[str, Any] | None, metric: str) -> str:
    """Mean with ``± sd`` when the summary has a spread for it."""
    if not stats or metric not in stats:
        return DASH
    text = fmt_metric(metric, stats[metric])
    spread = stats.get(f"{metric}_std")
    if finite(spread):
        text += f" ± {float(spread):.2g}"
    return text


def spread_pct(stats: Mapping[str, Any], none: Mapping[str, Any], metric: str) -> float | None:
    """The ± of a % change vs the plain student: 100 · sd over seeds of ``stats``'s
    ``metric`` / the plain student's mean; None without a spread."""
    sd = stats.get(f"{metric}_std")
    if finite(sd) and finite(none.get(metric)) and none[metric] != 0:
        return 100.0 * float(sd) / abs(float(none[metric]))
    return None
