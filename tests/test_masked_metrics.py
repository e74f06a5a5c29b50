"""Metrics on a padded grid: only the valid pixels of the mask count.

The defining property: a forecast equal to the truth on the valid pixels scores perfect
whatever it predicts on the padding. And on a rectangular valid region every masked
metric is the metric of that sub-block, computed independently (numpy, scikit-image).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from test_metrics import data_range_of, pair, smooth

from sdkd.distill.bands import SpectralBands
from sdkd.errors import SdkdError
from sdkd.evaluate.metrics import ForecastMetrics, ssim_frames
from sdkd.evaluate.run import data_ranges
from sdkd.evaluate.spectra import SpectrumAccumulator

SHAPE = (3, 2, 2, 28, 24)  # B, T, C, H, W
ROWS, COLS = slice(3, 25), slice(2, 19)  # the valid rectangle: 22 × 17 pixels
CUTOFFS = [2.0, 5.0]


def rectangle() -> torch.Tensor:
    mask = torch.zeros(SHAPE[-2:], dtype=torch.bool)
    mask[ROWS, COLS] = True
    return mask


def irregular() -> torch.Tensor:
    """A disc with a notch: no rectangle, windows of every kind (valid, partly, not)."""
    h, w = SHAPE[-2:]
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = (y - 13) ** 2 + (x - 11) ** 2 < 11**2
    mask[10:14, 16:] = False
    return mask


def with_garbage(truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The truth on the valid pixels; huge values of both signs on the padding."""
    gen = torch.Generator().manual_seed(7)
    junk = torch.randn(truth.shape, generator=gen, dtype=torch.float64).sign() * 1e300
    return torch.where(mask, truth, junk)


def scores(prediction, truth, mask, **kwargs):
    metrics = ForecastMetrics(prediction.shape[1], data_range_of(truth[..., mask]), CUTOFFS,
                              mask=mask, **kwargs)
    metrics.update(prediction, truth)
    return metrics.compute()


@pytest.mark.parametrize("make_mask", [rectangle, irregular])
def test_garbage_on_the_padding_scores_perfect(make_mask):
    mask = make_mask()
    _, truth = pair(SHAPE)
    truth = torch.where(mask, truth, 5.0)  # what the data file holds on padding
    prediction = with_garbage(truth, mask)
    assert prediction.abs().max() == 1e300  # (its square overflows: no product may see it)
    ranges = [data_range_of(truth[:, :, c][..., mask]) for c in range(SHAPE[2])]
    out = scores(prediction, truth, mask, channel_ranges=ranges)
    blocks = [out["metrics"], *out["per_channel"]]
    for block in blocks:
        for key in ("mse", "mae", "rmse", "rel_l2"):
            assert block[key] == 0, key
        assert block["psnr"] == math.inf  # written as null, as for any perfect forecast
        assert block["ssim"] == pytest.approx(1.0, abs=1e-12)
    for key in ("mse", "mae", "rmse", "rel_l2"):
        assert out["per_lead_time"][key] == [0.0] * SHAPE[1]
    assert out["per_lead_time"]["ssim"] == pytest.approx([1.0] * SHAPE[1], abs=1e-12)
    assert out["band_errors"]["mse"] == [0.0] * (len(CUTOFFS) + 1)

    # NaN and Inf on the padding change nothing either
    nan = torch.where(mask, truth, torch.tensor([math.nan, math.inf]).repeat(14)[:SHAPE[-1]])
    assert scores(nan, truth, mask, channel_ranges=ranges)["metrics"] == out["metrics"]

    # spectra: the error's is zero, the prediction's is the truth's
    spectra = {key: SpectrumAccumulator(mask=mask) for key in ("prediction", "truth", "error")}
    spectra["prediction"].update(prediction)
    spectra["truth"].update(truth)
    spectra["error"].update(prediction - truth)
    assert spectra["error"].compute()[1] == [0.0] * len(spectra["error"].compute()[1])
    assert spectra["prediction"].compute() == spectra["truth"].compute()


def test_a_rectangle_is_its_sub_block():
    """Masked metrics = the same metrics of the valid sub-block, computed independently;
    band errors and spectra sum to the masked MSE and energy (per valid pixel)."""
    mask = rectangle()
    prediction, truth = pair(SHAPE)
    prediction = with_garbage(prediction, mask)
    p, t = prediction[..., ROWS, COLS].numpy(), truth[..., ROWS, COLS].numpy()
    dr = data_range_of(truth[..., ROWS, COLS])
    ranges = [float(np.ptp(t[:, :, c])) for c in range(SHAPE[2])]
    out = scores(prediction, truth, mask, channel_ranges=ranges)
    err = p - t
    overall = out["metrics"]
    assert overall["mse"] == pytest.approx(np.mean(err**2), rel=1e-12)
    assert overall["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
    assert overall["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
    rel = [np.linalg.norm(err[i]) / np.linalg.norm(t[i]) for i in range(len(t))]
    assert overall["rel_l2"] == pytest.approx(np.mean(rel), rel=1e-12)
    assert overall["psnr"] == pytest.approx(peak_signal_noise_ratio(t, p, data_range=dr),
                                            abs=1e-9)
    frames = [structural_similarity(t[idx], p[idx], gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=dr)
              for idx in np.ndindex(*t.shape[:3])]
    assert overall["ssim"] == pytest.approx(np.mean(frames), abs=1e-10)
    np.testing.assert_allclose(out["per_lead_time"]["mse"], np.mean(err**2, axis=(0, 2, 3, 4)),
                               rtol=1e-12)
    for c, channel in enumerate(out["per_channel"]):
        mine = err[:, :, c]
        assert channel["data_range"] == ranges[c]
        assert channel["mse"] == pytest.approx(np.mean(mine**2), rel=1e-12)
        assert channel["mae"] == pytest.approx(np.mean(np.abs(mine)), rel=1e-12)
        assert channel["psnr"] == pytest.approx(
            peak_signal_noise_ratio(t[:, :, c], p[:, :, c], data_range=ranges[c]), abs=1e-9)
        ssim = [structural_similarity(t[i, j, c], p[i, j, c], gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False,
                                      data_range=ranges[c])
                for i in range(SHAPE[0]) for j in range(SHAPE[1])]
        assert channel["ssim"] == pytest.approx(np.mean(ssim), abs=1e-10)

    bands = out["band_errors"]
    assert sum(bands["mse"]) == pytest.approx(overall["mse"], rel=1e-10)
    assert sum(bands["truth_energy"]) == pytest.approx(np.mean(t**2), rel=1e-10)
    zero = torch.where(mask, prediction, 0.0), torch.where(mask, truth, 0.0)
    scale = mask.numel() / int(mask.sum())
    np.testing.assert_allclose(bands["mse"], SpectralBands(CUTOFFS).band_mse(*zero) * scale,
                               rtol=1e-10)
    error = SpectrumAccumulator(mask=mask)
    error.update(prediction - truth)
    assert sum(error.compute()[1]) == pytest.approx(overall["mse"], rel=1e-10)


def test_ssim_counts_the_windows_wholly_on_valid_pixels():
    """On an irregular mask: the mean of scikit-image's full SSIM map over the window
    centres whose 11 × 11 window holds only valid pixels."""
    mask = irregular()
    prediction, truth = pair((1, 1, 2, *SHAPE[-2:]))
    dr = data_range_of(prediction, truth)
    ours = ssim_frames(prediction, truth, dr, mask=mask)
    m = mask.numpy()
    centres = np.zeros_like(m)
    for i in range(5, m.shape[0] - 5):
        for j in range(5, m.shape[1] - 5):
            centres[i, j] = m[i - 5:i + 6, j - 5:j + 6].all()
    assert 0 < centres.sum() < m.sum()
    for c in range(2):
        # the padding holds no garbage here: skimage sees the zero-filled fields
        x, y = (np.where(m, f[0, 0, c].numpy(), 0.0) for f in (truth, prediction))
        _, full = structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=dr, full=True)
        assert float(ours[0, 0, c]) == pytest.approx(full[centres].mean(), abs=1e-10)
    # a mask too thin for any window gives no SSIM, as a grid under 11 px does
    thin = torch.zeros(SHAPE[-2:], dtype=torch.bool)
    thin[:, 3:13] = True
    assert torch.isnan(ssim_frames(prediction, truth, dr, mask=thin)).all()


def test_a_mask_of_ones_changes_nothing():
    prediction, truth = pair((4, 3, 2, 16, 20))
    dr = data_range_of(prediction, truth)
    plain = ForecastMetrics(3, dr, CUTOFFS, channel_ranges=[dr, dr / 2])
    ones = ForecastMetrics(3, dr, CUTOFFS, channel_ranges=[dr, dr / 2],
                           mask=torch.ones(16, 20, dtype=torch.bool))
    for metrics in (plain, ones):
        metrics.update(prediction, truth)
    assert ones.compute() == plain.compute()  # bit for bit


def test_bad_masks():
    prediction, truth = pair((1, 1, 1, 16, 16))
    with pytest.raises(SdkdError, match="no pixel is valid"):
        ForecastMetrics(1, 1.0, mask=torch.zeros(16, 16, dtype=torch.bool))
    with pytest.raises(SdkdError, match=r"expected a \(H, W\) tensor"):
        ForecastMetrics(1, 1.0, mask=torch.ones(1, 16, 16, dtype=torch.bool))
    metrics = ForecastMetrics(1, 1.0, mask=torch.ones(16, 12, dtype=torch.bool))
    with pytest.raises(SdkdError, match=r"mask: grid \(16, 12\) differs"):
        metrics.update(prediction, truth)


def test_data_ranges_count_valid_pixels(tmp_path):
    """Overall and per channel, over the valid pixels only: padding holding NaN or huge
    values is not read as data."""
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(3, 4, 2, 8, 12)).astype(np.float32)
    frames[:, :, 1] = frames[:, :, 1] * 10 + 300
    mask = np.zeros((8, 12), dtype=bool)
    mask[:7, :10] = True
    valid = frames[..., :7, :10]
    frames[..., 7, :] = np.nan
    frames[..., :, 10:] = 1e30
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["test/frames"] = frames
    overall, channels = data_ranges(path, mask=torch.from_numpy(mask))
    assert overall == float(valid.max()) - float(valid.min())
    assert channels == [float(valid[:, :, c].max()) - float(valid[:, :, c].min())
                        for c in range(2)]
    with pytest.raises(SdkdError, match="trajectory 0 holds NaN or Inf"):
        data_ranges(path)


def test_spectrum_and_bands_of_zero_filled_fields_per_valid_pixel():
    """Parseval on the padded grid: the shells of a field sum to mean(x²) over the valid
    pixels, the bands of the truth likewise."""
    mask = irregular()
    field = smooth((3, *SHAPE[-2:]), seed=4)
    spectrum = SpectrumAccumulator(mask=mask)
    spectrum.update(torch.where(mask, field, 1e30))
    assert sum(spectrum.compute()[1]) == pytest.approx(float(field[:, mask].square().mean()),
                                                       rel=1e-12)
