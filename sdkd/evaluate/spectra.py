"""Radially averaged (shell-summed) energy spectra of 2-D fields, streamed over batches.

Wavenumbers are in cycles per domain, as in :mod:`sdkd.distill.bands`: a field on an
H × W grid has modes (ky, kx) with ky ∈ fftfreq(H)·H, kx ∈ fftfreq(W)·W and radius
|k| = √(kx² + ky²). Shell n collects the modes with n − 0.5 ≤ |k| < n + 0.5, so
n = 0, 1, …, round(√((H/2)² + (W/2)²)); the shells beyond min(H, W)/2 are only partly
inside the grid's spectrum (the corners), as usual.

The energy of a shell is the sum of |x̂(k)|² over its modes with
x̂ = ``rfft2(x, norm="forward")`` (both halves of the spectrum counted), so, by
Parseval, the shells of one field sum to mean(x²) over the grid: the spectrum is an
energy *per pixel* split by scale, in the field's units squared. This is the
angle-integrated spectrum E(k) of turbulence plots (e.g. k⁻³ for 2-D enstrophy
cascades); "radially averaged" refers to averaging over directions of k. The
accumulator averages it over every field it sees (windows, lead times, channels).

A single Fourier mode cos 2π(3x + 4y) on the unit square puts all of its energy (½) in
shell 5.

On a padded grid (a validity ``mask``, see :mod:`sdkd.evaluate.metrics`) the accumulator
takes the spectrum of the field with its padded pixels set to 0, times H·W / n for n
valid pixels: the shells then sum to mean(x²) over the valid pixels, and the error's to
the masked MSE. (Zero-filling is a window: it leaks some energy across shells, as any
non-periodic domain does.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from sdkd.distill.bands import radial_wavenumber, rfft_column_weights
from sdkd.errors import SdkdError
from sdkd.evaluate.metrics import check_mask, zero_padding

__all__ = ["SpectrumAccumulator", "radial_spectrum", "shell_count", "shell_matrix"]


def shell_count(h: int, w: int) -> int:
    """Number of shells (0 … n_max) of an h × w grid."""
    k = radial_wavenumber(h, w)
    return int(torch.floor(k.max() + 0.5)) + 1


def shell_matrix(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """(h · (w//2+1), n_shells) matrix: the Parseval weight (1 or 2) of each rfft2 mode in
    its shell's column, so ``power.flatten(-2) @ shell_matrix`` is the shell energy."""
    k = radial_wavenumber(h, w)  # float64, exact integer radii
    # |k| is √integer, never n + ½ exactly: floor(|k| + ½) is the nearest integer.
    shell = torch.floor(k + 0.5).long()
    weights = rfft_column_weights(w).expand_as(k)
    matrix = torch.zeros(k.numel(), shell_count(h, w), dtype=torch.float64)
    matrix[torch.arange(k.numel()), shell.flatten()] = weights.flatten()
    return matrix.to(device=device, dtype=dtype)


def radial_spectrum(x: Tensor) -> Tensor:
    """Shell energies of real fields: (..., H, W) → (..., n_shells), float64.

    Σ over shells = mean(x²) over the grid (Parseval).
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or x.is_complex():
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise SdkdError(f"spectrum: expected real fields of shape (..., H, W), got {got}")
    h, w = x.shape[-2:]
    spectrum = torch.fft.rfft2(x.to(torch.float64), norm="forward")
    power = torch.view_as_real(spectrum).square().sum(-1)  # (..., h, w//2+1)
    matrix = shell_matrix(h, w, device=x.device)
    return power.flatten(-2) @ matrix


class SpectrumAccumulator:
    """Mean shell-energy spectrum over every (H, W) field passed to :meth:`update`.

    ``mask``: (H, W) bool, True on the pixels that count; None: all of them.
    """

    def __init__(self, *, mask: Tensor | None = None) -> None:
        self.mask = check_mask(mask)
        self.sums: Tensor | None = None
        self.fields = 0
        self.grid: tuple[int, int] | None = None
        self._matrix: Tensor | None = None

    def update(self, x: Tensor) -> None:
        """Add fields (..., H, W); every call must use the same grid."""
        if x.ndim < 2:
            raise SdkdError(f"spectrum: expected fields of shape (..., H, W), got {tuple(x.shape)}")
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        if self.grid is None:
            self.grid = grid
        elif grid != self.grid:
            raise SdkdError(f"spectrum: grid changed from {self.grid} to {grid}")
        h, w = grid
        if self._matrix is None or self._matrix.device != x.device:
            self._matrix = shell_matrix(h, w, device=x.device)
        spectrum = torch.fft.rfft2(zero_padding(x, self.mask), norm="forward")
        power = torch.view_as_real(spectrum).square().sum(-1).reshape(-1, h * (w // 2 + 1))
        batch = (power.sum(0) @ self._matrix).cpu()
        if self.mask is not None:  # per valid pixel
            batch *= h * w / int(self.mask.sum())
        self.sums = batch if self.sums is None else self.sums + batch
        self.fields += power.shape[0]

    def compute(self) -> tuple[list[int], list[float]]:
        """(k, mean energy per shell)."""
        if self.sums is None or self.fields == 0:
            raise SdkdError("spectrum: no fields were accumulated")
        return list(range(self.sums.numel())), (self.sums / self.fields).tolist()
