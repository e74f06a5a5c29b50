"""Fit a data grid to the models: every family downsamples by 4, so H and W must be
multiples of 4 (:data:`sdkd.config.MODEL_DOWNSAMPLING`).

``grid: {policy: ...}`` of a dataset decides, at preprocess, before any training:

``exact``
    The grid must already fit; otherwise preprocess stops and names the other two.
``crop``
    Keep the centred largest grid that fits (at most 3 lines lost per side pair).
``pad``
    Extend to the next multiple by repeating the edge values (smooth, so the models see
    no artificial front), centred, and record a validity mask (H, W): 1 on the data's
    pixels, 0 on padding. Losses and metrics count only the data's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdkd.config import MODEL_DOWNSAMPLING, fitted_side
from sdkd.errors import SdkdError


@dataclass(frozen=True)
class GridFit:
    """How a source grid (H₀, W₀) becomes the canonical grid (H, W).

    Attributes:
        policy: ``exact``, ``crop`` or ``pad``.
        source: (H₀, W₀), the grid after ``spatial_stride``.
        shape: (H, W), multiples of 4.
        before: lines cropped (crop) or padded (pad) before the data, per axis (H, W);
            the rest of the difference is after it.
    """

    policy: str
    source: tuple[int, int]
    shape: tuple[int, int]
    before: tuple[int, int]

    @property
    def padded(self) -> bool:
        return self.shape != self.source and self.policy == "pad"

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """(..., H₀, W₀) → (..., H, W)."""
        if self.shape == self.source:
            return frames
        if self.policy == "crop":
            (top, left), (h, w) = self.before, self.shape
            return frames[..., top : top + h, left : left + w]
        after = [n - s - b for n, s, b in zip(self.shape, self.source, self.before, strict=True)]
        widths = [(0, 0)] * (frames.ndim - 2) + list(zip(self.before, after, strict=True))
        return np.pad(frames, widths, mode="edge")

    def mask(self) -> np.ndarray | None:
        """uint8 (H, W), 1 on the data's pixels; None when no pixel is padding."""
        if not self.padded:
            return None
        mask = np.zeros(self.shape, np.uint8)
        (top, left), (h, w) = self.before, self.source
        mask[top : top + h, left : left + w] = 1
        return mask

    def describe(self) -> str:
        (h0, w0), (h, w) = self.source, self.shape
        if self.shape == self.source:
            return f"grid {h}×{w}"
        return f"grid {h0}×{w0} → {h}×{w} ({self.policy})"


def fit_grid(height: int, width: int, policy: str, where: str) -> GridFit:
    """The canonical grid of a (``height``, ``width``) source under ``policy``.

    Raises:
        SdkdError: naming ``where`` when ``exact`` meets a grid that does not fit, or
            when the grid left is smaller than one 4 × 4 block.
    """
    factor = MODEL_DOWNSAMPLING
    source = (height, width)
    if policy == "exact" or source == tuple(fitted_side(n, "crop") for n in source):
        if height % factor or width % factor:
            crop, pad = ("×".join(str(fitted_side(n, p)) for n in source)
                         for p in ("crop", "pad"))
            raise SdkdError(
                f"{where}: the data grid is {height}×{width}, but the models downsample by "
                f"{factor}, so each side must be a multiple of {factor}; set "
                f"grid: {{policy: crop}} (→ {crop}) or grid: {{policy: pad}} (→ {pad}, "
                "padded pixels masked out of losses and metrics)"
            )
        return GridFit("exact", source, source, (0, 0))
    shape = (fitted_side(height, policy), fitted_side(width, policy))
    if min(shape) < factor:
        raise SdkdError(
            f"{where}: the data grid {height}×{width} cropped is {shape[0]}×{shape[1]}, "
            f"smaller than the models' {factor}×{factor} minimum; use grid: {{policy: pad}}"
        )
    before = tuple(abs(n - s) // 2 for n, s in zip(shape, source, strict=True))
    return GridFit(policy, source, shape, before)

