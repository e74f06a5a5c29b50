"""Radial frequency bands of 2-D fields: masks, band-limited fields, band energies.

Conventions (the SDKD paper leaves them open; these are ours):

* **Wavenumbers in cycles per domain.** For a field sampled on an H × W grid that covers
  the whole domain, the integer FFT frequencies are ``ky = fftfreq(H) · H`` (0, 1, …,
  −1) along H and ``kx = rfftfreq(W) · W`` (0, 1, …, ⌊W/2⌋) along W, i.e. the number
  of periods of the mode across the domain along each axis. The band split uses the
  radial wavenumber |k| = √(kx² + ky²). On a non-square grid both components are still
  counted per domain length along their own axis, so |k| is a *domain-relative* radial
  wavenumber: it is the physical isotropic wavenumber only when the domain's sides are
  equal (the unit torus of the Navier–Stokes data), and a cutoff means the same
  physical scales on every grid that covers the same domain (a 64 × 64 frame and an
  8 × 8 latent of it), which is what lets one cutoff serve both.
* **Half-open bands.** Cutoffs c₀ < c₁ < … < c_{K−2}, all > 0, give K bands:
  band 0 is |k| < c₀ (it always holds the mean mode k = 0), band i is
  c_{i−1} ≤ |k| < c_i, and the last band is |k| ≥ c_{K−2}. A mode lying exactly on a
  cutoff belongs to the higher band (|k| = 4 is in band 1 for the cutoff 4). Integer
  radii such as √16 are computed exactly in float64, so this rule is not at the
  mercy of rounding.
* **Real fields, rfft half-plane.** Masks live on the ``rfft2`` half-plane
  (H, ⌊W/2⌋ + 1). Because each mask is a function of |k| only and |k| is unchanged by
  k → −k (including the Nyquist row −H/2 and the Nyquist column W/2 of even sizes,
  which are their own conjugate partners), the masks are Hermitian-consistent: on the
  full spectrum they are K disjoint, conjugate-symmetric sets that cover every mode.
  Hence the band-limited fields are real, sum back to the input exactly (up to float
  rounding) and are mutually orthogonal, so their energies add up.
* **Energy per pixel.** ``band_energy`` is the mean over the (H, W) grid of the squared
  band-limited field, so Σ_b band_energy_b(x) = mean(x²) over the grid. It is computed
  in the Fourier domain with Parseval's identity: with ``rfft2(x, norm="forward")``,
  mean(x²) = Σ over the full spectrum of |X|²; on the half-plane, the columns
  1 … ⌈W/2⌉ − 1 stand for themselves and their conjugate columns and count twice,
  column 0 and (for even W) the Nyquist column W/2 count once.
* **Validity masks.** A field on a grid padded to the models' size comes with a mask
  (H, W), True on the data's pixels. ``band_energy`` and ``band_mse`` then set the
  padded pixels to zero *before* the FFT (so nothing there, not even a NaN, reaches a
  band) and count energy per *valid* pixel: the sum over the grid is divided by the
  number of valid pixels instead of H · W, so Σ_b band_mse_b is the MSE over the valid
  pixels, as it is the MSE over all pixels without a mask. A band-limited part of the
  zero-filled field does spread onto the padding (a band filter is not local); it is
  the split of the valid-pixel difference that the bands measure, and by Parseval the
  bands together count that difference and nothing else.
* **Empty bands are errors.** A grid too coarse for a cutoff (no mode with |k| at or
  above the last cutoff) or two cutoffs so close that no integer radius lies between
  them leaves a band with no mode at all; building masks for that grid raises
  :class:`~sdkd.errors.SdkdError` naming the grid and the cutoff.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from sdkd.errors import SdkdError

__all__ = [
    "SpectralBands",
    "check_mask",
    "radial_wavenumber",
    "rfft_column_weights",
    "validate_cutoffs",
]


def _check_grid(h: int, w: int) -> None:
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise SdkdError(f"grid: expected positive integer sizes (H, W), got ({h}, {w})")


def radial_wavenumber(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """|k| = √(kx² + ky²) in cycles per domain on the rfft2 half-plane, shape (h, w//2+1).

    ``ky`` runs over ``fftfreq(h) · h`` (rows) and ``kx`` over ``rfftfreq(w) · w``
    (columns), matching the layout of ``torch.fft.rfft2`` of an (…, h, w) field. Computed
    in float64, so integer radii (√25 = 5) are exact before any cast to ``dtype``.
    """
    _check_grid(h, w)
    ky = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64)
    kx = torch.fft.rfftfreq(w, d=1.0 / w, dtype=torch.float64)
    # fftfreq(n, d=1/n) is i/(n·(1/n)) and may carry one ulp of rounding: snap to integers.
    ky, kx = ky.round(), kx.round()
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return k.to(device=device, dtype=dtype)


def rfft_column_weights(
    w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Parseval weight of each rfft column, shape (w//2+1,): 2 for columns that stand for
    a conjugate pair, 1 for column 0 and, when ``w`` is even, the Nyquist column w/2."""
    _check_grid(1, w)
    weights = torch.full((w // 2 + 1,), 2.0, dtype=dtype, device=device)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights


def check_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """``mask`` if it is a validity mask for the field ``like`` (…, H, W): a bool tensor of
    shape (H, W) on ``like``'s device; raises SdkdError naming ``name`` otherwise.

    Only shape, dtype and device are checked (no host sync): that the mask leaves a valid
    pixel is the dataset's check, done once when the file is read.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        what = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise SdkdError(f"{name}: expected a bool tensor (H, W), True on valid pixels, got {what}")
    if mask.shape != like.shape[-2:]:
        raise SdkdError(
            f"{name}: expected the grid {tuple(like.shape[-2:])} of the field, got "
            f"{tuple(mask.shape)}"
        )
    if mask.device != like.device:
        raise SdkdError(f"{name}: is on {mask.device}, the field on {like.device}")
    return mask


def _zero_filled(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` with its padded pixels set to 0 (``where``, not a product: garbage there,
    even NaN or inf, reaches neither the value nor the gradient)."""
    return x if mask is None else torch.where(check_mask(mask, x), x, 0.0)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is of a lower precision (bf16/fp16 under autocast)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _per_valid_pixel(per_grid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A mean over the (H, W) grid of a zero-filled field → the mean over its valid pixels."""
    if mask is None:
        return per_grid
    return per_grid * mask.numel() / mask.sum(dtype=per_grid.dtype)


def validate_cutoffs(cutoffs: Sequence[float] | None, key: str = "cutoffs") -> tuple[float, ...]:
    """Check cutoffs (cycles per domain): a non-empty, strictly increasing list of finite
    numbers > 0. Returns them as a tuple of floats; raises SdkdError naming ``key``."""
    expected = f"{key}: expected a non-empty list of increasing wavenumbers > 0 (cycles per domain)"
    if cutoffs is None or isinstance(cutoffs, str | bytes):
        raise SdkdError(f"{expected}, got {cutoffs!r}")
    try:
        items = list(cutoffs)
    except TypeError:
        raise SdkdError(f"{expected}, got {cutoffs!r}") from None
    values: list[float] = []
    for c in items:
        if isinstance(c, bool):
            raise SdkdError(f"{key}: expected numbers, got {c!r} in {items!r}")
        try:
            v = float(c)
        except (TypeError, ValueError):
            raise SdkdError(f"{key}: expected numbers, got {c!r} in {items!r}") from None
        values.append(v)
    if not values:
        raise SdkdError(
            f"{key}: expected at least one cutoff (cycles per domain) to split into bands, got []"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise SdkdError(f"{key}: expected finite wavenumbers > 0, got {values}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise SdkdError(f"{key}: expected strictly increasing wavenumbers, got {values}")
    return tuple(values)


class SpectralBands:
    """Split real 2-D fields into K radial frequency bands (see the module docstring).

    Args:
        cutoffs: strictly increasing radial wavenumbers > 0, in cycles per domain;
            K = len(cutoffs) + 1 bands.

    Masks are built lazily per (H, W, device, dtype) and cached, so one instance serves
    grids of any size (a latent and an output frame) on any device. All methods act on
    the last two dimensions and accept any number of leading dimensions.
    """

    def __init__(self, cutoffs: Sequence[float]):
        self.cutoffs: tuple[float, ...] = validate_cutoffs(cutoffs)
        self._masks: dict[tuple, torch.Tensor] = {}
        self._weighted: dict[tuple, torch.Tensor] = {}

    @property
    def num_bands(self) -> int:
        return len(self.cutoffs) + 1

    def __len__(self) -> int:
        return self.num_bands

    def __repr__(self) -> str:
        return f"SpectralBands(cutoffs={list(self.cutoffs)})"

    def band_index(self, h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Band of every rfft2 mode, int64 of shape (h, w//2+1)."""
        k = radial_wavenumber(h, w, device=device)
        edges = torch.tensor(self.cutoffs, dtype=torch.float64, device=k.device)
        # right=True: index i such that edges[i-1] <= k < edges[i] (half-open bands).
        return torch.bucketize(k, edges, right=True)

    def masks(
        self,
        h: int,
        w: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """0/1 masks of shape (K, h, w//2+1) on the rfft2 half-plane; they sum to exactly 1.

        Raises SdkdError when a band holds no mode on this grid.
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (int(h), int(w), device, dtype)
        cached = self._masks.get(key)
        if cached is not None:
            return cached
        index = self.band_index(h, w, device=device)
        bands = torch.arange(self.num_bands, device=device)
        masks = (index[None] == bands[:, None, None]).to(dtype)
        counts = masks.flatten(1).sum(1).tolist()
        for b, count in enumerate(counts):
            if count == 0:
                kmax = math.hypot(h // 2, w // 2)
                if b == self.num_bands - 1:
                    where = f"cutoff {self.cutoffs[-1]:g} is above the largest |k| = {kmax:.3g}"
                else:
                    lo = f"{self.cutoffs[b - 1]:g}" if b > 0 else "0"
                    where = f"no mode has {lo} ≤ |k| < {self.cutoffs[b]:g}"
                raise SdkdError(
                    f"cutoffs: band {b} is empty on the {h}×{w} grid ({where}); expected "
                    f"cutoffs (cycles per domain) that leave every band at least one mode"
                )
        self._masks[key] = masks
        return masks

    def weighted_masks(
        self,
        h: int,
        w: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Masks times the Parseval column weights (1 or 2), shape (K, h, w//2+1)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (int(h), int(w), device, dtype)
        cached = self._weighted.get(key)
        if cached is None:
            masks = self.masks(h, w, device, dtype)
            cached = masks * rfft_column_weights(w, device=device, dtype=dtype)
            self._weighted[key] = cached
        return cached

    # ------------------------------------------------------------------ transforms

    @staticmethod
    def _check_field(x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise SdkdError(f"{name}: expected a tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise SdkdError(f"{name}: expected a field of shape (..., H, W), got {tuple(x.shape)}")
        if x.is_complex() or not x.is_floating_point():
            raise SdkdError(f"{name}: expected a real floating-point tensor, got {x.dtype}")
        # The FFT has no bfloat16 kernels and float16 only for powers of two: upcast.
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Band-limited fields: (…, H, W) real → (K, …, H, W), summing back to ``x``."""
        x = self._check_field(x)
        h, w = x.shape[-2:]
        spectrum = torch.fft.rfft2(x)
        masks = self.masks(h, w, x.device, x.dtype)
        extra = (1,) * (x.ndim - 2)
        masked = spectrum.unsqueeze(0) * masks.view(masks.shape[0], *extra, *masks.shape[1:])
        return torch.fft.irfft2(masked, s=(h, w))

    def _power(self, x: torch.Tensor) -> torch.Tensor:
        """|X|² of ``rfft2(x, norm="forward")``: sums to mean(x²) with column weights."""
        spectrum = torch.fft.rfft2(x, norm="forward")
        # view_as_real keeps forward and backward to one real pass each (.real/.imag
        # would each materialise a complex gradient).
        return torch.view_as_real(spectrum).square().sum(-1)

    def band_energy(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Energy per pixel of each band, (…, H, W) → (K, …): mean over (H, W) of x_b².

        Computed in float32 at least, also under autocast (bf16/fp16 inputs are upcast).
        Σ_b band_energy(x)_b = mean(x²) over the grid (Parseval; no inverse FFT). With
        ``mask`` (bool (H, W), True on valid pixels) ``x`` is zero-filled outside it and
        the energy is per valid pixel, so the bands sum to mean(x²) over the valid pixels
        (see the module docstring).
        """
        x = _zero_filled(_at_least_float32(self._check_field(x)), mask)
        h, w = x.shape[-2:]
        power = self._power(x)
        weighted = self.weighted_masks(h, w, x.device, power.dtype)
        # Autocast runs einsum (a batched matmul) in bf16 on a GPU: band energies, the
        # divisors of normalised band losses, would keep 3 significant digits.
        with torch.autocast(device_type=x.device.type, enabled=False):
            energy = torch.einsum("khw,...hw->k...", weighted, power)
        return _per_valid_pixel(energy, mask)

    def band_mse(
        self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-band mean squared error, shape (K,): band_energy(a − b, mask) averaged over
        all leading dimensions, so Σ_b band_mse = F.mse_loss(a, b), or with ``mask`` the
        MSE over the valid pixels. One rfft2, no inverse."""
        a = self._check_field(a, "a")
        b = self._check_field(b, "b")
        if a.shape != b.shape:
            raise SdkdError(
                f"band_mse: expected tensors of the same shape, got {tuple(a.shape)} "
                f"and {tuple(b.shape)}"
            )
        # Zero-filling the difference zero-fills both fields: the FFT is linear.
        diff = _zero_filled(a - b, mask)
        h, w = diff.shape[-2:]
        power = self._power(diff).reshape(-1, h, w // 2 + 1)
        power = power.sum(0) / power.shape[0]
        weighted = self.weighted_masks(h, w, diff.device, power.dtype)
        return _per_valid_pixel((weighted * power).flatten(1).sum(1), mask)
