"""sdkd evaluate end to end on a tiny dataset: the evaluation file and its bad inputs."""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import experiment, file_dataset, leftovers

from sdkd.config import validate
from sdkd.data.preprocess import preprocess
from sdkd.errors import SdkdError
from sdkd.evaluate import format as evalfile
from sdkd.evaluate.format import KEYS, METRICS, SCHEMA_VERSION, read_evaluation
from sdkd.evaluate.run import evaluate_run
from sdkd.models import build_from_spec
from sdkd.plan import run_id, run_spec
from sdkd.train.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    sub_state_dict,
    weights_sha256,
)
from sdkd.train.jobs import distill_student, train_teacher

GRID = 16
OUT_STEPS = 2


def _dataset(tmp_path, name="toy", in_steps=2, out_steps=OUT_STEPS):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2 * np.pi, GRID, endpoint=False)
    phase = rng.normal(size=(9, 1, 1, 1))
    waves = np.sin(x[None, None, :, None] + 2 * x[None, None, None, :] + phase)
    data = (waves + 0.1 * np.arange(6)[None, :, None, None]).astype("f4")  # N T H W
    raw = tmp_path / f"{name}.raw.h5"
    with h5py.File(raw, "w") as f:
        f["u"] = data
    block = file_dataset(raw, split={"train": 6, "val": 1, "test": 2}, in_steps=in_steps,
                         out_steps=out_steps)
    config = validate(experiment({name: block}, evaluate={"batch_size": 4}))
    out = preprocess(raw, tmp_path / f"{name}.h5", config["datasets"][name], name=name)
    return config, out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    tmp_path = tmp_path_factory.mktemp("evaluate")
    config, data = _dataset(tmp_path)
    teacher = tmp_path / "teacher"
    train_teacher(config, "toy", data, teacher, device="cpu")
    student = tmp_path / "student"
    distill_student(config, "toy", data, teacher / "best.pt", "unet-s", "dual", 3, student,
                    device="cpu")
    evaluations = {}
    for role, run in (("teacher", teacher), ("student", student)):
        out = tmp_path / "eval" / f"{role}.json"
        returned = evaluate_run(config, "toy", data, run, out, device="cpu")
        evaluations[role] = (out, returned)
    return {"config": config, "data": data, "teacher": teacher, "student": student,
            "evaluations": evaluations, "tmp": tmp_path}


def _direct_mse(data, ckpt_path):
    """MSE of the checkpoint's model on every test window, computed without sdkd.evaluate."""
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["meta"]
    model = build_from_spec(meta["model"])
    state = ckpt["model"] if meta["role"] == "teacher" else sub_state_dict(ckpt["model"],
                                                                            "student")
    model.load_state_dict(state)
    model.eval()
    with h5py.File(data) as f:
        frames = f["test/frames"][()].astype(np.float64)  # N T C H W
        mean = np.asarray(f.attrs["mean"])[:, None, None]
        std = np.asarray(f.attrs["std"])[:, None, None]
        t_in, t_out = int(f.attrs["in_steps"]), int(f.attrs["out_steps"])
    errors, windows = [], 0
    for trajectory in frames:
        for start in range(trajectory.shape[0] - t_in - t_out + 1):
            x = (trajectory[start:start + t_in] - mean) / std
            y = trajectory[start + t_in:start + t_in + t_out]
            with torch.no_grad():
                p = model(torch.tensor(x[None], dtype=torch.float32)).prediction[0].double()
            errors.append(((p.numpy() * std + mean) - y) ** 2)
            windows += 1
    return float(np.mean(errors)), windows, float(frames.max() - frames.min())


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_evaluation_file(runs, role):
    out, returned = runs["evaluations"][role]
    raw = json.loads(out.read_text())  # strict JSON: no NaN/Infinity tokens
    assert raw == returned
    evaluation = read_evaluation(out)
    assert set(evaluation) == set(KEYS) and set(evaluation["metrics"]) == set(METRICS)
    for parse in (evalfile.per_lead_time, evalfile.spectrum,
                  evalfile.band_errors, evalfile.sample):
        assert parse(evaluation) is not None, parse.__name__
    assert evalfile.efficiency(evaluation)[1] == []  # nothing lacking
    assert evaluation["schema_version"] == SCHEMA_VERSION
    assert evaluation["role"] == role and evaluation["dataset"] == "toy"
    assert evaluation["split"] == "test" and evaluation["grid"] == [GRID, GRID]
    assert evaluation["in_steps"] == 2 and evaluation["out_steps"] == OUT_STEPS
    with h5py.File(runs["data"]) as f:
        channels = [str(c) for c in f.attrs["channels"]]
        dt = float(f.attrs["dt"])
    assert evaluation["channels"] == channels and evaluation["dt"] == dt
    run = runs[role]
    assert evaluation["checkpoint"] == str(run / "best.pt")
    assert len(evaluation["checkpoint_sha256"]) == 64
    # the run identity is the checkpoint's; the weights hash is of the evaluated model
    ckpt = load_checkpoint(run / "best.pt")
    assert evaluation["identity"] == ckpt["identity"]
    assert evaluation["run_id"] == ckpt["run_id"] == run_id(ckpt["identity"])
    state = ckpt["model"] if role == "teacher" else sub_state_dict(ckpt["model"], "student")
    assert evaluation["weights_sha256"] == weights_sha256(state)
    if role == "teacher":
        assert evaluation["model"] == "teacher-tiny"
        assert (evaluation["family"], evaluation["size"]) == ("teacher", "tiny")
        assert evaluation["bands"] is None and evaluation["setting"] is None
        assert evaluation["seed"] == runs["config"]["seed"]
    else:
        assert evaluation["model"] == "unet-s"
        assert (evaluation["family"], evaluation["size"]) == ("unet", "s")
        assert evaluation["bands"] == "dual" and evaluation["setting"] == "dual"
        assert evaluation["seed"] == 3

    # error metrics: right lengths, MSE equal to a direct computation over the test set
    mse, windows, data_range = _direct_mse(runs["data"], run / "best.pt")
    assert evaluation["n_windows"] == windows == 6
    assert evaluation["data_range"] == pytest.approx(data_range, rel=1e-6)
    metrics = evaluation["metrics"]
    assert metrics["mse"] == pytest.approx(mse, rel=1e-5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(mse), rel=1e-5)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(data_range**2 / mse), rel=1e-5)
    assert -1 <= metrics["ssim"] <= 1 and metrics["rel_l2"] > 0 and metrics["mae"] > 0
    # one channel, no mask: its own metrics are the overall ones, every pixel counts
    assert evaluation["channel_metrics"] == {
        channels[0]: {"data_range": evaluation["data_range"], **metrics}}
    assert evaluation["mask"] is None
    for key, values in evaluation["per_lead_time"].items():
        assert len(values) == OUT_STEPS, key
    assert np.mean(evaluation["per_lead_time"]["mse"]) == pytest.approx(mse, rel=1e-5)

    bands = evaluation["band_errors"]
    assert bands["cutoffs"] == runs["config"]["evaluate"]["band_cutoffs"]
    assert len(bands["mse"]) == len(bands["truth_energy"]) == len(bands["cutoffs"]) + 1
    assert sum(bands["mse"]) == pytest.approx(metrics["mse"], rel=1e-9)

    spectrum = evaluation["spectrum"]
    n = len(spectrum["k"])
    assert spectrum["k"] == list(range(n)) and n == round(math.hypot(GRID / 2, GRID / 2)) + 1
    assert len(spectrum["prediction"]) == len(spectrum["truth"]) == len(spectrum["error"]) == n
    assert sum(spectrum["error"]) == pytest.approx(metrics["mse"], rel=1e-9)  # Parseval

    sample = evaluation["sample"]
    assert sample["window"] == 0 and sample["channel"] == channels[0]
    assert sample["lead_times"] == [1, OUT_STEPS]
    for key in ("truth", "prediction"):
        assert np.asarray(sample[key]).shape == (2, GRID, GRID)
    with h5py.File(runs["data"]) as f:
        first_target = f["test/frames"][0, 2, 0]  # window 0 = trajectory 0, frames 2, 3
    np.testing.assert_allclose(sample["truth"][0], first_target, rtol=1e-5, atol=1e-6)

    eff = evaluation["efficiency"]
    assert eff["parameters"] > 0 and eff["flops_per_sample"] > 0
    assert eff["inference"]["device"].startswith("cpu")
    assert eff["inference"]["batch"] == runs["config"]["evaluate"]["batch_size"]
    assert eff["inference"]["latency_ms"] > 0 and eff["inference"]["samples_per_s"] > 0
    training = eff["training"]
    assert training["epochs"] == 1 and training["device"].startswith("cpu")
    assert training["seconds"] > 0 and training["seconds_per_epoch"] == training["seconds"]
    assert training["peak_memory_mb"] > 0
    assert evaluation["evaluation_seconds"] > 0
    assert evaluation["created_with"].startswith("sdkd ")


def test_inference_timing_is_bounded(runs, monkeypatch):
    """Warm-up, then timed runs until TIMING_REPEATS or TIMING_BUDGET_S (at least one); a
    batch size the evaluation loop already ran skips its warm-up."""
    from sdkd.evaluate import run as evaluate_module

    model = evaluate_module.load_model(runs["teacher"] / "best.pt", {}).model
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _module, args: calls.append(args[0].shape[0]))
    frame = (1, GRID, GRID)
    cpu = torch.device("cpu")

    out = evaluate_module.inference_cost(model, frame, 4, cpu)
    repeats = evaluate_module.TIMING_REPEATS
    assert calls == [1] * (1 + repeats) + [4] * (1 + repeats)  # tiny model: within budget
    assert out["repeats"] == repeats and out["batch"] == 4

    calls.clear()
    monkeypatch.setattr(evaluate_module, "TIMING_BUDGET_S", 0.0)  # a model slower than it
    out = evaluate_module.inference_cost(model, frame, 4, cpu, warm_batches={4, 2})
    assert calls == [1, 1, 4]  # batch 1: warm-up + one timed run; batch 4: warm already
    assert out["repeats"] == 1
    assert out["latency_ms"] > 0 and out["samples_per_s"] > 0


def test_checkpoint_path_without_history(runs, tmp_path):
    lone = tmp_path / "lone.pt"
    shutil.copy(runs["teacher"] / "best.pt", lone)
    out = evaluate_run(runs["config"], "toy", runs["data"], lone, tmp_path / "e.json",
                       device="cpu")
    assert out["checkpoint"] == str(lone)
    assert set(out["efficiency"]["training"].values()) == {None}
    teacher = read_evaluation(runs["evaluations"]["teacher"][0])
    for key, value in teacher["metrics"].items():  # same weights, same numbers
        assert out["metrics"][key] == pytest.approx(value, rel=1e-9), key


def test_checkpoint_of_another_dataset_or_shape(runs, tmp_path):
    config, data = _dataset(tmp_path, name="other")
    out = tmp_path / "e" / "other.json"
    with pytest.raises(SdkdError, match="trained on dataset 'toy', expected 'other'"):
        evaluate_run(config, "other", data, runs["teacher"], out, device="cpu")
    config, data = _dataset(tmp_path / "..", name="toy", in_steps=3)
    with pytest.raises(SdkdError, match="in_steps=2, expected 3"):
        evaluate_run(config, "toy", data, runs["student"], out, device="cpu")
    with pytest.raises(SdkdError, match="holds dataset 'toy', expected 'other'"):
        evaluate_run(config, "other", data, runs["student"], out, device="cpu")
    assert leftovers(tmp_path / "e") == []


def test_missing_or_corrupt_checkpoint(runs, tmp_path):
    config, data = runs["config"], runs["data"]
    missing = tmp_path / "nowhere"
    with pytest.raises(SdkdError, match="not found") as info:
        evaluate_run(config, "toy", data, missing, tmp_path / "e.json", device="cpu")
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.pt"
    blob = (runs["teacher"] / "best.pt").read_bytes()
    broken.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SdkdError, match="corrupt"):
        evaluate_run(config, "toy", data, broken, tmp_path / "e.json", device="cpu")
    with pytest.raises(SdkdError, match="dataset file not found"):
        evaluate_run(config, "toy", tmp_path / "no.h5", runs["teacher"], tmp_path / "e.json",
                     device="cpu")
    assert leftovers(tmp_path) == ["broken.pt"]


def test_read_evaluation_rejects_old_or_incomplete_files(runs, tmp_path):
    good = json.loads(runs["evaluations"]["student"][0].read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**good, "schema_version": 0}))
    with pytest.raises(SdkdError,
                       match="evaluation schema_version 0, expected 2 or 3; rerun") as info:
        read_evaluation(old)
    assert str(old) in str(info.value)

    other = tmp_path / "other.json"
    other.write_text(json.dumps({**good, "run_id": "0" * 12}))
    with pytest.raises(SdkdError, match="run_id '000000000000' does not name its identity"):
        read_evaluation(other)
    other.write_text(json.dumps({**good, "identity": {"spec": {}}}))
    with pytest.raises(SdkdError, match=r"identity\.inputs has no `data` fingerprint"):
        read_evaluation(other)
    expect = {"dataset": "toy", "role": "student", "model": "unet-s", "bands": "dual",
              "setting": "dual", "seed": 4}
    with pytest.raises(SdkdError, match=r"seed is 3, expected 4 \(the file belongs to another"):
        read_evaluation(runs["evaluations"]["student"][0], expect)

    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({k: v for k, v in good.items() if k != "spectrum"}))
    with pytest.raises(SdkdError, match=r"lacks key\(s\) spectrum"):
        read_evaluation(partial)
    good["metrics"].pop("ssim")
    partial.write_text(json.dumps(good))
    with pytest.raises(SdkdError, match=r"lacks key\(s\) metrics.ssim") as info:
        read_evaluation(partial)
    assert str(partial) in str(info.value)

    for text, match in (("{not json", "not valid JSON"), ("[1]", "expected a JSON object")):
        partial.write_text(text)
        with pytest.raises(SdkdError, match=match):
            read_evaluation(partial)
    with pytest.raises(SdkdError, match="not found"):
        read_evaluation(tmp_path / "absent.json")


def test_bad_device_and_cutoffs(runs, tmp_path):
    config, data = runs["config"], runs["data"]
    with pytest.raises(SdkdError, match="device"):
        evaluate_run(config, "toy", data, runs["teacher"], tmp_path / "e.json", device="tpu")
    coarse = {**config, "evaluate": {"band_cutoffs": [20.0], "batch_size": 4}}
    with pytest.raises(SdkdError, match=r"evaluate\.band_cutoffs"):
        evaluate_run(coarse, "toy", data, runs["teacher"], tmp_path / "e.json", device="cpu")
    assert leftovers(tmp_path) == []


def test_non_finite_predictions(runs, tmp_path):
    ckpt = load_checkpoint(runs["teacher"] / "best.pt")
    state = dict(ckpt["model"])
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)
    state[key] = torch.full_like(state[key], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {**ckpt, "model": state})
    with pytest.raises(SdkdError, match="predicts NaN or Inf"):
        evaluate_run(runs["config"], "toy", runs["data"], tmp_path / "nan.pt",
                     tmp_path / "e.json", device="cpu")
    assert not (tmp_path / "e.json").exists()


def test_a_student_names_the_teacher_it_was_distilled_from(runs):
    teacher = read_evaluation(runs["evaluations"]["teacher"][0])
    student = read_evaluation(runs["evaluations"]["student"][0])
    assert student["identity"]["inputs"]["teacher"] == teacher["weights_sha256"]
    assert student["identity"]["spec"] == run_spec(runs["config"], "toy", "student", "unet-s",
                                                   "dual", 3)
    assert teacher["identity"]["inputs"]["teacher"] is None


def test_checkpoint_without_a_run_identity(runs, tmp_path):
    ckpt = load_checkpoint(runs["teacher"] / "best.pt")
    old = {k: v for k, v in ckpt.items() if k not in ("identity", "run_id")}
    save_checkpoint(tmp_path / "old.pt", old)
    with pytest.raises(SdkdError, match="written by an older sdkd; train it again") as info:
        evaluate_run(runs["config"], "toy", runs["data"], tmp_path / "old.pt",
                     tmp_path / "e.json", device="cpu")
    assert str(tmp_path / "old.pt") in str(info.value)
    save_checkpoint(tmp_path / "forged.pt", {**ckpt, "run_id": "0" * 12})
    with pytest.raises(SdkdError, match="run_id '000000000000' does not name its identity"):
        evaluate_run(runs["config"], "toy", runs["data"], tmp_path / "forged.pt",
                     tmp_path / "e.json", device="cpu")
    assert not (tmp_path / "e.json").exists()


def test_evaluation_holds_a_gpu_lease(runs, tmp_path, monkeypatch):
    """Under ``--resources gpu=N`` an evaluation must hold a GPU like a training job: while
    it runs, the (fake) GPU's lock is taken, so no other job can lease it."""
    import sdkd.evaluate.run as run_module
    from sdkd.train.lease import gpu_lease

    monkeypatch.setenv("SDKD_FAKE_GPUS", "0")
    monkeypatch.setenv("SDKD_GPU_LOCK_DIR", str(tmp_path / "locks"))
    held = []
    real = run_module._evaluate

    def evaluate_and_probe(*args, **kwargs):
        with pytest.raises(SdkdError, match="all GPUs busy"), gpu_lease(timeout=0):
            pass
        held.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "_evaluate", evaluate_and_probe)
    out = tmp_path / "teacher.json"
    result = evaluate_run(runs["config"], "toy", runs["data"], runs["teacher"], out)
    assert held == [True] and result["efficiency"]["inference"]["precision"] == "fp32"
    with gpu_lease(timeout=0) as lease:  # released afterwards
        assert lease.gpu_id == "0"


def test_training_cost_names_what_peak_memory_measures(tmp_path):
    from sdkd.evaluate.run import training_cost

    def history(*rows: str) -> None:
        (tmp_path / "history.csv").write_text("\n".join(rows) + "\n")

    history("epoch,seconds,peak_rss_mb,device", "1,2.0,300,cpu (1 threads)",
            "2,2.0,310,cpu (1 threads)")
    cost = training_cost(tmp_path)
    assert (cost["peak_rss_mb"], cost["peak_cuda_allocated_mb"]) == (310.0, None)
    assert (cost["peak_memory_mb"], cost["peak_memory_measure"]) == (310.0, "rss")
    # a run resumed from the CPU onto a GPU: the GPU figure is the headline
    history("epoch,seconds,peak_rss_mb,peak_cuda_allocated_mb,device",
            "1,2.0,300,,cpu (1 threads)", "2,1.0,,900,cuda:0 (NVIDIA H200)")
    cost = training_cost(tmp_path)
    assert (cost["peak_memory_mb"], cost["peak_memory_measure"]) == (900.0, "cuda_allocated")
    assert cost["peak_rss_mb"] == 300.0
    # an older history's one column means what its device measured
    history("epoch,seconds,peak_memory_mb,device", "1,2.0,800,cuda:0 (NVIDIA H200)")
    cost = training_cost(tmp_path)
    assert (cost["peak_cuda_allocated_mb"], cost["peak_rss_mb"]) == (800.0, None)
    assert cost["peak_memory_measure"] == "cuda_allocated"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluation_on_a_leased_gpu_matches_the_cpu(runs, tmp_path, monkeypatch):
    monkeypatch.delenv("SDKD_FAKE_GPUS", raising=False)
    monkeypatch.setenv("SDKD_GPU_LOCK_DIR", str(tmp_path / "locks"))
    gpu = evaluate_run(runs["config"], "toy", runs["data"], runs["student"],
                       tmp_path / "gpu.json")
    cpu = runs["evaluations"]["student"][1]
    assert gpu["efficiency"]["inference"]["device"].startswith("cuda")
    # convolutions may run in TF32 on the GPU (cuDNN's default)
    assert gpu["metrics"]["mse"] == pytest.approx(cpu["metrics"]["mse"], rel=1e-2)
    assert list((tmp_path / "locks").glob("gpu-GPU-*.lock"))
