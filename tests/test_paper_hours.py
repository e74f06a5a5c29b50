"""benchmarks/paper_hours.py on the smoke config: the JSON it prints and the grid it sizes."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from sdkd.config import load
from sdkd.plan import expected_runs

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "config" / "smoke.yaml"


@pytest.fixture(scope="module")
def paper_hours():
    # The scripts import their helpers (_timing, _counts, _host) as siblings, which works
    # because Python puts a script's folder first on sys.path; here the test does that.
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))
        yield importlib.import_module("paper_hours")


def test_smoke_grid_measured_and_estimated(paper_hours, capsys):
    argv = ["--config", str(SMOKE), "--device", "cpu", "--steps", "1", "--repeats", "1",
            "--warmup", "0", "--threads", "1"]
    assert paper_hours.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)

    config = load(SMOKE)
    runs = expected_runs(config)
    grid = doc["grid"]
    assert grid["runs_total"] == len(runs)
    assert sum(d["teacher_runs"] + d["student_runs"] for d in grid["datasets"].values()) == len(
        runs
    )
    # Windows per trajectory: (frames − in − out) // stride + 1 (ForecastWindows).
    ns, dr = grid["datasets"]["navier_stokes"], grid["datasets"]["diffusion_reaction"]
    assert ns["windows"] == {"train": 6, "val": 1, "test": 1}
    assert dr["windows"] == {"train": 4 * 3, "val": 3, "test": 3}
    assert ns["training"]["student"]["steps_per_epoch"] == 2  # ceil(6 / 4)
    assert ns["students"]["unet-s"] == {  # `none` has no teacher
        "runs": 3, "distilled_runs": 2, "runs_by_setting": {"none": 1, "dual": 1, "fitnet": 1}}

    models = {config["models"]["teacher"], *config["models"]["students"]}
    measured, estimated = doc["measured"], doc["estimated"]
    assert measured["device"] == "cpu"
    for dataset in config["datasets"]:
        assert set(doc["models"][dataset]) == models
        assert set(measured["models"][dataset]) == models
        assert set(estimated["models"][dataset]) == models
    step = measured["models"]["navier_stokes"]["unet-s"]
    assert step["train_s_per_step"] > 0 and step["s_per_epoch"] > 0
    # The engine's step with the jobs' losses: the teacher's MSE, a student's distillation
    # loss once per band setting, and the student's figure their mean over its runs.
    teacher = measured["models"]["navier_stokes"]["teacher-tiny"]
    assert list(teacher["train_by_loss"]) == ["mse"]
    by_setting = step["train_by_loss"]
    assert set(by_setting) == {"none", "dual", "fitnet"}
    assert all(s["runs"] == 1 and s["train_s_per_step"] > 0 and s["val_s_per_sample"] > 0
               for s in by_setting.values())
    assert step["train_s_per_step"] == pytest.approx(
        sum(s["train_s_per_step"] for s in by_setting.values()) / 3)
    assert step["peak_memory"] is None  # CPU memory only with --cpu-memory
    assert measured["total_hours"] > 0
    assert measured["total_hours_with_assumed_job_overhead"] > measured["total_hours"]
    assert estimated["flop_only"]["total_gpu_hours"] > 0
    assert (estimated["with_overheads"]["total_gpu_hours"]
            > estimated["flop_only"]["total_gpu_hours"])
    assert estimated["assumptions"]["pipeline_jobs"] == 2 * len(runs)
    assert "ESTIMATE" in estimated["label"]


def test_paper_grid(paper_hours):
    """config/paper.yaml: 1000/100/100 trajectories of 20 frames, 10 → 10: one window each."""
    config = load(ROOT / "config" / "paper.yaml")
    grids = {name: paper_hours.dataset_grid(name, ds, ROOT / "results" / "data")
             for name, ds in config["datasets"].items()}
    plan = paper_hours.grid_plan(config, grids)
    assert plan["runs_total"] == len(expected_runs(config)) == 1 + 9 * 9 * 3
    ns = plan["datasets"]["navier_stokes"]
    assert ns["windows"] == {"train": 1000, "val": 100, "test": 100}
    assert ns["training"]["teacher"]["steps_per_epoch"] == 63  # ceil(1000 / 16)
    assert all(s["runs"] == 27 and s["distilled_runs"] == 24 for s in ns["students"].values())
    assert all(n == 3 for s in ns["students"].values() for n in s["runs_by_setting"].values())
    # teacher-paper's latent: 512 channels on a 16 × 16 grid (64 × 64 input, factor 4).
    assert ns["teacher_cache"]["feature_shape"] == [512, 16, 16]
    assert ns["teacher_cache"]["features"] == 2  # decoupled reads both evolution paths


def test_estimate_only_and_bad_model(paper_hours, capsys):
    assert paper_hours.main(["--config", str(SMOKE), "--estimate-only", "--models", "unet-s"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measured"] is None
    # --models limits the timing only: the estimate covers the whole grid.
    assert set(doc["estimated"]["models"]["navier_stokes"]) == {"teacher-tiny", "unet-s"}
    assert doc["estimated"]["flop_only"]["total_gpu_hours"] > 0
    assert paper_hours.main(["--config", str(SMOKE), "--models", "nope-s"]) == 2
