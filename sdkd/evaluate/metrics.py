"""Streaming forecast metrics: update once per batch, never hold all predictions.

Every accumulator takes batches of predictions and targets of shape
(B, T_out, C, H, W) in **physical units** and keeps only running sums (float64), so
memory does not grow with the test set and feeding the batches one by one gives the
same numbers as feeding them all at once (up to float64 rounding).

Definitions (see docs/evaluation-format.md):

* **MSE, MAE** per pixel: means over windows, channels and the grid (and lead times
  for the overall value); **RMSE** = √(pooled MSE), not a mean of per-window RMSEs.
* **Relative L2** (FNO's convention): per window ‖p − t‖₂ / ‖t‖₂ over (T_out, C, H, W),
  averaged over windows; per lead time the same over (C, H, W). A window whose truth is
  all zeros gives ``inf``.
* **SSIM** (Wang et al. 2004) on every 2-D frame and channel: Gaussian window σ = 1.5
  truncated at 3.5 σ (11 px), K1 = 0.01, K2 = 0.03, population (not sample)
  covariances, the stated ``data_range``; the SSIM map is averaged over the pixels whose
  window lies inside the frame (a 5 px border is cropped), which is what
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` does; frames are then averaged. Grids smaller than
  11 px have no SSIM (``nan``).
* **PSNR** = 10 log10(data_range² / MSE) from the pooled MSE (overall or of one lead
  time); ``inf`` when the MSE is 0.
* **Per-band MSE**: :meth:`sdkd.distill.bands.SpectralBands.band_mse` of the error,
  i.e. the same radial bands as the distillation loss; the bands' MSEs sum to the MSE.
  ``truth_energy`` is the mean per-pixel energy of the truth in each band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from sdkd.distill.bands import SpectralBands
from sdkd.errors import SdkdError

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_KERNEL",
    "SSIM_SIGMA",
    "BandErrors",
    "ForecastMetrics",
    "PointwiseErrors",
    "SSIMAccumulator",
    "psnr",
    "ssim_frames",
]

SSIM_SIGMA = 1.5
SSIM_KERNEL = 11  # 2 · int(3.5 σ + 0.5) + 1: skimage's truncate=3.5 window for σ = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_PAD = (SSIM_KERNEL - 1) // 2
# torchmetrics convolves 5 maps per frame with an 11 × 11 kernel; in float64 on the CPU
# that goes through im2col, a buffer of 5 · 121 · H · W doubles per frame (3 GB for a
# batch of 160 64 × 64 frames). Frames are therefore fed in chunks of about this size.
_SSIM_BYTES = 64 * 2**20


def _check_pair(prediction: Tensor, truth: Tensor, what: str) -> None:
    if prediction.shape != truth.shape:
        raise SdkdError(
            f"{what}: prediction and truth must have the same shape, got "
            f"{tuple(prediction.shape)} and {tuple(truth.shape)}"
        )
    if prediction.ndim != 5:
        raise SdkdError(
            f"{what}: expected batches of shape (B, T_out, C, H, W), got {tuple(prediction.shape)}"
        )


def psnr(mse: float, data_range: float) -> float:
    """10 log10(data_range² / mse); ``inf`` for mse = 0."""
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim_frames(prediction: Tensor, truth: Tensor, data_range: float) -> Tensor:
    """SSIM of every 2-D frame: (..., H, W) pairs → (...) float64 (see the module docstring).

    The SSIM map is computed with torchmetrics and averaged over the interior pixels
    only (those whose 11 px window lies inside the frame), matching scikit-image.
    Returns ``nan`` for every frame when H or W is below 11.
    """
    if prediction.shape != truth.shape or prediction.ndim < 2:
        raise SdkdError(
            f"ssim: expected two fields of the same shape (..., H, W), got "
            f"{tuple(prediction.shape)} and {tuple(truth.shape)}"
        )
    if not data_range > 0:
        raise SdkdError(f"ssim: data_range must be > 0, got {data_range}")
    lead, (h, w) = prediction.shape[:-2], prediction.shape[-2:]
    if min(h, w) < SSIM_KERNEL:
        return torch.full(lead, math.nan, dtype=torch.float64, device=prediction.device)
    p = prediction.reshape(-1, 1, h, w).to(torch.float64)
    t = truth.reshape(-1, 1, h, w).to(torch.float64)
    chunk = max(1, _SSIM_BYTES // (5 * SSIM_KERNEL**2 * h * w * 8))
    out = []
    for start in range(0, p.shape[0], chunk):
        _, full = structural_similarity_index_measure(
            p[start:start + chunk], t[start:start + chunk],
            gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
            data_range=float(data_range), k1=SSIM_K1, k2=SSIM_K2,
            reduction="none", return_full_image=True,
        )
        inner = full[..., _SSIM_PAD:h - _SSIM_PAD, _SSIM_PAD:w - _SSIM_PAD]
        out.append(inner.flatten(1).mean(1))
    return torch.cat(out).reshape(lead)


class PointwiseErrors:
    """MSE, MAE, RMSE, relative L2 and PSNR, overall and per lead time."""

    def __init__(self, out_steps: int, data_range: float) -> None:
        self.out_steps = out_steps
        self.data_range = float(data_range)
        z = lambda: torch.zeros(out_steps, dtype=torch.float64)  # noqa: E731
        self.sq, self.abs, self.rel_lead = z(), z(), z()
        self.pixels_per_lead = 0  # pixels per lead time seen so far (B · C · H · W summed)
        self.rel_sum = 0.0  # Σ over windows of ‖p − t‖ / ‖t‖ over (T, C, H, W)
        self.windows = 0

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        _check_pair(prediction, truth, "metrics")
        if prediction.shape[1] != self.out_steps:
            raise SdkdError(
                f"metrics: expected {self.out_steps} lead times, got {prediction.shape[1]}"
            )
        b = prediction.shape[0]
        err = prediction.to(torch.float64) - truth.to(torch.float64)
        tru = truth.to(torch.float64)
        err_sq = err.square().flatten(2).sum(2)  # (B, T)
        tru_sq = tru.square().flatten(2).sum(2)  # (B, T)
        self.sq += err_sq.sum(0).cpu()
        self.abs += err.abs().flatten(2).sum(2).sum(0).cpu()
        self.rel_lead += (err_sq.sqrt() / tru_sq.sqrt()).sum(0).cpu()
        self.rel_sum += float((err_sq.sum(1).sqrt() / tru_sq.sum(1).sqrt()).sum())
        self.pixels_per_lead += b * prediction[0, 0].numel()
        self.windows += b

    def compute(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(overall, per lead time) dicts with keys mse, mae, rmse, rel_l2, psnr."""
        if self.windows == 0:
            raise SdkdError("metrics: no samples were accumulated")
        mse_lead = self.sq / self.pixels_per_lead
        overall = {
            "mse": float(self.sq.sum()) / (self.pixels_per_lead * self.out_steps),
            "mae": float(self.abs.sum()) / (self.pixels_per_lead * self.out_steps),
        }
        overall["rmse"] = math.sqrt(overall["mse"])
        overall["rel_l2"] = self.rel_sum / self.windows
        overall["psnr"] = psnr(overall["mse"], self.data_range)
        per_lead = {
            "mse": mse_lead.tolist(),
            "mae": (self.abs / self.pixels_per_lead).tolist(),
            "rmse": mse_lead.sqrt().tolist(),
            "rel_l2": (self.rel_lead / self.windows).tolist(),
            "psnr": [psnr(m, self.data_range) for m in mse_lead.tolist()],
        }
        return overall, per_lead


class SSIMAccumulator:
    """Mean SSIM over frames and channels, overall and per lead time."""

    def __init__(self, out_steps: int, data_range: float) -> None:
        if not data_range > 0:
            raise SdkdError(f"ssim: data_range must be > 0, got {data_range}")
        self.out_steps = out_steps
        self.data_range = float(data_range)
        self.sums = torch.zeros(out_steps, dtype=torch.float64)
        self.frames_per_lead = 0

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        _check_pair(prediction, truth, "ssim")
        values = ssim_frames(prediction, truth, self.data_range)  # (B, T, C)
        self.sums += values.sum(dim=(0, 2)).cpu()
        self.frames_per_lead += values.shape[0] * values.shape[2]

    def compute(self) -> tuple[float, list[float]]:
        if self.frames_per_lead == 0:
            raise SdkdError("ssim: no samples were accumulated")
        per_lead = self.sums / self.frames_per_lead
        return float(per_lead.mean()), per_lead.tolist()


class BandErrors:
    """Per-band MSE of the error and per-band energy of the truth (radial bands)."""

    def __init__(self, cutoffs: Sequence[float]) -> None:
        self.bands = SpectralBands(cutoffs)
        self.mse_sum = torch.zeros(self.bands.num_bands, dtype=torch.float64)
        self.energy_sum = torch.zeros(self.bands.num_bands, dtype=torch.float64)
        self.frames = 0

    def check_grid(self, h: int, w: int) -> None:
        """Raise SdkdError if some band holds no mode on an h × w grid."""
        self.bands.masks(h, w)

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        if prediction.shape != truth.shape:
            raise SdkdError(
                f"band errors: prediction and truth must have the same shape, got "
                f"{tuple(prediction.shape)} and {tuple(truth.shape)}"
            )
        p, t = prediction.to(torch.float64), truth.to(torch.float64)
        frames = p[..., 0, 0].numel()
        self.mse_sum += self.bands.band_mse(p, t).cpu() * frames
        self.energy_sum += self.bands.band_energy(t).flatten(1).sum(1).cpu()
        self.frames += frames

    def compute(self) -> dict[str, list[float]]:
        if self.frames == 0:
            raise SdkdError("band errors: no samples were accumulated")
        return {
            "cutoffs": list(self.bands.cutoffs),
            "mse": (self.mse_sum / self.frames).tolist(),
            "truth_energy": (self.energy_sum / self.frames).tolist(),
        }


class ForecastMetrics:
    """Every error metric of the evaluation file, streamed over batches.

    Args:
        out_steps: T_out.
        data_range: max − min of the data (physical units), for SSIM and PSNR.
        band_cutoffs: radial cutoffs (cycles per domain) of the per-band MSE; None skips it.

    ``update(prediction, truth)`` takes (B, T_out, C, H, W) batches in physical units;
    ``compute()`` returns ``{"metrics": {...}, "per_lead_time": {...}, "band_errors":
    {...} | None}`` with keys mse, mae, rmse, rel_l2, ssim, psnr.
    """

    def __init__(
        self, out_steps: int, data_range: float, band_cutoffs: Sequence[float] | None = None
    ) -> None:
        if not (math.isfinite(data_range) and data_range > 0):
            raise SdkdError(f"metrics: data_range must be a finite number > 0, got {data_range}")
        self.pointwise = PointwiseErrors(out_steps, data_range)
        self.ssim = SSIMAccumulator(out_steps, data_range)
        self.bands = BandErrors(band_cutoffs) if band_cutoffs is not None else None

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        self.pointwise.update(prediction, truth)
        self.ssim.update(prediction, truth)
        if self.bands is not None:
            self.bands.update(prediction, truth)

    def compute(self) -> dict:
        overall, per_lead = self.pointwise.compute()
        overall["ssim"], per_lead["ssim"] = self.ssim.compute()
        order = ("mse", "mae", "rmse", "rel_l2", "ssim", "psnr")
        return {
            "metrics": {k: overall[k] for k in order},
            "per_lead_time": {k: per_lead[k] for k in order},
            "band_errors": self.bands.compute() if self.bands is not None else None,
        }
