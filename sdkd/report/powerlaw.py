"""Is the flow turbulent? The power law of the truth's energy spectrum, and whether it holds.

A turbulent field has an inertial range: shells over which the spectrum E(|k|) falls as
a power law |k|^s (Kraichnan's k⁻³ for the enstrophy cascade of forced 2-D turbulence,
steeper where coherent vortices form). A near-laminar field has none: past the forcing
scale its spectrum falls exponentially, and a straight line in log–log fits it badly.

:func:`spectral_slope` fits s by least squares on (log |k|, log E) over
3 ≤ |k| ≤ min(H, W)/4 (our choice: above the forcing and initial-condition scales of the
Navier–Stokes data, |k| ≤ 2, and well below the grid's cutoff, where the solver's
filter and the downsampling act), and once more over each half of that range (split at
its geometric middle). A power law has the same slope in both halves; an exponential
fall-off steepens from the first half to the second: we call the range a power law
when the two slopes differ by at most :data:`TOLERANCE` (our choice; the near-laminar
default flow at ν = 1e-3 steepens by about 15 over 3–8 vs 8–20, the turbulent one at
ν = 1e-5 by under 1). The fit takes shells with E > 0 only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

K_MIN = 3
MIN_SHELLS = 4  # the fewest shells a fit takes: below, no slope is reported
TOLERANCE = 1.0  # the largest difference of the halves' slopes of a power law


@dataclass(frozen=True)
class PowerLaw:
    """Slope ``slope`` of log E against log |k| over ``k_min`` ≤ |k| ≤ ``k_max``, and the
    slopes over its lower and upper halves."""

    slope: float
    k_min: int
    k_max: int
    k_mid: float
    lower: float
    upper: float

    @property
    def holds(self) -> bool:
        """Whether both halves have the same slope (within :data:`TOLERANCE`)."""
        return abs(self.upper - self.lower) <= TOLERANCE


def _fit(k: np.ndarray, energy: np.ndarray, low: float, high: float) -> float | None:
    keep = (k >= low) & (k <= high) & (energy > 0)
    if keep.sum() < 2:
        return None
    return float(np.polyfit(np.log(k[keep]), np.log(energy[keep]), 1)[0])


def spectral_slope(k: np.ndarray, energy: np.ndarray, grid: tuple[int, int]) -> PowerLaw | None:
    """The power law of ``energy`` (per shell ``k``, cycles per domain) on an ``grid``
    (H, W) field; None when the grid is too small for a range of MIN_SHELLS shells."""
    k_max = min(grid) // 4
    if k_max - K_MIN + 1 < MIN_SHELLS:
        return None
    k, energy = np.asarray(k, dtype=float), np.asarray(energy, dtype=float)
    mid = math.sqrt(K_MIN * k_max)
    slopes = (_fit(k, energy, K_MIN, k_max), _fit(k, energy, K_MIN, mid),
              _fit(k, energy, mid, k_max))
    if any(s is None for s in slopes):
        return None
    whole, lower, upper = slopes
    return PowerLaw(whole, K_MIN, k_max, mid, lower, upper)
