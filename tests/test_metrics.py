"""Streaming metrics and spectra against direct formulas and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sdkd.distill.bands import SpectralBands
from sdkd.errors import SdkdError
from sdkd.evaluate.metrics import ForecastMetrics, psnr, ssim_frames
from sdkd.evaluate.spectra import SpectrumAccumulator, radial_spectrum, shell_count


def smooth(shape, seed=0, scale=4.0):
    """Random fields, low-pass filtered (Gaussian in |k|), float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    h, w = shape[-2:]
    ky = torch.fft.fftfreq(h, dtype=torch.float64) * h
    kx = torch.fft.rfftfreq(w, dtype=torch.float64) * w
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    return torch.fft.irfft2(torch.fft.rfft2(x) * torch.exp(-k2 / scale**2), s=(h, w)) * 10


def pair(shape=(3, 4, 2, 24, 20), seed=0):
    truth = smooth(shape, seed) + 1.0
    prediction = truth + 0.3 * smooth(shape, seed + 1, scale=8.0)
    return prediction, truth


def data_range_of(*fields):
    return float(max(f.max() for f in fields) - min(f.min() for f in fields))


def test_identical_fields():
    _, truth = pair()
    metrics = ForecastMetrics(truth.shape[1], data_range_of(truth), [3.0])
    metrics.update(truth, truth.clone())
    out = metrics.compute()
    for key in ("mse", "mae", "rmse", "rel_l2"):
        assert out["metrics"][key] == 0
        assert out["per_lead_time"][key] == [0.0] * truth.shape[1]
    assert out["metrics"]["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert out["metrics"]["psnr"] == math.inf  # written as null in the JSON file
    assert all(p == math.inf for p in out["per_lead_time"]["psnr"])
    assert out["band_errors"]["mse"] == [0.0, 0.0]


def test_pointwise_against_numpy():
    prediction, truth = pair()
    p, t = prediction.numpy(), truth.numpy()
    dr = data_range_of(prediction, truth)
    metrics = ForecastMetrics(t.shape[1], dr)
    metrics.update(prediction, truth)
    out = metrics.compute()
    err = p - t
    mse = np.mean(err**2)
    assert out["metrics"]["mse"] == pytest.approx(mse, rel=1e-12)
    assert out["metrics"]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
    assert out["metrics"]["rmse"] == pytest.approx(np.sqrt(mse), rel=1e-12)
    per_sample = [np.linalg.norm(err[i]) / np.linalg.norm(t[i]) for i in range(len(t))]
    assert out["metrics"]["rel_l2"] == pytest.approx(np.mean(per_sample), rel=1e-12)
    lead = [
        np.mean([np.linalg.norm(err[i, j]) / np.linalg.norm(t[i, j]) for i in range(len(t))])
        for j in range(t.shape[1])
    ]
    np.testing.assert_allclose(out["per_lead_time"]["rel_l2"], lead, rtol=1e-12)
    np.testing.assert_allclose(out["per_lead_time"]["mse"], np.mean(err**2, axis=(0, 2, 3, 4)),
                               rtol=1e-12)
    assert out["metrics"]["psnr"] == pytest.approx(
        peak_signal_noise_ratio(t, p, data_range=dr), abs=1e-4)
    for j in range(t.shape[1]):
        assert out["per_lead_time"]["psnr"][j] == pytest.approx(
            peak_signal_noise_ratio(t[:, j], p[:, j], data_range=dr), abs=1e-4)


def _skimage_ssim(prediction, truth, dr):
    """scikit-image's SSIM of each (H, W) frame of (..., H, W) float64 tensors."""
    out = np.empty(prediction.shape[:-2])
    for idx in np.ndindex(*out.shape):
        out[idx] = structural_similarity(truth[idx].numpy(), prediction[idx].numpy(),
                                         gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=dr)
    return out


def test_ssim_matches_scikit_image():
    prediction, truth = pair((2, 3, 2, 32, 28))
    dr = data_range_of(prediction, truth)
    ours = ssim_frames(prediction, truth, dr)
    assert ours.shape == (2, 3, 2) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), _skimage_ssim(prediction, truth, dr), rtol=0,
                               atol=1e-8)
    metrics = ForecastMetrics(3, dr)
    metrics.update(prediction, truth)
    out = metrics.compute()
    assert out["metrics"]["ssim"] == pytest.approx(float(ours.mean()), abs=1e-12)
    np.testing.assert_allclose(out["per_lead_time"]["ssim"], ours.mean(dim=(0, 2)).numpy())
    assert 0 < out["metrics"]["ssim"] < 1


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("noise", (4, 64, 64)), ("noise", (3, 11, 11)), ("noise", (2, 12, 40)),
     ("smooth", (4, 64, 64)), ("smooth", (3, 17, 31)), ("offset", (3, 32, 32))],
)
def test_ssim_against_scikit_image_fields(kind, shape):
    """Own separable SSIM = scikit-image on white noise, smooth fields, the smallest grid
    (11 px: one interior pixel), non-square grids and data far from zero (cancellation)."""
    gen = torch.Generator().manual_seed(len(kind) + shape[-1])
    if kind == "noise":
        truth = torch.rand(shape, generator=gen, dtype=torch.float64)
        prediction = torch.rand(shape, generator=gen, dtype=torch.float64)
    else:
        truth = smooth(shape, seed=1)
        prediction = 0.8 * truth + 0.5 * smooth(shape, seed=2, scale=10.0)
        if kind == "offset":  # e.g. temperatures in kelvin: small variations on 300
            truth, prediction = truth * 0.01 + 300, prediction * 0.01 + 300
    dr = data_range_of(prediction, truth)
    ours = ssim_frames(prediction, truth, dr)
    # Both compute σ² = E[x²] − μ² in float64; at 300 ± 0.05 the two sums round apart by
    # ~1e-8 in SSIM (still far inside the 1e-4 the evaluation needs).
    atol = 1e-6 if kind == "offset" else 1e-8
    np.testing.assert_allclose(ours.numpy(), _skimage_ssim(prediction, truth, dr), rtol=0,
                               atol=atol)


def test_ssim_float32_and_small_grid():
    prediction, truth = pair((1, 1, 1, 16, 16))
    dr = data_range_of(prediction, truth)
    assert float(ssim_frames(prediction.float(), truth.float(), dr)) == pytest.approx(
        float(ssim_frames(prediction, truth, dr)), abs=1e-5)
    assert math.isnan(float(ssim_frames(prediction[..., :8, :8], truth[..., :8, :8], dr)))
    with pytest.raises(SdkdError, match="data_range"):
        ssim_frames(prediction, truth, 0.0)


def test_band_errors_sum_to_mse():
    prediction, truth = pair()
    metrics = ForecastMetrics(truth.shape[1], data_range_of(prediction, truth), [2.0, 5.0])
    metrics.update(prediction, truth)
    out = metrics.compute()
    bands = out["band_errors"]
    assert bands["cutoffs"] == [2.0, 5.0] and len(bands["mse"]) == 3
    assert sum(bands["mse"]) == pytest.approx(out["metrics"]["mse"], rel=1e-10)
    assert sum(bands["truth_energy"]) == pytest.approx(float(truth.square().mean()), rel=1e-10)
    reference = SpectralBands([2.0, 5.0]).band_mse(prediction, truth)
    np.testing.assert_allclose(bands["mse"], reference.numpy(), rtol=1e-10)


def test_streaming_equals_one_shot():
    prediction, truth = pair((7, 3, 2, 16, 16))
    dr = data_range_of(prediction, truth)
    whole, parts = ForecastMetrics(3, dr, [3.0]), ForecastMetrics(3, dr, [3.0])
    whole.update(prediction, truth)
    for lo, hi in ((0, 2), (2, 3), (3, 7)):
        parts.update(prediction[lo:hi], truth[lo:hi])
    a, b = whole.compute(), parts.compute()
    for block in ("metrics", "per_lead_time", "band_errors"):
        for key, value in a[block].items():
            np.testing.assert_allclose(b[block][key], value, rtol=1e-12, atol=0, err_msg=key)

    one, many = SpectrumAccumulator(), SpectrumAccumulator()
    one.update(truth)
    for lo, hi in ((0, 4), (4, 7)):
        many.update(truth[lo:hi])
    np.testing.assert_allclose(many.compute()[1], one.compute()[1], rtol=1e-12)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (24, 40), (17, 31)])
def test_spectrum_of_one_mode(h, w):
    y = torch.arange(h, dtype=torch.float64)[:, None] / h
    x = torch.arange(w, dtype=torch.float64)[None, :] / w
    field = torch.cos(2 * math.pi * (3 * x + 4 * y))
    spectrum = radial_spectrum(field)
    assert int(spectrum.argmax()) == 5
    assert float(spectrum[5]) == pytest.approx(0.5, rel=1e-12)
    assert float(spectrum.sum()) == pytest.approx(0.5, rel=1e-12)  # Parseval: mean(f²)
    assert spectrum.shape == (shell_count(h, w),)

    acc = SpectrumAccumulator()
    acc.update(torch.stack([field, 2 * field]))  # mean energy (0.5 + 2) / 2
    k, energy = acc.compute()
    assert k == list(range(len(energy))) and energy[5] == pytest.approx(1.25, rel=1e-12)


def test_spectrum_parseval_random():
    fields = smooth((5, 20, 20), scale=6.0)
    spectrum = radial_spectrum(fields)
    np.testing.assert_allclose(spectrum.sum(-1).numpy(), fields.square().mean((-2, -1)).numpy(),
                               rtol=1e-12)


def test_psnr_and_bad_input():
    assert psnr(0.0, 2.0) == math.inf
    assert psnr(0.04, 2.0) == pytest.approx(20.0)
    with pytest.raises(SdkdError, match="same shape"):
        ForecastMetrics(2, 1.0).update(torch.zeros(1, 2, 1, 16, 16), torch.zeros(1, 2, 1, 16, 8))
    with pytest.raises(SdkdError, match="data_range"):
        ForecastMetrics(2, 0.0)
    with pytest.raises(SdkdError, match="no samples"):
        ForecastMetrics(2, 1.0).compute()
    spectrum = SpectrumAccumulator()
    spectrum.update(torch.zeros(2, 8, 8))
    with pytest.raises(SdkdError, match="grid changed"):
        spectrum.update(torch.zeros(2, 8, 12))


def test_ssim_chunking_does_not_change_values(monkeypatch):
    import sdkd.evaluate.metrics as metrics

    prediction, truth = pair((2, 3, 2, 16, 16))
    dr = data_range_of(prediction, truth)
    whole = ssim_frames(prediction, truth, dr)
    monkeypatch.setattr(metrics, "_SSIM_BYTES", 1)  # one frame per chunk
    torch.testing.assert_close(ssim_frames(prediction, truth, dr), whole, rtol=0, atol=1e-14)
