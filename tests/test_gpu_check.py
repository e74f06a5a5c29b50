"""scripts/gpu-check.sh and benchmarks/gpu_check.py: the one command of a GPU run, kept
from rotting by running every part of it in its dry mode (tiny shapes, on the CPU)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# What each part must report (docs/gpu.md names them); CUDA-only figures are null here.
FIGURES = {
    "env": {"python", "torch", "cuda_available", "packages", "sdkd_from"},
    "gpu_tests": {"files", "counts", "failures"},
    "solver": {"device", "grid", "seconds_per_trajectory_median", "rel_l2_error"},
    "models": {"models", "teacher_mfu", "matmul_tflops_per_s", "spec_peak",
               "student_vs_teacher"},
    "training": {"shapes", "acquire_s", "teacher", "students", "evaluation",
                 "student_vs_teacher_fp32"},
    "paper_hours": {"measured_total_hours", "estimated_gpu_hours_flop_only",
                    "estimated_gpu_hours_with_overheads", "s_per_epoch"},
    "smoke_dag": {"wall_s", "jobs", "dry_run"},
}


@pytest.fixture(scope="module")
def gpu_check():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))
        yield importlib.import_module("gpu_check")


@pytest.mark.workflow
@pytest.mark.slow
def test_dry_run_of_every_part_reports_every_figure(tmp_path):
    out = tmp_path / "out"
    # no wheels: this environment has the packages (a local .whl/ is for the GPU's Python)
    env = {**os.environ, "PYTHON": sys.executable, "SDKD_WHEELS": str(tmp_path / "none")}
    result = subprocess.run(["bash", "scripts/gpu-check.sh", str(out), "--dry"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["figures.json", "log.txt", "raw.json",
                                                     "summary.md"]
    doc = json.loads((out / "figures.json").read_text())
    assert doc["dry"] is True and list(doc["parts"]) == list(FIGURES)
    for name, keys in FIGURES.items():
        part = doc["parts"][name]
        assert part["status"] == "ok", (name, part.get("error"))
        assert keys <= set(part["figures"]), (name, keys - set(part["figures"]))

    figures = {name: part["figures"] for name, part in doc["parts"].items()}
    assert figures["gpu_tests"]["counts"].get("skipped", 0) >= 4  # no CUDA here
    teacher = figures["training"]["teacher"]
    assert teacher["resumed_where_killed"] and teacher["killed_after_epoch"] >= 1
    assert teacher["epochs"] == list(range(1, len(teacher["epochs"]) + 1))
    assert teacher["peak_rss_mb"] > 0 and teacher["peak_cuda_allocated_mb"] is None
    for run in figures["training"]["evaluation"].values():
        assert run["precision"] == "fp32" and run["samples_per_s"] > 0
    assert set(figures["training"]["student_vs_teacher_fp32"]) == {"unet-m"}
    for model in figures["models"]["models"].values():
        assert model["precision"] == "fp32" and model["peak_rss_mb"] > 0
    assert figures["models"]["teacher_mfu"] is None  # CPU: no spec peak, no MFU
    assert figures["paper_hours"]["measured_total_hours"] > 0
    assert figures["smoke_dag"]["jobs"] > 0
    assert "teacher killed after epoch" in (out / "summary.md").read_text()


def test_refuses_to_run_without_cuda(gpu_check, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_failed_or_unaffordable_part_is_recorded_and_the_rest_runs(gpu_check, tmp_path,
                                                                      monkeypatch):
    def broken(ctx, timeout):
        raise gpu_check.PartError("no figures today")

    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "solver", broken)
    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "env", lambda ctx, timeout: {"python": "x"})
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--dry", "--parts", "solver,env"]) == 1
    parts = json.loads((out / "figures.json").read_text())["parts"]
    assert parts["solver"]["status"] == "failed" and "no figures today" in parts["solver"]["error"]
    assert parts["env"] == {**parts["env"], "status": "ok", "figures": {"python": "x"}}

    assert gpu_check.main(["--out", str(out), "--dry", "--parts", "env", "--budget", "1"]) == 1
    parts = json.loads((out / "figures.json").read_text())["parts"]
    assert parts["env"]["status"] == "skipped" and "budget" in parts["env"]["error"]


def test_a_hung_command_is_killed_at_its_timeout(gpu_check, tmp_path):
    ctx = gpu_check.Context(dry=True, out=tmp_path, work=tmp_path, env=dict(os.environ),
                            deadline=0.0)
    with pytest.raises(gpu_check.PartError, match="timed out after 1s"):
        gpu_check.run(ctx, [sys.executable, "-c", "import time; time.sleep(60)"], 1.0)
    assert "TIMEOUT" in ctx.log[-1]


def test_summary_of_a_cuda_run(gpu_check):
    """The summary's CUDA-only lines (MFU, peak CUDA memory), from a made-up document."""
    doc = {"date": "2026-12-01T00:00:00+00:00", "dry": False, "budget_s": 470, "wall_s": 300,
           "parts": {
               "env": {"status": "ok", "seconds": 3.0, "figures": {"device_name": "NVIDIA H200"}},
               "models": {"status": "ok", "seconds": 50.0, "figures": {
                   "models": {"teacher-paper": {
                       "precision": "bf16-autocast", "train_samples_per_s": 900.0,
                       "train_batch": 64, "inference_samples_per_s": 3000.0,
                       "latency_b1_ms": 4.0}},
                   "teacher_mfu": {"mfu_vs_spec_peak": 0.2, "mfu_vs_measured_matmul": 0.25}}},
               "training": {"status": "failed", "seconds": 9.0, "error": "a | b",
                            "figures": None}}}
    text = gpu_check.summary_markdown(doc)
    assert "device: NVIDIA H200" in text
    assert "teacher MFU: 0.2 of the spec peak, 0.250 of the measured matmul" in text
    assert "teacher-paper (bf16-autocast): train 900.0 samples/s" in text
    assert "| training | failed | 9.0 | a / b |" in text
