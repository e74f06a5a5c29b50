"""Losses on a padded grid: the validity mask keeps padded pixels out of every loss.

Unit level: ``masked_mse``, ``SpectralBands.band_mse``/``band_energy`` with a mask and
every setting of ``DistillLoss``. End to end: a teacher and a student trained on a tiny
padded canonical file, whose padded target pixels hold garbage.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import experiment, file_dataset
from test_losses import KWARGS, Forecast

from sdkd.config import validate
from sdkd.distill import SETTINGS, DistillLoss, SpectralBands
from sdkd.distill.losses import masked_mse
from sdkd.errors import SdkdError
from sdkd.train.checkpoint import load_checkpoint
from sdkd.train.jobs import distill_student, train_teacher

B, T, C, H, W = 2, 3, 2, 16, 16
D = 4


def _padded_mask(h: int = H, w: int = W) -> torch.Tensor:
    """True on a 13 × 12 block placed off-centre, as padding to a multiple of 4 leaves it."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[1 : h - 2, 3 : w - 1] = True
    return mask


MASK = _padded_mask()


def _tensor(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _garbage(x: torch.Tensor, seed: int) -> torch.Tensor:
    """``x`` with its padded pixels replaced by huge values, NaN and inf."""
    junk = 1e6 * _tensor(x.shape, seed)
    junk[..., 0, 0], junk[..., -1, -1] = float("nan"), float("inf")
    return torch.where(MASK, x.detach(), junk).requires_grad_(x.requires_grad)


def _loss(setting: str, **extra) -> DistillLoss:
    return DistillLoss(setting, student_channels=D, teacher_channels=D,
                       **{**KWARGS[setting], **extra}).double()


def _inputs():
    """(student forecast, teacher forecast, target); the student's leaves require grad."""
    # An 8 × 8 latent (not H/4 × W/4): the cutoffs of KWARGS leave none of its bands empty.
    s = Forecast(_tensor((B, T, C, H, W), 0).requires_grad_(),
                 {"latent": _tensor((B, D, 8, 8), 1).requires_grad_()})
    t = Forecast(_tensor((B, T, C, H, W), 2),
                 {name: _tensor((B, D, 8, 8), 3 + i)
                  for i, name in enumerate(("latent", "attn_path", "conv_path"))})
    return s, t, _tensor((B, T, C, H, W), 4)


# ---- the masked MSE -------------------------------------------------------------------


def test_masked_mse_is_the_mean_over_valid_pixels():
    a, b = _tensor((B, T, C, H, W), 0), _tensor((B, T, C, H, W), 1)
    expected = ((a.numpy() - b.numpy()) ** 2)[..., MASK.numpy()].mean()
    np.testing.assert_allclose(masked_mse(a, b, MASK).item(), expected, rtol=1e-13)
    assert torch.equal(masked_mse(a, b), F.mse_loss(a, b))  # no mask: the plain MSE, bit for bit
    full = torch.ones(H, W, dtype=torch.bool)
    torch.testing.assert_close(masked_mse(a, b, full), F.mse_loss(a, b), rtol=1e-14, atol=0)


def test_masked_mse_in_half_precision_is_computed_in_float32():
    a, b = _tensor((B, T, C, H, W), 0), _tensor((B, T, C, H, W), 1)
    low = masked_mse(a.bfloat16(), b.bfloat16(), MASK)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), masked_mse(a.bfloat16().double(),
                                                        b.bfloat16().double(), MASK))


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (MASK.to(torch.uint8), "bool tensor"),
        (MASK[:-1], r"grid \(16, 16\)"),
        ("all", "bool tensor"),
    ],
)
def test_bad_masks(mask, match):
    a = _tensor((B, T, C, H, W), 0)
    with pytest.raises(SdkdError, match=f"mask: .*{match}"):
        masked_mse(a, a, mask)
    s, t, target = _inputs()
    with pytest.raises(SdkdError, match=f"mask: .*{match}"):
        _loss("dual")(s, t, target, mask=mask)


# ---- band terms ------------------------------------------------------------------------


def test_masked_bands_are_the_bands_of_zero_filled_fields_per_valid_pixel():
    bands = SpectralBands([2, 4])
    a, b = _tensor((5, H, W), 0), _tensor((5, H, W), 1)
    per_valid_pixel = H * W / MASK.sum().item()
    zero_filled = MASK.double()
    torch.testing.assert_close(bands.band_mse(a, b, MASK),
                               bands.band_mse(a * zero_filled, b * zero_filled) * per_valid_pixel)
    torch.testing.assert_close(bands.band_energy(a, MASK),
                               bands.band_energy(a * zero_filled) * per_valid_pixel)
    # Normalised as without a mask: the bands add up to the MSE over the valid pixels.
    torch.testing.assert_close(bands.band_mse(a, b, MASK).sum(), masked_mse(a, b, MASK))
    torch.testing.assert_close(bands.band_energy(a, MASK).sum(0),
                               a.square()[:, MASK].mean(-1))


@pytest.mark.parametrize("setting", ["dual", "multi"])
def test_output_band_terms_are_masked_latent_band_terms_not(setting):
    s, t, target = _inputs()
    loss = _loss(setting)
    _, masked = loss(s, t, target, mask=MASK)
    zero = MASK.double()
    zero_filled = (Forecast(s.prediction * zero, s.features),
                   Forecast(t.prediction * zero, t.features))
    _, unmasked = loss(*zero_filled, target)
    per_valid_pixel = H * W / MASK.sum().item()
    for b in range(loss.bands.num_bands):
        torch.testing.assert_close(masked[f"kd_out_b{b}"],
                                   unmasked[f"kd_out_b{b}"] * per_valid_pixel)
        torch.testing.assert_close(masked[f"kd_latent_b{b}"], unmasked[f"kd_latent_b{b}"])
    out_bands = sum(masked[f"kd_out_b{b}"] for b in range(loss.bands.num_bands))
    torch.testing.assert_close(out_bands, _loss("output")(s, t, target, mask=MASK)[1]["kd_out"])


# ---- every setting ---------------------------------------------------------------------

VARIANTS = [*SETTINGS, "dual+normalize_bands"]


def _variant(name: str) -> DistillLoss:
    setting, _, flag = name.partition("+")
    return _loss(setting, **({flag: True} if flag else {}))


@pytest.mark.parametrize("name", VARIANTS)
def test_all_true_mask_is_the_unmasked_loss(name):
    loss = _variant(name)
    s, t, target = _inputs()
    _, plain = loss(s, t, target)
    _, full = loss(s, t, target, mask=torch.ones(H, W, dtype=torch.bool))
    assert plain.keys() == full.keys()
    for key in plain:
        torch.testing.assert_close(full[key], plain[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_pixels_change_no_loss_and_get_no_gradient(name):
    loss = _variant(name)
    s, t, target = _inputs()
    total, clean = loss(s, t, target, mask=MASK)
    total.backward()
    clean_grads = {k: v.grad for k, v in (("prediction", s.prediction), *s.features.items())}

    s_bad = Forecast(_garbage(s.prediction, 5), {"latent": s.features["latent"].detach()
                                                 .clone().requires_grad_()})
    t_bad = Forecast(_garbage(t.prediction, 6), t.features)
    total, dirty = loss(s_bad, t_bad, _garbage(target, 7), mask=MASK)
    total.backward()

    for key, value in clean.items():
        assert torch.equal(dirty[key], value), key
    grad = s_bad.prediction.grad
    assert torch.equal(grad[..., ~MASK], torch.zeros_like(grad[..., ~MASK]))
    assert torch.equal(grad, clean_grads["prediction"])
    if clean_grads["latent"] is not None:
        assert torch.equal(s_bad.features["latent"].grad, clean_grads["latent"])


# ---- end to end: training on a padded canonical file ----------------------------------

IN, OUT = 2, 2
GRID, VALID = (16, 16), (slice(1, 14), slice(1, 15))  # 13 × 14 data padded to 16 × 16


def _canonical(path, *, garbage: float | None, mask: bool = True):
    """A canonical file (layout of :mod:`sdkd.data.preprocess`) of smooth waves on the
    13 × 14 valid block, padded by edge values, one window per trajectory. With
    ``garbage`` the padded pixels of the *target* frames hold noise of that size instead,
    so the models' inputs are the same whatever the garbage."""
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(*(np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (13, 14)),
                       indexing="ij")
    n = 7  # trajectories: 4 train, 2 val, 1 test
    phase = rng.normal(size=(n, 1, 1, 1, 1))
    t = np.arange(IN + OUT)[None, :, None, None, None]
    data = np.sin(x + y + phase + 0.3 * t)  # (N, T, 1, 13, 14)
    rows, cols = VALID
    widths = [(0, 0)] * 3 + [(rows.start, GRID[0] - rows.stop), (cols.start, GRID[1] - cols.stop)]
    frames = np.pad(data, widths, mode="edge").astype("f4")
    valid = np.zeros(GRID, np.uint8)
    valid[VALID] = 1
    if garbage is not None:
        noise = garbage * np.random.default_rng(1).normal(size=frames[:, IN:].shape)
        frames[:, IN:] = np.where(valid.astype(bool), frames[:, IN:], noise)
    with h5py.File(path, "w") as f:
        for split, part in (("train", slice(0, 4)), ("val", slice(4, 6)), ("test", slice(6, 7))):
            f[f"{split}/frames"] = frames[part]
        if mask:
            f["mask"] = valid
        train = data[:4]  # statistics over the data's pixels only, as preprocess takes them
        f.attrs.update(dataset="pad", source="file", raw_sha256="0" * 64, channels=["u"],
                       mean=[train.mean()], std=[train.std()], in_steps=IN, out_steps=OUT,
                       window_stride=1, dt=1.0, dx=1.0)
    return path


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """The config and three files: garbage-free, with garbage, with garbage and no mask."""
    tmp = tmp_path_factory.mktemp("padded")
    block = file_dataset(tmp / "raw.h5", in_steps=IN, out_steps=OUT,
                         split={"train": 4, "val": 2, "test": 1})
    settings = {"none": {}, "dual": {"cutoffs": [1.5], "weights": [1.0, 1.0]}}
    config = validate(experiment({"pad": block}, distill={"settings": settings}))
    files = {name: _canonical(tmp / f"{name}.h5", garbage=g, mask=m)
             for name, g, m in (("clean", None, True), ("garbage", 1e3, True),
                                ("unmasked", 1e3, False))}
    return config, files, tmp


def _losses(out_dir) -> np.ndarray:
    history = np.genfromtxt(out_dir / "history.csv", delimiter=",", names=True)
    return np.array([history[k] for k in history.dtype.names if k.endswith(("_loss", "_mse",
                                                                          "_gt", "_kd"))])


def test_training_on_a_padded_grid_ignores_padded_garbage(padded):
    config, files, tmp = padded
    runs = {name: tmp / f"teacher-{name}" for name in files}
    for name, path in files.items():
        train_teacher(config, "pad", path, runs[name], device="cpu")
    clean, garbage, unmasked = (_losses(runs[name]) for name in ("clean", "garbage", "unmasked"))
    assert np.isfinite(clean).all()
    np.testing.assert_array_equal(garbage, clean)  # bit for bit: not one step differs
    weights = [load_checkpoint(runs[name] / "best.pt")["model"] for name in ("clean", "garbage")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not np.allclose(unmasked, clean)  # without the mask the garbage is learnt

    students = {}
    for name in ("clean", "garbage"):
        students[name] = tmp / f"student-{name}"
        distill_student(config, "pad", files[name], runs["clean"] / "best.pt", "unet-s", "dual",
                        0, students[name], device="cpu")
    np.testing.assert_array_equal(_losses(students["garbage"]), _losses(students["clean"]))
    assert np.isfinite(_losses(students["clean"])).all()
