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
# Frames are filtered in chunks so that the working set (the 5 maps of a frame, their
# filtered copies and the SSIM map's temporaries: about 20 · H · W doubles per frame)
# stays near this size however large the batch or the grid.
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


def _gaussian_window() -> Tensor:
    """The normalised 1-D Gaussian (σ = SSIM_SIGMA, SSIM_KERNEL taps), float64: shape (11,).

    The same weights as scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5), which
    scikit-image uses (its 2-D window is the outer product of this one with itself).
    """
    r = torch.arange(SSIM_KERNEL, dtype=torch.float64) - _SSIM_PAD
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _valid_filter_matrix(n: int, device: torch.device) -> Tensor:
    """(n − 10, n) float64 band matrix whose row i holds the Gaussian window at columns
    i … i + 10: ``matrix @ v`` filters ``v`` along that axis at the positions whose window
    lies inside the frame, i.e. exactly the interior pixels the SSIM mean keeps."""
    g = _gaussian_window()
    rows = torch.arange(n - 2 * _SSIM_PAD)
    matrix = torch.zeros(n - 2 * _SSIM_PAD, n, dtype=torch.float64)
    for tap in range(SSIM_KERNEL):
        matrix[rows, rows + tap] = g[tap]
    return matrix.to(device)


def ssim_frames(prediction: Tensor, truth: Tensor, data_range: float) -> Tensor:
    """SSIM of every 2-D frame: (..., H, W) pairs → (...) float64 (see the module docstring).

    The local means, variances and covariance are Gaussian-weighted averages of x, y, x²,
    y² and xy, filtered along W then along H (the 2-D Gaussian is separable), in
    float64, and only at the interior pixels (those whose 11 px window lies inside the
    frame), which are the ones scikit-image averages: no padding is needed and the
    border is never computed. Each 1-D filter is one matrix product with a band matrix
    (:func:`_valid_filter_matrix`), which BLAS runs far faster than a float64
    convolution. Returns ``nan`` for every frame when H or W is below 11.

    Why not torchmetrics' ``structural_similarity_index_measure`` (used before): on two
    CPU cores, 200 frames of 64 × 64 took 8.5 s with it in float64 (an 11 × 11 float64
    convolution through im2col, about 40 ms a frame) and 0.5 s in float32, against
    0.1 s here in float64 (0.2 s for scikit-image itself), and importing torchmetrics
    took about 3 s of every ``sdkd evaluate``. This function agrees with scikit-image
    to float64 rounding: ~1e-13 on fields near zero, ~1e-8 on 300 ± 0.05 where both
    subtract large E[x²] and μ² (tests/test_metrics.py).
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
    c1 = (SSIM_K1 * float(data_range)) ** 2
    c2 = (SSIM_K2 * float(data_range)) ** 2
    along_h = _valid_filter_matrix(h, prediction.device)  # (h − 10, h)
    along_w_t = _valid_filter_matrix(w, prediction.device).T  # (w, w − 10)
    p = prediction.reshape(-1, h, w).to(torch.float64)
    t = truth.reshape(-1, h, w).to(torch.float64)
    chunk = max(1, _SSIM_BYTES // (20 * h * w * 8))
    out = []
    for start in range(0, p.shape[0], chunk):
        x, y = p[start:start + chunk], t[start:start + chunk]
        maps = torch.stack((x, y, x * x, y * y, x * y), dim=1)  # (n, 5, h, w)
        # W first: (n·5·h, w) @ (w, w − 10) is a single GEMM; then H.
        filtered = along_h @ (maps @ along_w_t)  # (n, 5, h − 10, w − 10)
        mu_x, mu_y, xx, yy, xy = filtered.unbind(1)
        mu_xy = mu_x * mu_y
        mu_x2, mu_y2 = mu_x.square(), mu_y.square()
        # Population (co)variances, as skimage with use_sample_covariance=False.
        var_x, var_y, cov = xx - mu_x2, yy - mu_y2, xy - mu_xy
        ssim_map = ((2 * mu_xy + c1) * (2 * cov + c2)) / (
            (mu_x2 + mu_y2 + c1) * (var_x + var_y + c2)
        )
        out.append(ssim_map.flatten(1).mean(1))
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
