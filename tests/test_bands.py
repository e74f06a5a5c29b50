"""Radial spectral bands: partition, reconstruction, orthogonality, Parseval."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sdkd.distill.bands import SpectralBands, radial_wavenumber
from sdkd.errors import SdkdError

GRIDS = [(32, 32), (17, 17), (16, 24), (15, 10), (9, 32)]


def _field(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def test_radial_wavenumber_layout():
    k = radial_wavenumber(8, 6)
    assert k.shape == (8, 4)
    assert k[0, 0] == 0
    assert k[0, 3] == 3  # Nyquist column of an even W
    assert k[4, 0] == 4  # Nyquist row −H/2 of an even H
    assert k[-1, 1] == math.sqrt(2)  # ky = −1, kx = 1
    assert k[3, 2] == math.sqrt(13)


def test_masks_partition_the_half_plane():
    bands = SpectralBands([4, 8])
    masks = bands.masks(32, 32, "cpu")
    assert masks.shape == (3, 32, 17)
    assert torch.equal(masks.sum(0), torch.ones(32, 17))
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert (masks.flatten(1).sum(1) > 0).all()
    k = radial_wavenumber(32, 32)
    assert masks[0][k < 4].all() and not masks[0][k >= 4].any()
    assert masks[1][(k >= 4) & (k < 8)].all() and not masks[1][(k < 4) | (k >= 8)].any()
    assert masks[2][k >= 8].all()
    # Half-open: |k| = 4 exactly is in band 1, and the mean mode in band 0.
    assert masks[1, 0, 4] == 1 and masks[0, 0, 4] == 0 and masks[0, 0, 0] == 1
    # Cached per grid.
    assert bands.masks(32, 32, "cpu") is masks


@pytest.mark.parametrize(("h", "w"), GRIDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_split_reconstructs_and_is_orthogonal(h, w, dtype, tol):
    bands = SpectralBands([2, 3.5, 5])
    x = _field((2, 3, h, w), dtype)
    parts = bands.split(x)
    assert parts.shape == (4, 2, 3, h, w)
    assert parts.dtype == dtype
    torch.testing.assert_close(parts.sum(0), x, atol=tol, rtol=0)
    # Mutually orthogonal per field: the Gram matrix of the bands is diagonal.
    flat = parts.flatten(-2).double()
    gram = torch.einsum("a...n,b...n->...ab", flat, flat) / (h * w)
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=-2, dim2=-1))
    assert off.abs().max() < tol * 10
    # Energies add up and equal the mean square of the split fields.
    energy = bands.band_energy(x)
    assert energy.shape == (4, 2, 3)
    torch.testing.assert_close(energy.sum(0), x.square().mean((-2, -1)), atol=tol, rtol=tol)
    torch.testing.assert_close(energy, parts.square().mean((-2, -1)), atol=tol, rtol=tol)


def test_single_fourier_mode_lands_in_its_band():
    n = 32
    coords = torch.arange(n, dtype=torch.float64) / n
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    field = torch.cos(2 * math.pi * (3 * x + 4 * y))  # |k| = 5
    for cutoffs, band in [([4, 8], 1), ([5, 8], 1), ([2, 5], 2), ([6], 0)]:
        bands = SpectralBands(cutoffs)
        parts = bands.split(field)
        others = [b for b in range(bands.num_bands) if b != band]
        torch.testing.assert_close(parts[band], field, atol=1e-12, rtol=0)
        assert parts[others].abs().max() < 1e-12
        energy = bands.band_energy(field)
        assert energy[band] == pytest.approx(0.5, abs=1e-12)
        assert energy[others].abs().max() < 1e-12


def test_nyquist_modes_are_kept_whole():
    # The checkerboard (−1)^(i+j) sits on the Nyquist row and column of an even grid.
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    field = ((-1.0) ** (i + j)).double()
    bands = SpectralBands([3])
    parts = bands.split(field)
    torch.testing.assert_close(parts[1], field, atol=1e-12, rtol=0)
    torch.testing.assert_close(bands.band_energy(field), torch.tensor([0.0, 1.0]).double())


@pytest.mark.parametrize(("h", "w"), GRIDS)
def test_band_mse_sums_to_mse(h, w):
    bands = SpectralBands([3, 6])
    a = _field((4, 2, h, w), torch.float32, seed=1)
    b = _field((4, 2, h, w), torch.float32, seed=2)
    per_band = bands.band_mse(a, b)
    assert per_band.shape == (3,)
    assert (per_band > 0).all()
    torch.testing.assert_close(per_band.sum(), F.mse_loss(a, b), rtol=1e-5, atol=0)
    torch.testing.assert_close(
        per_band, bands.band_energy(a - b).mean((1, 2)), rtol=1e-5, atol=1e-7
    )


def test_band_mse_gradient_matches_mse():
    bands = SpectralBands([4])
    a = _field((2, 16, 16), seed=3).requires_grad_()
    b = _field((2, 16, 16), seed=4)
    bands.band_mse(a, b).sum().backward()
    expected = 2 * (a - b).detach() / a.numel()
    torch.testing.assert_close(a.grad, expected, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize(
    ("cutoffs", "match"),
    [
        ([8, 4], "increasing"),
        ([4, 4], "increasing"),
        ([0, 4], "> 0"),
        ([-1], "> 0"),
        ([], "at least one"),
        (None, "cutoffs"),
        (["low"], "numbers"),
        ([float("nan")], "> 0"),
    ],
)
def test_bad_cutoffs(cutoffs, match):
    with pytest.raises(SdkdError, match="cutoffs") as info:
        SpectralBands(cutoffs)
    assert match in str(info.value)


def test_cutoff_beyond_grid_is_an_empty_band():
    bands = SpectralBands([4, 8])
    bands.masks(32, 32)  # fine
    with pytest.raises(SdkdError, match=r"8×8 grid.*cutoff 8"):
        bands.masks(8, 8)  # largest |k| = √32 ≈ 5.66 < 8
    with pytest.raises(SdkdError, match=r"band 1 is empty"):
        SpectralBands([4.3, 4.4]).masks(32, 32)  # √18 ≈ 4.24 < no radius < √20 ≈ 4.47
    with pytest.raises(SdkdError, match="8×8"):
        bands.band_mse(torch.zeros(8, 8), torch.ones(8, 8))


def test_shape_mismatch_and_non_real():
    bands = SpectralBands([2])
    with pytest.raises(SdkdError, match="same shape"):
        bands.band_mse(torch.zeros(8, 8), torch.zeros(8, 9))
    with pytest.raises(SdkdError, match="real"):
        bands.split(torch.zeros(8, 8, dtype=torch.complex64))


def test_band_energy_is_float32_under_autocast():
    """Autocast would run the band sum (an einsum, i.e. a batched matmul) in bf16."""
    bands = SpectralBands([4.0])
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = bands.band_energy(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = bands.band_energy(x)
        from_bf16 = bands.band_energy(x.bfloat16())
    assert under.dtype == from_bf16.dtype == torch.float32
    torch.testing.assert_close(under, exact, rtol=1e-6, atol=1e-7)
    assert from_bf16.shape == exact.shape
