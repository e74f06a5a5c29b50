"""Distillation losses: zero at agreement, gradients, band selectivity, validation."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from sdkd.distill import SETTINGS, DistillLoss
from sdkd.errors import SdkdError

B, T, C, H, W = 2, 3, 2, 16, 16
D = 4
KWARGS = {
    "none": {},
    "low": {"cutoffs": [3]},
    "high": {"cutoffs": [3]},
    "dual": {"cutoffs": [3], "band_weights": [1.0, 2.0]},
    "multi": {"cutoffs": [2, 4], "band_weights": [1.0, 0.5, 2.0]},
    "sdkd_latent": {"cutoffs": [2, 4], "band_weights": [1.0, 0.5, 2.0]},
    "decoupled": {"cutoffs": [3], "band_weights": [1.0, 2.0]},
    "output": {},
    "fitnet": {},
}


class Forecast(NamedTuple):
    prediction: torch.Tensor
    features: dict[str, torch.Tensor]


def _tensor(shape, seed, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def _loss(setting, d_s=D, d_t=D, identity=True, **extra):
    loss = DistillLoss(
        setting, student_channels=d_s, teacher_channels=d_t, **{**KWARGS[setting], **extra}
    ).double()
    if identity:
        with torch.no_grad():
            for projection in loss.projections.values():
                projection.weight.copy_(torch.eye(d_t, d_s)[:, :, None, None])
                projection.bias.zero_()
    return loss


def _features(seed, d=D, grid=8, grad=False):
    """A latent and the teacher's two evolution paths, (B, d, grid, grid) each."""
    return {name: _tensor((B, d, grid, grid), seed + i, grad)
            for i, name in enumerate(("latent", "attn_path", "conv_path"))}


def _mode(h, w, ky, kx):
    """cos 2π(kx·x + ky·y) on an h × w grid of the unit square."""
    y = torch.arange(h, dtype=torch.float64)[:, None] / h
    x = torch.arange(w, dtype=torch.float64)[None, :] / w
    return torch.cos(2 * math.pi * (kx * x + ky * y))


def _kd(loss, student, teacher, target):
    return loss(student, teacher, target)[1]["kd"]


def test_settings_listed():
    assert SETTINGS == ("none", "low", "high", "dual", "multi", "sdkd_latent", "decoupled",
                        "output", "fitnet")


@pytest.mark.parametrize("setting", SETTINGS)
def test_kd_zero_at_agreement_positive_otherwise(setting):
    loss = _loss(setting)
    pred, target = _tensor((B, T, C, H, W), 0), _tensor((B, T, C, H, W), 2)
    latent = _tensor((B, D, 8, 8), 10)
    same = Forecast(pred, {"latent": latent})
    teacher = {name: latent.clone() for name in ("latent", "attn_path", "conv_path")}
    total, terms = loss(same, Forecast(pred.clone(), teacher), target)
    assert terms["kd"] == 0
    torch.testing.assert_close(total, F.mse_loss(pred, target))
    torch.testing.assert_close(terms["gt"], F.mse_loss(pred, target))
    other = Forecast(_tensor((B, T, C, H, W), 3), _features(20))
    kd = _kd(loss, same, other, target)
    if setting == "none":
        assert kd == 0
    else:
        assert kd > 0
        total, terms = loss(same, other, target)
        torch.testing.assert_close(total, terms["gt"] + loss.lam * kd)


@pytest.mark.parametrize("setting", SETTINGS)
def test_gradients_reach_student_and_projection_not_teacher(setting):
    loss = _loss(setting, d_s=3, d_t=5, identity=False, lam=0.5)
    s_pred, s_lat = _tensor((B, T, C, H, W), 0, True), _tensor((B, 3, 8, 8), 1, True)
    t_pred, t_features = _tensor((B, T, C, H, W), 2, True), _features(3, d=5, grad=True)
    target = _tensor((B, T, C, H, W), 4)
    total, terms = loss(
        Forecast(s_pred, {"latent": s_lat}), Forecast(t_pred, t_features), target
    )
    assert all(not v.requires_grad for v in terms.values())
    total.backward()
    assert t_pred.grad is None and all(t.grad is None for t in t_features.values())
    assert s_pred.grad is not None and s_pred.grad.abs().sum() > 0
    params = list(loss.parameters())
    if setting in ("none", "output"):
        assert params == []
        assert s_lat.grad is None  # the latent is not read
    else:
        assert s_lat.grad is not None and s_lat.grad.abs().sum() > 0
        assert len(params) == 2 * len(loss.projections) > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_decoupled_aligns_low_band_to_attention_and_high_band_to_convolution():
    """KD is zero iff the student's low band is the attention path's and its high band
    the convolution path's; the other bands of each path do not count."""
    loss = _loss("decoupled", band_weights=[1.0, 1.0])
    bands = loss.bands
    pred = _tensor((B, T, C, H, W), 0)
    attn, conv = _tensor((B, D, 8, 8), 1), _tensor((B, D, 8, 8), 2)
    low, high = bands.split(attn)[0], bands.split(conv)[1]
    teacher = Forecast(pred, {"latent": _tensor((B, D, 8, 8), 3), "attn_path": attn,
                              "conv_path": conv})
    student = Forecast(pred, {"latent": low + high})
    assert _kd(loss, student, teacher, pred) < 1e-24
    # The attention path's high band and the convolution path's low band are not read.
    other = {**teacher.features, "attn_path": attn + bands.split(conv)[1],
             "conv_path": conv + bands.split(attn)[0]}
    assert _kd(loss, student, Forecast(pred, other), pred) < 1e-24
    # The fused latent is not read either; a change of an aligned band is.
    assert _kd(loss, student, Forecast(pred, {**teacher.features, "latent": attn}), pred) < 1e-24
    moved = {**teacher.features, "attn_path": attn + 0.5 * bands.split(conv)[0]}
    assert _kd(loss, student, Forecast(pred, moved), pred) > 1e-3
    assert loss.teacher_features == ("attn_path", "conv_path")
    assert set(loss.projections) == {"attn_path", "conv_path"}


def _statistics(features):
    """Per-channel mean and std over batch and grid of each feature, as the job takes them."""
    return {name: (f.mean((0, 2, 3)), f.std((0, 2, 3), correction=0))
            for name, f in features.items()}


@pytest.mark.parametrize("setting", ["sdkd_latent", "decoupled", "dual", "fitnet"])
def test_standardised_latents_ignore_an_affine_change_of_the_teacher(setting):
    """Scaling and shifting each teacher channel (scale > 0), with the statistics taken
    again, changes neither the loss nor the student's gradient."""
    loss = _loss(setting, standardize_latents=True)
    pred, target = _tensor((B, T, C, H, W), 0), _tensor((B, T, C, H, W), 1)
    teacher = _features(2)
    scale = torch.tensor([0.01, 3.0, 250.0, 1.0], dtype=torch.float64).view(1, D, 1, 1)
    shift = torch.tensor([5.0, -40.0, 0.0, 1e3], dtype=torch.float64).view(1, D, 1, 1)
    changed = {name: scale * f + shift for name, f in teacher.items()}
    results = []
    for features in (teacher, changed):
        loss.set_teacher_statistics(_statistics(features))
        latent = _tensor((B, D, 8, 8), 9, grad=True)
        _, terms = loss(Forecast(pred, {"latent": latent}), Forecast(pred, features), target)
        total, _ = loss(Forecast(pred, {"latent": latent}), Forecast(pred, features), target)
        total.backward()
        results.append((terms["kd"], latent.grad))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


def test_standardised_latents_are_zero_mean_unit_variance_targets():
    """KD is zero when the projected student latent is the standardised teacher latent,
    and the loss refuses to run before it knows the statistics."""
    loss = _loss("sdkd_latent", standardize_latents=True)
    pred = _tensor((B, T, C, H, W), 0)
    teacher = _features(2)
    with pytest.raises(SdkdError, match="standardize_latents needs its training statistics"):
        loss(Forecast(pred, {"latent": teacher["latent"]}), Forecast(pred, teacher), pred)
    loss.set_teacher_statistics(_statistics(teacher))
    mean, std = _statistics(teacher)["latent"]
    standard = (teacher["latent"] - mean.view(1, D, 1, 1)) / std.view(1, D, 1, 1)
    assert _kd(loss, Forecast(pred, {"latent": standard}), Forecast(pred, teacher), pred) < 1e-24
    assert _kd(loss, Forecast(pred, {"latent": teacher["latent"]}), Forecast(pred, teacher),
               pred) > 1e-3
    # A loss loaded from a checkpoint (a resumed run) has its statistics too.
    resumed = _loss("sdkd_latent", standardize_latents=True)
    resumed.load_state_dict(loss.state_dict())
    assert _kd(resumed, Forecast(pred, {"latent": standard}), Forecast(pred, teacher),
               pred) < 1e-24
    with pytest.raises(SdkdError, match="expected 4 channels"):
        loss.set_teacher_statistics({"latent": (mean[:2], std[:2])})
    with pytest.raises(SdkdError, match="feature 'latent' is missing"):
        loss.set_teacher_statistics({})


def test_none_is_plain_mse_without_teacher():
    loss = DistillLoss("none", student_channels=4, teacher_channels=8)
    assert list(loss.parameters()) == []
    assert loss.state_dict() == {}
    pred, target = torch.randn(B, T, C, H, W), torch.randn(B, T, C, H, W)
    total, terms = loss(Forecast(pred, {}), None, target)
    torch.testing.assert_close(total, F.mse_loss(pred, target))
    assert terms["kd"] == 0


def test_baselines_match_their_definitions():
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 8, 8), 1)})
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": _tensor((B, D, 8, 8), 3)})
    target = _tensor((B, T, C, H, W), 4)
    torch.testing.assert_close(
        _kd(_loss("output"), s, t, target), F.mse_loss(s.prediction, t.prediction)
    )
    torch.testing.assert_close(
        _kd(_loss("fitnet"), s, t, target), F.mse_loss(s.features["latent"], t.features["latent"])
    )
    # dual with unit weights and one band split = fitnet + output (bands add up to the MSE).
    dual = _kd(_loss("dual", band_weights=[1, 1]), s, t, target)
    torch.testing.assert_close(
        dual, _kd(_loss("fitnet"), s, t, target) + _kd(_loss("output"), s, t, target)
    )


def test_frequency_terms_and_weights():
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 8, 8), 1)})
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": _tensor((B, D, 8, 8), 3)})
    target = _tensor((B, T, C, H, W), 4)
    _, terms = _loss("multi", latent_weight=3.0, output_weight=0.25)(s, t, target)
    expected = sum(
        w * (3.0 * terms[f"kd_latent_b{b}"] + 0.25 * terms[f"kd_out_b{b}"])
        for b, w in enumerate([1.0, 0.5, 2.0])
    )
    torch.testing.assert_close(terms["kd"], expected)
    low = _loss("low", band_weights=[3.0])(s, t, target)[1]
    high = _loss("high")(s, t, target)[1]
    torch.testing.assert_close(low["kd"], 3 * (low["kd_latent_b0"] + low["kd_out_b0"]))
    torch.testing.assert_close(high["kd"], high["kd_latent_b1"] + high["kd_out_b1"])


def test_normalized_bands():
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 8, 8), 1)})
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": 5 * _tensor((B, D, 8, 8), 3)})
    target = _tensor((B, T, C, H, W), 4)
    loss = _loss("dual", normalize_bands=True, norm_eps=0.0)
    _, terms = loss(s, t, target)
    e_lat = loss.bands.band_energy(t.features["latent"]).flatten(1).mean(1)
    e_out = loss.bands.band_energy(t.prediction).flatten(1).mean(1)
    expected = sum(
        w * (terms[f"kd_latent_b{b}"] / e_lat[b] + terms[f"kd_out_b{b}"] / e_out[b])
        for b, w in enumerate([1.0, 2.0])
    )
    torch.testing.assert_close(terms["kd"], expected)
    same = Forecast(t.prediction, {"latent": t.features["latent"]})
    assert _kd(loss, same, t, target) == 0


def test_equal_band_weights_make_the_cutoffs_irrelevant():
    """Parseval: the bands partition the spectrum, so with equal weights and no band
    normalisation sdkd_latent's terms add up to the whole-latent error, whatever the
    cutoffs (the tuning stage found tied validation MSEs for cutoffs 1 and 2; what to
    tune is the weights). With unequal weights the cutoff matters."""
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 8, 8), 1)})
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": _tensor((B, D, 8, 8), 3)})
    target = _tensor((B, T, C, H, W), 4)
    whole = F.mse_loss(s.features["latent"], t.features["latent"])
    for cutoffs in ([1], [2], [3], [1, 2.5]):
        equal = [1.0] * (len(cutoffs) + 1)
        kd = _kd(_loss("sdkd_latent", cutoffs=cutoffs, band_weights=equal), s, t, target)
        torch.testing.assert_close(kd, whole)
    tilted = [_kd(_loss("sdkd_latent", cutoffs=[c], band_weights=[1.0, 10.0]), s, t, target)
              for c in (1, 2)]
    assert not torch.isclose(tilted[0], tilted[1])


@pytest.mark.parametrize("setting", ["dual", "fitnet", "multi"])
def test_latent_grid_mismatch(setting):
    loss = _loss(setting, d_s=3, d_t=6, identity=False)
    s_lat = _tensor((B, 3, 8, 8), 1, True)
    s = Forecast(_tensor((B, T, C, H, W), 0, True), {"latent": s_lat})
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": _tensor((B, 6, 16, 16), 3)})
    total, terms = loss(s, t, _tensor((B, T, C, H, W), 4))
    assert terms["kd"] > 0
    total.backward()
    assert s_lat.grad is not None and s_lat.grad.abs().sum() > 0
    # And the other way round (student finer than teacher: anti-aliased shrink).
    s_lat = _tensor((B, 3, 16, 16), 5, True)
    t = Forecast(t.prediction, {"latent": _tensor((B, 6, 8, 8), 6)})
    total, _ = loss(Forecast(s.prediction, {"latent": s_lat}), t, _tensor((B, T, C, H, W), 4))
    total.backward()
    assert s_lat.grad is not None and s_lat.grad.abs().sum() > 0


def test_upsampled_constant_latent_matches():
    # A constant student latent on 8×8 resized to 16×16 is the same constant: KD = 0.
    loss = _loss("dual")
    s = Forecast(
        torch.zeros(B, T, C, H, W, dtype=torch.float64),
        {"latent": torch.full((B, D, 8, 8), 2.0, dtype=torch.float64)},
    )
    t = Forecast(s.prediction, {"latent": torch.full((B, D, 16, 16), 2.0, dtype=torch.float64)})
    assert _kd(loss, s, t, s.prediction) < 1e-24


def test_band_selectivity():
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 16, 16), 1)})
    t_lat = _tensor((B, D, 16, 16), 3)
    t = Forecast(_tensor((B, T, C, H, W), 2), {"latent": t_lat})
    target = _tensor((B, T, C, H, W), 4)
    low, high = _loss("low"), _loss("high")  # cutoff 3
    base_low, base_high = _kd(low, s, t, target), _kd(high, s, t, target)

    hf = Forecast(t.prediction, {"latent": t_lat + 0.7 * _mode(16, 16, 5, 2)})  # |k| ≈ 5.4
    torch.testing.assert_close(_kd(low, s, hf, target), base_low, atol=1e-12, rtol=0)
    assert abs(_kd(high, s, hf, target) - base_high) > 1e-3

    lf = Forecast(t.prediction, {"latent": t_lat + 0.7 * _mode(16, 16, 1, 1)})  # |k| ≈ 1.4
    torch.testing.assert_close(_kd(high, s, lf, target), base_high, atol=1e-12, rtol=0)
    assert abs(_kd(low, s, lf, target) - base_low) > 1e-3

    # The same holds at the output level, with the same cutoff on the output grid.
    out_hf = Forecast(t.prediction + 0.7 * _mode(H, W, 0, 6), t.features)
    torch.testing.assert_close(_kd(low, s, out_hf, target), base_low, atol=1e-12, rtol=0)
    assert abs(_kd(high, s, out_hf, target) - base_high) > 1e-3


def test_cutoff_must_fit_latent_grid():
    loss = _loss("dual", cutoffs=[8])  # fits 16×16 frames, not an 8×8 latent
    s = Forecast(_tensor((B, T, C, H, W), 0), {"latent": _tensor((B, D, 8, 8), 1)})
    with pytest.raises(SdkdError, match=r"cutoffs: .*8×8 grid.*teacher feature"):
        loss(s, s, _tensor((B, T, C, H, W), 2))


@pytest.mark.parametrize(
    ("setting", "kwargs", "match"),
    [
        ("spectral", {}, "setting: expected one of none, low"),
        ("dual", {"cutoffs": None}, "cutoffs: setting 'dual' needs exactly one"),
        ("multi", {}, "cutoffs: setting 'multi' needs one or more"),
        ("dual", {"cutoffs": [2, 4]}, "cutoffs: setting 'dual'"),
        ("low", {"cutoffs": [2, 4]}, "cutoffs: setting 'low'"),
        ("dual", {"cutoffs": [4, 2]}, "cutoffs: expected strictly increasing"),
        ("dual", {"cutoffs": [3], "band_weights": [1.0]}, "band_weights: .* expects 2"),
        ("multi", {"cutoffs": [2, 4], "band_weights": [1, 1]}, "band_weights: .* expects 3"),
        ("low", {"cutoffs": [3], "band_weights": [1, 1]}, "band_weights: .* expects 1"),
        ("dual", {"cutoffs": [3], "band_weights": [1, -1]}, "band_weights: expected .* ≥ 0"),
        ("fitnet", {"lam": -1.0}, "lam: expected"),
        ("dual", {"cutoffs": [3], "output_weight": float("nan")}, "output_weight: expected"),
        ("fitnet", {"student_channels": 0}, "student_channels: expected a positive"),
        ("fitnet", {"band_features": ["latent"]}, "features: setting 'fitnet' has no bands"),
        ("decoupled", {"cutoffs": [3], "band_features": ["latent"]},
         "features: setting 'decoupled' has 2 bands, expected one teacher feature per band"),
        ("decoupled", {"cutoffs": [3, 4]}, "cutoffs: setting 'decoupled' splits into two"),
        ("sdkd_latent", {}, "cutoffs: setting 'sdkd_latent' needs one or more"),
        ("sdkd_latent", {"cutoffs": [2, 4], "band_weights": [1, 1]},
         "band_weights: .* expects 3"),
    ],
)
def test_bad_settings(setting, kwargs, match):
    args = {"student_channels": 4, "teacher_channels": 4, **kwargs}
    with pytest.raises(SdkdError, match=match):
        DistillLoss(setting, **args)


def test_bad_inputs():
    loss = _loss("dual")
    pred, target = _tensor((B, T, C, H, W), 0), _tensor((B, T, C, H, W), 1)
    good = Forecast(pred, {"latent": _tensor((B, D, 8, 8), 2)})
    with pytest.raises(SdkdError, match=r"feature: student.features\['latent'\] is missing"):
        loss(Forecast(pred, {"skip": good.features["latent"]}), good, target)
    with pytest.raises(SdkdError, match=r"teacher_channels: .* 5 channels, expected 4"):
        loss(good, Forecast(pred, {"latent": _tensor((B, 5, 8, 8), 3)}), target)
    with pytest.raises(SdkdError, match="student_channels"):
        loss(Forecast(pred, {"latent": _tensor((B, 3, 8, 8), 3)}), good, target)
    with pytest.raises(SdkdError, match="target: expected"):
        loss(good, good, target[:, :1])
    with pytest.raises(SdkdError, match=r"teacher\.prediction: expected"):
        loss(good, Forecast(pred[:, :1], good.features), target)
    with pytest.raises(SdkdError, match="teacher: setting 'dual' needs"):
        loss(good, None, target)
    with pytest.raises(SdkdError, match="student: expected a Forecast"):
        loss(pred, good, target)
