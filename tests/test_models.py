"""Forecasting models: the shared contract, the registry, sizes, and that they learn."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sdkd.errors import SdkdError
from sdkd.models import (
    Forecast,
    ForecastModel,
    build_from_spec,
    build_model,
    count_parameters,
    flops_per_sample,
    get_family,
    model_names,
    model_spec,
)

EXPECTED_NAMES = [
    "teacher-paper",
    "teacher-small",
    "teacher-tiny",
    "unet-s",
    "unet-m",
    "unet-l",
    "resnet-s",
    "resnet-m",
    "resnet-l",
    "mixer-s",
    "mixer-m",
    "mixer-l",
]

# Overrides that make each family fast enough to run forward/backward in a test while
# keeping its structure (N_S, heads and depths stay those of the preset).
SHRINK = {
    "teacher": {"hid_S": 8, "hid_T": 32, "N_T": 2},
    "unet": {"width_mult": 0.25},
    "resnet": {"width_mult": 0.25},
    "mixer": {"width_mult": 0.25},
}

# (T_in, T_out, C, H, W): T_in ≠ T_out both ways, non-square grids, one and two channels.
COMBOS = [(3, 2, 1, 16, 24), (2, 4, 2, 32, 16)]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def small_model(name: str, t_in: int, t_out: int, c: int, h: int, w: int) -> ForecastModel:
    family = name.split("-")[0]
    return build_model(
        name, in_steps=t_in, out_steps=t_out, channels=c, height=h, width=w, **SHRINK[family]
    )


def test_model_names():
    assert model_names() == EXPECTED_NAMES


# -- the contract, for every registered model -----------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("name", model_names())
def test_shapes_latent_and_gradients(name, combo):
    t_in, t_out, c, h, w = combo
    model = small_model(name, *combo)
    assert isinstance(model, ForecastModel)
    assert (model.in_steps, model.out_steps, model.channels) == (t_in, t_out, c)
    assert model.downsample_factor == 4
    x = torch.randn(2, t_in, c, h, w)
    out = model(x)
    assert isinstance(out, Forecast)
    assert out.prediction.shape == (2, t_out, c, h, w)
    latent = out.features["latent"]
    assert latent.shape == (2, model.latent_channels, *model.latent_grid(h, w))
    assert model.latent_grid(h, w) == (h // 4, w // 4)
    for feature in out.features.values():
        assert feature.shape[0] == 2 and torch.isfinite(feature).all()

    # A loss on prediction and latent reaches every parameter with a finite gradient.
    g = torch.Generator().manual_seed(1)
    loss = (out.prediction * torch.randn(out.prediction.shape, generator=g)).sum() + (
        latent * torch.randn(latent.shape, generator=g)
    ).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"


def test_teacher_features():
    model = build_model("teacher-tiny", in_steps=3, out_steps=5, channels=2, height=16, width=32)
    out = model(torch.randn(2, 3, 2, 16, 32))
    hid_s, hid_t = model.hid_S, model.hid_T
    assert model.latent_channels == hid_t
    assert out.features["encoder"].shape == (2, 3 * hid_s, 4, 8)
    for key in ("latent", "conv_path", "attn_path"):
        assert out.features[key].shape == (2, hid_t, 4, 8)
    assert out.prediction.shape == (2, 5, 2, 16, 32)


def test_teacher_attention_runs_on_any_grid():
    """Positional encodings are computed per grid: one teacher serves several grids."""
    model = build_model("teacher-tiny", in_steps=2, out_steps=2, channels=1)
    for h, w in [(8, 8), (16, 12), (4, 28)]:
        assert model(torch.randn(1, 2, 1, h, w)).prediction.shape == (1, 2, 1, h, w)


def test_teacher_is_batch_independent():
    """GroupNorm/LayerNorm only: a sample's forecast does not depend on its batch mates."""
    model = build_model("teacher-tiny", in_steps=2, out_steps=3, channels=1).eval()
    x = torch.randn(3, 2, 1, 16, 16)
    with torch.no_grad():
        full = model(x).prediction
        one = model(x[1:2]).prediction
    torch.testing.assert_close(full[1:2], one, rtol=1e-4, atol=1e-5)


# -- learning --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "overrides"), [("teacher-tiny", {}), ("unet-s", SHRINK["unet"])])
def test_memorises_a_fixed_batch(name, overrides):
    torch.manual_seed(0)
    model = build_model(name, in_steps=2, out_steps=2, channels=1, height=16, width=16, **overrides)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 1, 16, 16, generator=g)
    y = torch.randn(2, 2, 1, 16, 16, generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = loss = None
    for _ in range(300):
        loss = F.mse_loss(model(x).prediction, y)
        if first is None:
            first = loss.item()
        if loss.item() < first / 10:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 10, f"{name}: loss {first:.3g} → {loss.item():.3g}"


# -- registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "needle", "listed"),
    [
        ("foo-s", "unknown model family 'foo'", EXPECTED_NAMES),
        ("unet", "expected family-size", EXPECTED_NAMES),
        ("unet-xl", "unknown size 'xl'", ["unet-s", "unet-m", "unet-l"]),
        ("teacher-huge", "unknown size 'huge'", ["teacher-paper", "teacher-small", "teacher-tiny"]),
    ],
)
def test_unknown_name_lists_valid_names(name, needle, listed):
    with pytest.raises(SdkdError) as info:
        build_model(name, in_steps=2, out_steps=2, channels=1)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert all(n in message for n in listed), message


def test_unknown_override_key_lists_accepted_keys():
    with pytest.raises(SdkdError, match=r"unknown override key\(s\) widht.*accepts:.*width_mult"):
        build_model("unet-s", in_steps=2, out_steps=2, channels=1, widht=0.5)
    with pytest.raises(SdkdError, match=r"teacher accepts: N_S, N_T, .*hid_S, hid_T"):
        build_model("teacher-tiny", in_steps=2, out_steps=2, channels=1, depth=3)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"in_steps": 0}, "in_steps must be a positive integer"),
        ({"channels": 1.5}, "channels must be a positive integer"),
        ({"depth": True}, "depth must be a positive integer"),
        ({"width_mult": "half"}, "width_mult must be a positive number"),
        ({"width_mult": float("nan")}, "width_mult must be a positive finite number"),
        ({"width_mult": -1}, "width_mult must be a positive finite number"),
        ({"height": 16}, "both height and width"),
        ({"height": 16, "width": 0.5}, "width must be a positive integer"),
    ],
)
def test_bad_values(kwargs, needle):
    base = {"in_steps": 2, "out_steps": 2, "channels": 1}
    with pytest.raises(SdkdError, match=needle):
        build_model("unet-s", **{**base, **kwargs})


def test_numpy_scalars_are_accepted():
    import numpy as np

    model = build_model(
        "unet-s",
        in_steps=np.int64(3),
        out_steps=np.int32(2),
        channels=1,
        width_mult=np.float32(0.5),
    )
    assert (model.in_steps, model.latent_channels) == (3, 32)
    assert type(model_spec(model)["kwargs"]["in_steps"]) is int
    json.dumps(model_spec(model))


def test_impossible_teacher_settings():
    with pytest.raises(SdkdError, match="heads=3 must divide hid_T=32"):
        build_model("teacher-tiny", in_steps=2, out_steps=2, channels=1, heads=3)
    with pytest.raises(SdkdError, match="N_S=2"):
        build_model("teacher-tiny", in_steps=2, out_steps=2, channels=1, N_S=2)


@pytest.mark.parametrize("name", ["teacher-tiny", "unet-s", "resnet-s", "mixer-s"])
def test_grid_not_divisible_by_4(name):
    with pytest.raises(SdkdError, match=r"grid 18×16 is not divisible by .* factor 4"):
        build_model(name, in_steps=2, out_steps=2, channels=1, height=18, width=16)
    model = build_model(name, in_steps=2, out_steps=2, channels=1, height=16, width=16)
    with pytest.raises(SdkdError, match=r"grid 16×18 is not divisible"):
        model.latent_grid(16, 18)
    if name != "mixer-s":  # the mixer rejects any grid other than its own (below)
        with pytest.raises(SdkdError, match=rf"{name}: grid 18×16 is not divisible"):
            model(torch.randn(1, 2, 1, 18, 16))


def test_bad_input_shapes():
    model = build_model("unet-s", in_steps=3, out_steps=2, channels=2, width_mult=0.25)
    with pytest.raises(SdkdError, match=r"expected T_in=3 frames of C=2 channels"):
        model(torch.randn(1, 2, 2, 16, 16))
    with pytest.raises(SdkdError, match=r"expected T_in=3 frames of C=2 channels"):
        model(torch.randn(1, 3, 1, 16, 16))
    with pytest.raises(SdkdError, match=r"\(B, T_in, C, H, W\), got 4-D"):
        model(torch.randn(1, 6, 16, 16))


def test_mixer_is_built_for_one_grid():
    model = build_model("mixer-s", in_steps=2, out_steps=2, channels=1, height=16, width=24)
    assert model.built_grid == (16, 24)
    with pytest.raises(
        SdkdError, match=r"built for a 16×24 grid but got 24×16.*height=24, width=16"
    ):
        model(torch.randn(1, 2, 1, 24, 16))
    default = build_model("mixer-s", in_steps=2, out_steps=2, channels=1)
    assert default.built_grid == (64, 64)
    assert model_spec(default)["kwargs"]["height"] == 64


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("teacher-small", {"N_T": 2, "mlp_ratio": 2}),
        ("unet-m", {"width_mult": 0.5, "depth": 1}),
        ("resnet-l", {"latent_channels": 40}),
        ("mixer-m", {"height": 32, "width": 16, "token_mlp_ratio": 1.0}),
    ],
)
def test_spec_round_trip(name, overrides):
    model = build_model(name, in_steps=3, out_steps=4, channels=2, **overrides)
    spec = model_spec(model)
    assert spec["name"] == name
    spec = json.loads(json.dumps(spec))  # plain data, as stored in a checkpoint
    rebuilt = build_from_spec(spec)
    assert type(rebuilt) is type(model)
    assert rebuilt.name == name
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    rebuilt.load_state_dict(a)
    h, w = model.built_grid or (16, 16)
    x = torch.randn(1, 3, 2, h, w)
    torch.testing.assert_close(rebuilt.eval()(x).prediction, model.eval()(x).prediction)
    # The spec is a copy: editing it does not change the model's.
    spec["kwargs"]["in_steps"] = 99
    assert model_spec(model)["kwargs"]["in_steps"] == 3


def test_spec_errors():
    from sdkd.models.unet import UNet

    direct = UNet(in_steps=2, out_steps=2, channels=1, latent_channels=16, depth=1)
    with pytest.raises(SdkdError, match=r"not built by sdkd\.models\.build_model"):
        model_spec(direct)
    for bad in [None, {"name": "unet-s"}, {"name": 3, "kwargs": {}}]:
        with pytest.raises(SdkdError, match="model spec must be"):
            build_from_spec(bad)
    with pytest.raises(SdkdError, match="lacks channels"):
        build_from_spec({"name": "unet-s", "kwargs": {"in_steps": 2, "out_steps": 2}})


# -- sizes -----------------------------------------------------------------------------------


def n_params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        model = build_model(name, in_steps=10, out_steps=10, channels=1, **kwargs)
    return model.num_parameters()


def test_teacher_sizes():
    paper = n_params("teacher-paper")
    assert 10e6 <= paper <= 60e6, paper  # OpenSTL's SimVP on Moving MNIST: 58 M (IncepU)
    assert 1e6 <= n_params("teacher-small") <= 3e6
    assert n_params("teacher-tiny") < 100e3


@pytest.mark.parametrize("family", ["unet", "resnet", "mixer"])
def test_student_sizes(family):
    teacher_width = get_family("teacher-paper")[0].sizes["paper"]["hid_T"]
    counts = []
    for size in ("s", "m", "l"):
        with torch.device("meta"):
            model = build_model(f"{family}-{size}", in_steps=10, out_steps=10, channels=1)
        assert 0.1 <= model.latent_channels / teacher_width <= 0.3, (size, model.latent_channels)
        counts.append(model.num_parameters())
    assert counts == sorted(counts) and len(set(counts)) == 3, counts
    assert counts[-1] < n_params("teacher-paper") / 5


def test_width_mult_shrinks_proportionally():
    full = build_model("resnet-m", in_steps=10, out_steps=10, channels=1)
    half = build_model("resnet-m", in_steps=10, out_steps=10, channels=1, width_mult=0.5)
    assert half.latent_channels == full.latent_channels // 2
    # Conv weights scale with width²: about a quarter of the parameters.
    assert math.isclose(half.num_parameters() / full.num_parameters(), 0.25, rel_tol=0.1)


def test_students_are_cheap():
    """The m students cost a small fraction of the paper teacher (64×64, 10 → 10, C = 1)."""
    with torch.device("meta"):
        teacher = build_model("teacher-paper", in_steps=10, out_steps=10, channels=1)
    teacher_flops = flops_per_sample(teacher, 64, 64)
    assert 20e9 <= teacher_flops <= 40e9, teacher_flops  # SimVP scale: ≈ 15 G multiply-adds
    for name in ("unet-m", "resnet-m", "mixer-m"):
        student = build_model(name, in_steps=10, out_steps=10, channels=1, height=64, width=64)
        assert flops_per_sample(student, 64, 64) * 10 < teacher_flops, name
        assert count_parameters(student) == student.num_parameters()
    with pytest.raises(SdkdError, match="not divisible"):
        flops_per_sample(teacher, 64, 62)


def test_spec_looks_through_wrappers():
    model = build_model("unet-s", in_steps=2, out_steps=2, channels=1, width_mult=0.25)
    wrapped = torch.nn.DataParallel(model)
    assert model_spec(wrapped) == model_spec(model)
