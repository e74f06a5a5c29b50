"""benchmarks/models.py and the counting it shares with paper_hours.py (benchmarks/_counts.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models():
    # The scripts import their helpers as siblings (Python puts a script's folder first on
    # sys.path); here the test does that.
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))
        yield importlib.import_module("models")


def test_timed_step_is_the_engines(models):
    torch.manual_seed(0)
    model = models.make_model("unet-s")
    before = [p.detach().clone() for p in model.parameters()]
    row = models.make_train_step(model, 1, "cpu", 2)()
    # Trainer.step's row with the teacher job's loss: [total, mse, gradient norm].
    assert row.shape == (3,) and bool(torch.isfinite(row).all())
    assert row[0] == row[1] and row[2] > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_conv_backward_costs_one_forward_per_gradient(models):
    """torch counts a depthwise conv's weight gradient as if dense; the correction does not."""
    counts = importlib.import_module("_counts")
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    mapping = {torch.ops.aten.convolution_backward: counts.conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        conv(x).sum().backward()
    forward = 2 * 2 * 8 * 3 * 3 * 16 * 16  # 2 · batch · C_out · (C_in / groups) · k² · H · W
    assert counter.get_total_flops() == 3 * forward  # forward, input and weight gradients

    corrected, raw = models.train_flops_per_sample(models.make_model("teacher-tiny"))
    assert corrected < raw  # its depthwise convolutions
    corrected, raw = models.train_flops_per_sample(models.make_model("unet-s"))
    assert corrected == raw  # no grouped convolutions


def test_mfu_is_given_against_the_spec_peak_and_the_measured_matmul(models):
    peaks = importlib.import_module("_peaks")
    assert peaks.spec_peak_tflops("NVIDIA H200")[0] == 989.0
    assert peaks.spec_peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert peaks.spec_peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert peaks.spec_peak_tflops("Some GPU")[0] is None
    assert peaks.spec_peak_tflops("Some GPU", 100.0) == (100.0, "given (--spec-peak-tflops)")
    train = {"precision": "bf16-autocast", "batch": 64}
    mfu = models.teacher_mfu(395e12, 790e3, 989.0, train)  # 395 TFLOP/s, matmul 790
    assert mfu["mfu_vs_measured_matmul"] == pytest.approx(0.5)
    assert mfu["mfu_vs_spec_peak"] == pytest.approx(395 / 989)
    assert mfu["precision"] == "bf16-autocast"
    assert models.teacher_mfu(1e12, 1e3, None, train)["mfu_vs_spec_peak"] is None
    assert [models.precision(d) for d in ("cpu", "cuda")] == ["fp32", "bf16-autocast"]
