"""Streaming forecast metrics: update once per batch, never hold all predictions.

Every accumulator takes batches of predictions and targets of shape
(B, T_out, C, H, W) in **physical units** and keeps only running sums (float64), so
memory does not grow with the test set and feeding the batches one by one gives the
same numbers as feeding them all at once (up to float64 rounding).

**Validity mask.** A grid padded up to a size the models accept has a mask, a bool
(H, W) tensor, True on the data's pixels (``ForecastWindows.mask``); every accumulator
takes it as ``mask`` (None: every pixel counts) and first sets the padded pixels of the
prediction and the truth to 0 (:func:`zero_padding`), so whatever a model predicts
there, NaN included, never reaches a number. Then, with n = the valid pixels of a frame:

* MSE, MAE, RMSE, PSNR and relative L2 are sums over valid pixels divided by n (the
  norms of relative L2 run over valid pixels);
* SSIM averages the SSIM map over the windows that lie wholly on valid pixels (below);
* band errors and spectra are those of the zero-filled fields, times H·W / n: by
  Parseval the zero-filled error's energy is the valid pixels' squared error summed
  over the grid, so the bands and shells stay energies *per valid pixel* and still sum
  to the (masked) MSE and mean(x²) over valid pixels.

Without a mask (n = H·W) every number is exactly what it was before masks existed.

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
  11 px have no SSIM (``nan``). With a mask, only the windows whose 11 × 11 pixels are
  all valid count (no window ever sees a padded pixel, so padding cannot raise or lower
  the score, and on a rectangular valid region this is scikit-image's SSIM of that
  sub-block); a frame with no such window has no SSIM (``nan``).
* **PSNR** = 10 log10(data_range² / MSE) from the pooled MSE (overall or of one lead
  time); ``inf`` when the MSE is 0.
* **Per-band MSE**: :meth:`sdkd.distill.bands.SpectralBands.band_mse` of the error,
  i.e. the same radial bands as the distillation loss; the bands' MSEs sum to the MSE.
  ``truth_energy`` is the mean per-pixel energy of the truth in each band.
* **Per channel**: the same six numbers over one channel's frames; its PSNR and SSIM use
  that channel's own data range (``channel_ranges``; by default the overall one), as a
  variable in kelvin and one in m² s⁻² have nothing in common to scale by. A channel
  whose range is 0 (constant) has no PSNR or SSIM (``nan``).
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
    "check_mask",
    "psnr",
    "ssim_frames",
    "zero_padding",
]

SSIM_SIGMA = 1.5
SSIM_KERNEL = 11  # 2 · int(3.5 σ + 0.5) + 1: skimage's truncate=3.5 window for σ = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_PAD = (SSIM_KERNEL - 1) // 2
# Frames are filtered in chunks so that the working set (the 5 maps of a frame, their
# filtered copies and the SSIM map's temporaries: about 20 · H · W doubles per frame,
# 10 more per extra data range) stays near this size however large the batch or grid.
_SSIM_BYTES = 64 * 2**20
# The metrics of the evaluation file, in its order.
_ORDER = ("mse", "mae", "rmse", "rel_l2", "ssim", "psnr")


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


def check_mask(mask: Tensor | None) -> Tensor | None:
    """A validity mask as a bool (H, W) tensor on the CPU (True = a pixel that counts), or
    None (every pixel counts).

    Raises:
        SdkdError: for a mask that is not 2-D or has no valid pixel.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.ndim != 2:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise SdkdError(f"mask: expected a (H, W) tensor, got {got}")
    mask = mask.detach().to("cpu", torch.bool)
    if not mask.any():
        raise SdkdError("mask: no pixel is valid; expected at least one True")
    return mask


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` (..., H, W) in float64, 0 on the pixels where ``mask`` (H, W) is False; with
    ``mask`` None, ``x`` in float64 unchanged.

    A select, not a product: a padded value of Inf or NaN becomes 0, not NaN.
    """
    x = x.to(torch.float64)
    if mask is None:
        return x
    if tuple(x.shape[-2:]) != tuple(mask.shape):
        raise SdkdError(f"mask: grid {tuple(mask.shape)} differs from the fields' "
                        f"{tuple(x.shape[-2:])}")
    return torch.where(mask.to(x.device), x, 0.0)


def _valid_pixels(mask: Tensor | None, h: int, w: int) -> int:
    """How many pixels of an h × w frame count."""
    return h * w if mask is None else int(mask.sum())


def psnr(mse: float, data_range: float) -> float:
    """10 log10(data_range² / mse); ``inf`` for mse = 0, ``nan`` for data_range = 0 (a
    constant field has no peak to compare with)."""
    if mse == 0:
        return math.inf
    if data_range == 0:
        return math.nan
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window() -> Tensor:
    """The normalised 1-D Gaussian (σ = SSIM_SIGMA, SSIM_KERNEL taps), float64: shape (11,).

    The same weights as scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5), which
    scikit-image uses (its 2-D window is the outer product of this one with itself).
    """
    r = torch.arange(SSIM_KERNEL, dtype=torch.float64) - _SSIM_PAD
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _valid_filter_matrix(n: int, device: torch.device, taps: Tensor | None = None) -> Tensor:
    """(n − 10, n) float64 band matrix whose row i holds the 11 ``taps`` (default: the
    Gaussian window) at columns i … i + 10: ``matrix @ v`` filters ``v`` along that axis
    at the positions whose window lies inside the frame, i.e. exactly the interior pixels
    the SSIM mean keeps."""
    g = _gaussian_window() if taps is None else taps
    rows = torch.arange(n - 2 * _SSIM_PAD)
    matrix = torch.zeros(n - 2 * _SSIM_PAD, n, dtype=torch.float64)
    for tap in range(SSIM_KERNEL):
        matrix[rows, rows + tap] = g[tap]
    return matrix.to(device)


def _valid_windows(mask: Tensor, device: torch.device) -> Tensor:
    """Bool (H − 10, W − 10): True at the interior pixels whose 11 × 11 window holds only
    valid pixels of ``mask`` (H, W) (H, W ≥ 11)."""
    ones = torch.ones(SSIM_KERNEL, dtype=torch.float64)
    h, w = mask.shape
    # Box sums of 0/1 in float64 are exact integers: a window is valid iff it sums to 121.
    counts = (_valid_filter_matrix(h, device, ones) @ mask.to(device, torch.float64)
              @ _valid_filter_matrix(w, device, ones).T)
    return counts == SSIM_KERNEL**2


def ssim_frames(prediction: Tensor, truth: Tensor, data_range: float | Tensor, *,
                mask: Tensor | None = None) -> Tensor:
    """SSIM of every 2-D frame: (..., H, W) pairs → (...) float64 (see the module docstring).

    ``data_range`` is a number > 0, or a tensor of them whose shape broadcasts with the
    frames' leading shape (...): each frame is scored with its own range, and a range
    tensor with more dimensions scores every frame with several ranges at the cost of one
    (e.g. ranges of shape (2, 1, 1, C) and frames (B, T, C, H, W) give (2, B, T, C)). The
    result has the broadcast shape. ``mask`` (H, W), True on valid pixels, keeps only the
    windows lying wholly on valid pixels (padded pixels are set to 0 first).

    The local means, variances and covariance are Gaussian-weighted averages of x, y, x²,
    y² and xy, filtered along W then along H (the 2-D Gaussian is separable), in
    float64, and only at the interior pixels (those whose 11 px window lies inside the
    frame), which are the ones scikit-image averages: no padding is needed and the
    border is never computed. Each 1-D filter is one matrix product with a band matrix
    (:func:`_valid_filter_matrix`), which BLAS runs far faster than a float64
    convolution. Returns ``nan`` for every frame when H or W is below 11, or when the
    mask leaves no window.

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
    ranges = torch.as_tensor(data_range, dtype=torch.float64).cpu()
    if not bool((ranges > 0).all()):
        raise SdkdError(f"ssim: data_range must be > 0, got {data_range}")
    lead, (h, w) = prediction.shape[:-2], prediction.shape[-2:]
    try:
        shape = torch.broadcast_shapes(ranges.shape, lead)
    except RuntimeError:
        shape = None
    if shape is None or shape[len(shape) - len(lead):] != lead:
        raise SdkdError(f"ssim: data_range of shape {tuple(ranges.shape)} does not broadcast "
                        f"with the frames' leading shape {tuple(lead)}")
    mask = check_mask(mask)
    windows = None
    if min(h, w) >= SSIM_KERNEL and mask is not None:
        windows = _valid_windows(mask, prediction.device)
    if min(h, w) < SSIM_KERNEL or (windows is not None and not windows.any()):
        return torch.full(shape, math.nan, dtype=torch.float64, device=prediction.device)
    frames = math.prod(lead)
    # one row of ranges per extra leading dimension, one column per frame
    ranges = ranges.expand(shape).reshape(-1, frames).to(prediction.device)
    c1 = (SSIM_K1 * ranges) ** 2
    c2 = (SSIM_K2 * ranges) ** 2
    along_h = _valid_filter_matrix(h, prediction.device)  # (h − 10, h)
    along_w_t = _valid_filter_matrix(w, prediction.device).T  # (w, w − 10)
    p = zero_padding(prediction, mask).reshape(-1, h, w)
    t = zero_padding(truth, mask).reshape(-1, h, w)
    chunk = max(1, _SSIM_BYTES // ((10 + 10 * ranges.shape[0]) * h * w * 8))
    out = []
    for start in range(0, frames, chunk):
        stop = start + chunk
        x, y = p[start:stop], t[start:stop]
        maps = torch.stack((x, y, x * x, y * y, x * y), dim=1)  # (n, 5, h, w)
        # W first: (n·5·h, w) @ (w, w − 10) is a single GEMM; then H.
        filtered = along_h @ (maps @ along_w_t)  # (n, 5, h − 10, w − 10)
        mu_x, mu_y, xx, yy, xy = filtered.unbind(1)
        mu_xy = mu_x * mu_y
        mu_x2, mu_y2 = mu_x.square(), mu_y.square()
        # Population (co)variances, as skimage with use_sample_covariance=False.
        var_x, var_y, cov = xx - mu_x2, yy - mu_y2, xy - mu_xy
        k1, k2 = c1[:, start:stop, None, None], c2[:, start:stop, None, None]  # (R, n, 1, 1)
        ssim_map = ((2 * mu_xy + k1) * (2 * cov + k2)) / (
            (mu_x2 + mu_y2 + k1) * (var_x + var_y + k2)
        )  # (R, n, h − 10, w − 10)
        out.append(ssim_map.flatten(2).mean(2) if windows is None
                   else ssim_map[..., windows].mean(2))
    return torch.cat(out, dim=1).reshape(shape)


def _channel_ranges(channel_ranges: Sequence[float] | None) -> Tensor | None:
    """The per-channel ranges as a (C,) float64 tensor (finite, ≥ 0), or None."""
    if channel_ranges is None:
        return None
    ranges = torch.as_tensor([float(r) for r in channel_ranges], dtype=torch.float64)
    if ranges.ndim != 1 or not len(ranges) or not bool(
            (torch.isfinite(ranges) & (ranges >= 0)).all()):
        raise SdkdError(f"metrics: channel_ranges must be one finite number ≥ 0 per channel, "
                        f"got {list(channel_ranges)}")
    return ranges


def _check_channels(ranges: Tensor | None, channels: int) -> None:
    if ranges is not None and len(ranges) != channels:
        raise SdkdError(f"metrics: {len(ranges)} channel ranges for {channels} channels")


class PointwiseErrors:
    """MSE, MAE, RMSE, relative L2 and PSNR: overall, per lead time and per channel.

    Args:
        out_steps: T_out.
        data_range: max − min of the data (physical units), for the PSNR.
        channel_ranges: (C,) each channel's own range, for its PSNR; None: ``data_range``.
        mask: (H, W) bool, True on the pixels that count; None: all of them.
    """

    def __init__(self, out_steps: int, data_range: float, *,
                 channel_ranges: Sequence[float] | None = None,
                 mask: Tensor | None = None) -> None:
        self.out_steps = out_steps
        self.data_range = float(data_range)
        self.channel_ranges = _channel_ranges(channel_ranges)
        self.mask = check_mask(mask)
        z = lambda: torch.zeros(out_steps, dtype=torch.float64)  # noqa: E731
        self.sq, self.abs, self.rel_lead = z(), z(), z()
        self.pixels_per_lead = 0  # valid pixels per lead time seen so far (B · C · n summed)
        self.rel_sum = 0.0  # Σ over windows of ‖p − t‖ / ‖t‖ over (T, C, H, W)
        self.windows = 0
        # Per channel, allocated at the first batch, which sets C: Σ of squared and
        # absolute errors per (lead time, channel) (T, C), and Σ over windows of
        # ‖p − t‖ / ‖t‖ over (T, H, W) (C,). Summed in the order of the overall sums, so
        # that one channel's numbers are bit for bit the overall ones.
        self.channel_sq: Tensor | None = None
        self.channel_abs: Tensor | None = None
        self.channel_rel: Tensor | None = None

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        """Add a batch: (B, T_out, C, H, W) predictions and truths, physical units."""
        _check_pair(prediction, truth, "metrics")
        b, steps, channels, h, w = prediction.shape
        if steps != self.out_steps:
            raise SdkdError(f"metrics: expected {self.out_steps} lead times, got {steps}")
        if self.channel_sq is None or self.channel_abs is None or self.channel_rel is None:
            _check_channels(self.channel_ranges, channels)
            self.channel_sq = torch.zeros(steps, channels, dtype=torch.float64)
            self.channel_abs = torch.zeros(steps, channels, dtype=torch.float64)
            self.channel_rel = torch.zeros(channels, dtype=torch.float64)
        elif self.channel_sq.shape[1] != channels:
            raise SdkdError(f"metrics: expected {self.channel_sq.shape[1]} channels, got "
                            f"{channels}")
        tru = zero_padding(truth, self.mask)
        err = zero_padding(prediction, self.mask) - tru
        err2, tru2, err_abs = err.square(), tru.square(), err.abs()
        # The overall and per-lead sums reduce over (C, H, W) in one go, as they always did
        # (so that their values are bit for bit those of before); the channels apart.
        err_sq = err2.flatten(2).sum(2)  # (B, T)
        tru_sq = tru2.flatten(2).sum(2)  # (B, T)
        self.sq += err_sq.sum(0).cpu()
        self.abs += err_abs.flatten(2).sum(2).sum(0).cpu()
        self.rel_lead += (err_sq.sqrt() / tru_sq.sqrt()).sum(0).cpu()
        self.rel_sum += float((err_sq.sum(1).sqrt() / tru_sq.sum(1).sqrt()).sum())
        err_sq_c = err2.sum((-2, -1))  # (B, T, C)
        tru_sq_c = tru2.sum((-2, -1))  # (B, T, C)
        self.channel_sq += err_sq_c.sum(0).cpu()
        self.channel_abs += err_abs.sum((-2, -1)).sum(0).cpu()
        self.channel_rel += (err_sq_c.sum(1).sqrt() / tru_sq_c.sum(1).sqrt()).sum(0).cpu()
        self.pixels_per_lead += b * channels * _valid_pixels(self.mask, h, w)
        self.windows += b

    def compute(self) -> tuple[dict[str, float], dict[str, list[float]], list[dict[str, float]]]:
        """(overall, per lead time, per channel): dicts with keys mse, mae, rmse, rel_l2,
        psnr; per lead time lists of T_out values; per channel one dict per channel, with
        its ``data_range`` too."""
        if self.windows == 0 or self.channel_sq is None or self.channel_abs is None:
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
        channels = self.channel_sq.shape[1]
        # valid pixels of one channel: its share of the pixels, over every lead time
        pixels = self.pixels_per_lead // channels * self.out_steps
        ranges = (self.channel_ranges.tolist() if self.channel_ranges is not None
                  else [self.data_range] * channels)
        per_channel = [
            {"data_range": r, "mse": sq / pixels, "mae": ab / pixels,
             "rmse": math.sqrt(sq / pixels), "rel_l2": rel / self.windows,
             "psnr": psnr(sq / pixels, r)}
            for sq, ab, rel, r in zip(self.channel_sq.sum(0).tolist(),
                                      self.channel_abs.sum(0).tolist(),
                                      self.channel_rel.tolist(), ranges, strict=True)
        ]
        return overall, per_lead, per_channel


class SSIMAccumulator:
    """Mean SSIM over frames and channels, overall and per lead time (with
    ``data_range``), and per channel (with its own range of ``channel_ranges``).

    Args are those of :class:`PointwiseErrors`.
    """

    def __init__(self, out_steps: int, data_range: float, *,
                 channel_ranges: Sequence[float] | None = None,
                 mask: Tensor | None = None) -> None:
        if not data_range > 0:
            raise SdkdError(f"ssim: data_range must be > 0, got {data_range}")
        self.out_steps = out_steps
        self.data_range = float(data_range)
        self.channel_ranges = _channel_ranges(channel_ranges)
        self.mask = check_mask(mask)
        self.sums = torch.zeros(out_steps, dtype=torch.float64)
        self.channel_sums: Tensor | None = None
        self.frames_per_lead = 0
        self.windows = 0

    def _ranges(self, channels: int) -> Tensor:
        """Ranges for :func:`ssim_frames` on (B, T, C) frames: the overall range, and when
        the channels have their own, those too, as (2, 1, 1, C). A constant channel
        (range 0) is scored with 1 here and given NaN in :meth:`update`."""
        if self.channel_ranges is None:
            return torch.tensor(self.data_range, dtype=torch.float64)
        own = torch.where(self.channel_ranges > 0, self.channel_ranges, 1.0)
        return torch.stack((torch.full((channels,), self.data_range, dtype=torch.float64),
                            own))[:, None, None, :]

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        """Add a batch: (B, T_out, C, H, W) predictions and truths, physical units."""
        _check_pair(prediction, truth, "ssim")
        channels = prediction.shape[2]
        if self.channel_sums is None:
            _check_channels(self.channel_ranges, channels)
            self.channel_sums = torch.zeros(channels, dtype=torch.float64)
        elif len(self.channel_sums) != channels:
            raise SdkdError(f"ssim: expected {len(self.channel_sums)} channels, got {channels}")
        values = ssim_frames(prediction, truth, self._ranges(channels), mask=self.mask).cpu()
        if self.channel_ranges is None:
            overall = own = values  # (B, T, C)
        else:
            overall, own = values.unbind(0)
            own = own.masked_fill(self.channel_ranges == 0, math.nan)
        self.sums += overall.sum(dim=(0, 2))
        self.channel_sums += own.sum(dim=(0, 1))
        self.frames_per_lead += values.shape[-3] * channels
        self.windows += values.shape[-3]

    def compute(self) -> tuple[float, list[float], list[float]]:
        """(overall SSIM, per lead time (T_out,), per channel (C,))."""
        if self.frames_per_lead == 0 or self.channel_sums is None:
            raise SdkdError("ssim: no samples were accumulated")
        per_lead = self.sums / self.frames_per_lead
        per_channel = self.channel_sums / (self.windows * self.out_steps)
        return float(per_lead.mean()), per_lead.tolist(), per_channel.tolist()


class BandErrors:
    """Per-band MSE of the error and per-band energy of the truth (radial bands), per
    valid pixel when there is a ``mask`` (see the module docstring)."""

    def __init__(self, cutoffs: Sequence[float], *, mask: Tensor | None = None) -> None:
        self.bands = SpectralBands(cutoffs)
        self.mask = check_mask(mask)
        self.mse_sum = torch.zeros(self.bands.num_bands, dtype=torch.float64)
        self.energy_sum = torch.zeros(self.bands.num_bands, dtype=torch.float64)
        self.frames = 0

    def check_grid(self, h: int, w: int) -> None:
        """Raise SdkdError if some band holds no mode on an h × w grid."""
        self.bands.masks(h, w)

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        """Add fields (..., H, W) in physical units."""
        if prediction.shape != truth.shape:
            raise SdkdError(
                f"band errors: prediction and truth must have the same shape, got "
                f"{tuple(prediction.shape)} and {tuple(truth.shape)}"
            )
        p, t = zero_padding(prediction, self.mask), zero_padding(truth, self.mask)
        h, w = p.shape[-2:]
        # per valid pixel: the zero-filled fields' energy is spread over all h · w pixels
        scale = h * w / _valid_pixels(self.mask, h, w)
        frames = p[..., 0, 0].numel()
        self.mse_sum += self.bands.band_mse(p, t).cpu() * frames * scale
        self.energy_sum += self.bands.band_energy(t).flatten(1).sum(1).cpu() * scale
        self.frames += frames

    def compute(self) -> dict[str, list[float]]:
        """``cutoffs``, ``mse`` (K,) and ``truth_energy`` (K,), data units squared."""
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
        channel_ranges: (C,) max − min of each channel (physical units, ≥ 0), for the
            per-channel SSIM and PSNR; None: ``data_range`` for every channel.
        mask: (H, W) bool, True on the pixels that count (a padded grid); None: all.

    ``update(prediction, truth)`` takes (B, T_out, C, H, W) batches in physical units;
    ``compute()`` returns ``{"metrics": {...}, "per_lead_time": {...}, "per_channel":
    [{...} per channel], "band_errors": {...} | None}``, each metric block with keys mse,
    mae, rmse, rel_l2, ssim, psnr (each per-channel block also ``data_range``).
    """

    def __init__(
        self, out_steps: int, data_range: float, band_cutoffs: Sequence[float] | None = None,
        *, channel_ranges: Sequence[float] | None = None, mask: Tensor | None = None,
    ) -> None:
        if not (math.isfinite(data_range) and data_range > 0):
            raise SdkdError(f"metrics: data_range must be a finite number > 0, got {data_range}")
        scoring = {"channel_ranges": channel_ranges, "mask": mask}
        self.pointwise = PointwiseErrors(out_steps, data_range, **scoring)
        self.ssim = SSIMAccumulator(out_steps, data_range, **scoring)
        self.bands = BandErrors(band_cutoffs, mask=mask) if band_cutoffs is not None else None

    def update(self, prediction: Tensor, truth: Tensor) -> None:
        self.pointwise.update(prediction, truth)
        self.ssim.update(prediction, truth)
        if self.bands is not None:
            self.bands.update(prediction, truth)

    def compute(self) -> dict:
        overall, per_lead, per_channel = self.pointwise.compute()
        overall["ssim"], per_lead["ssim"], ssim_channel = self.ssim.compute()
        for values, ssim in zip(per_channel, ssim_channel, strict=True):
            values["ssim"] = ssim
        return {
            "metrics": {k: overall[k] for k in _ORDER},
            "per_lead_time": {k: per_lead[k] for k in _ORDER},
            "per_channel": [{k: values[k] for k in ("data_range", *_ORDER)}
                            for values in per_channel],
            "band_errors": self.bands.compute() if self.bands is not None else None,
        }
