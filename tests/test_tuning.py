"""The tuning stage: grids of band-setting values, the choice on validation, its checks."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from helpers import assert_clean_failure, experiment, file_dataset, write_config

from sdkd.config import validate
from sdkd.data.preprocess import preprocess
from sdkd.errors import SdkdError
from sdkd.jsonfile import write_json
from sdkd.plan import (
    band_setting,
    run_identity,
    tuned_settings,
    tuning_runs,
    tuning_spec,
)
from sdkd.train.checkpoint import load_checkpoint, save_checkpoint
from sdkd.train.jobs import distill_student, train_teacher
from sdkd.tuning import choose, read_choice, read_tuning

SPLIT = {"train": 6, "val": 1, "test": 1}


def _config(settings, tmp_path, **blocks):
    raw = tmp_path / "toy.raw.h5"
    if not raw.exists():
        x = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        phase = np.random.default_rng(0).normal(size=(8, 1, 1, 1))
        waves = np.sin(x[None, None, :, None] + x[None, None, None, :] + phase)
        with h5py.File(raw, "w") as f:
            f["u"] = (waves + 0.1 * np.arange(6)[None, :, None, None]).astype("f4")
    block = file_dataset(raw, split=SPLIT, in_steps=2, out_steps=2)
    return validate(experiment({"toy": block}, distill={"settings": settings}, **blocks))


TUNED = {"none": {}, "dual": {"cutoffs": [1.5], "weights": [1.0, 1.0],
                              "tune": {"weights": [[1.0, 1.0], [1.0, 4.0]],
                                       "lam": [0.5, 1.0, 2.0]}}}


# ---- the grid -------------------------------------------------------------------------


def test_points_are_the_product_in_sorted_key_order(tmp_path):
    config = _config(TUNED, tmp_path)
    setting = band_setting(config["distill"], "dual")
    points = setting.points()
    assert len(points) == 6
    # lam sorts before weights, and the last key varies fastest
    assert points[0] == {"lam": 0.5, "weights": [1.0, 1.0]}
    assert points[1] == {"lam": 0.5, "weights": [1.0, 4.0]}
    assert points[5] == {"lam": 2.0, "weights": [1.0, 4.0]}
    chosen = setting.with_values(points[3])
    assert chosen.lam == 1.0 and chosen.weights == (1.0, 4.0) and chosen.tune is None
    assert chosen.cutoffs == (1.5,)  # untouched keys keep the setting's values
    assert band_setting(config["distill"], "none").points() == []
    with pytest.raises(SdkdError, match="cannot be tuned"):
        setting.with_values({"seeds": [3]})


def test_tuning_runs_and_their_specs(tmp_path):
    config = _config(TUNED, tmp_path, tuning={"seed": 7, "epochs": 1})
    assert tuned_settings(config, "toy") == ["dual"]
    runs = tuning_runs(config)
    assert [r["point"] for r in runs] == list(range(6))
    assert {(r["student"], r["seed"]) for r in runs} == {(config["models"]["students"][0], 7)}
    assert runs[4]["run_dir"] == "tuning/toy/dual/point-4"
    specs = [tuning_spec(config, "toy", "dual", p) for p in range(6)]
    assert len({json.dumps(s, sort_keys=True) for s in specs}) == 6
    assert specs[1]["bands"]["weights"] == [1.0, 4.0] and specs[1]["bands"]["tune"] is None
    assert specs[1]["training"]["epochs"] == 1 and specs[1]["seed"] == 7
    with pytest.raises(SdkdError, match="6 tuning points"):
        tuning_spec(config, "toy", "dual", 6)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"none": {"tune": {"lam": [0.0, 1.0]}}}, "none setting has no distillation term"),
    ({"dual": {"cutoffs": [1.0], "weights": [1.0, 1.0],
               "tune": {"cutoffs": [[1.0], [2.0, 1.5]]}}}, "tune.cutoffs[1]"),
    ({"dual": {"cutoffs": [1.0], "weights": [1.0, 1.0],
               "tune": {"lam": [float(i) for i in range(16)],
                        "latent_weight": [float(i) for i in range(5)]}}}, "80 combinations"),
])
def test_bad_grids_are_refused_with_their_key(tmp_path, settings, expected):
    with pytest.raises(SdkdError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        _config(settings, tmp_path)


def test_every_point_must_build_a_loss(tmp_path):
    settings = {"dual": {"cutoffs": [1.5], "weights": [1.0, 1.0],
                         "tune": {"weights": [[1.0, 1.0], [1.0]]}}}
    with pytest.raises(SdkdError, match=r"expects 2 .* weights, got 1.*\(tuning point 1"):
        _config(settings, tmp_path)


# ---- the choice ------------------------------------------------------------------------


def _plant(config, root, scores):
    """done.json of every tuning run of ``dual`` with the given validation MSEs."""
    for run, score in zip(tuning_runs(config), scores, strict=True):
        spec = tuning_spec(config, "toy", "dual", run["point"])
        write_json(root / run["run_dir"] / "done.json",
                   {"best_val": score, "best_epoch": 1,
                    "identity": run_identity(spec, data="x")})


def test_the_lowest_validation_mse_wins_and_ties_go_to_the_earlier_point(tmp_path):
    config = _config(TUNED, tmp_path)
    _plant(config, tmp_path, [3.0, 2.0, 0.7, 5.0, 0.7, 1.0])
    doc = choose(config, "toy", "dual", tmp_path, tmp_path / "dual.json")
    assert doc["chosen"]["point"] == 2 and doc["chosen"]["val_mse"] == 0.7
    assert read_choice(tmp_path / "dual.json", config, "toy", "dual") == {
        "lam": 1.0, "weights": [1.0, 1.0]}
    assert [p["val_mse"] for p in read_tuning(tmp_path / "dual.json", config, "toy",
                                              "dual")["points"]] == [3.0, 2.0, 0.7, 5.0, 0.7, 1.0]


def test_a_run_of_another_spec_is_not_used(tmp_path):
    config = _config(TUNED, tmp_path)
    _plant(config, tmp_path, [1.0] * 6)
    other = _config({**TUNED, "dual": {**TUNED["dual"], "latent_weight": 3.0}}, tmp_path)
    with pytest.raises(SdkdError, match="another spec than tuning point 0"):
        choose(other, "toy", "dual", tmp_path, tmp_path / "dual.json")
    assert not (tmp_path / "dual.json").exists()


def test_a_tuning_file_of_another_grid_is_refused(tmp_path):
    config = _config(TUNED, tmp_path)
    _plant(config, tmp_path, [1.0] * 6)
    choose(config, "toy", "dual", tmp_path, tmp_path / "dual.json")
    narrower = {**TUNED, "dual": {**TUNED["dual"], "tune": {"lam": [0.5, 1.0]}}}
    with pytest.raises(SdkdError, match="another grid"):
        read_choice(tmp_path / "dual.json", _config(narrower, tmp_path), "toy", "dual")
    doc = json.loads((tmp_path / "dual.json").read_text())
    doc["chosen"]["values"]["lam"] = 9.0
    (tmp_path / "dual.json").write_text(json.dumps(doc))
    with pytest.raises(SdkdError, match="not a point of the grid"):
        read_choice(tmp_path / "dual.json", config, "toy", "dual")


# ---- a planted problem, trained for real -------------------------------------------------


def test_the_tuning_stage_finds_the_planted_optimum(tmp_path, sdkd_cli):
    """Response distillation from a teacher whose weights are wrecked: the more the
    student imitates it, the worse it forecasts, so of λ ∈ {1000, 0, 30} the search must
    choose λ = 0 (the middle point: not the first by accident). The tuned run then trains
    with λ = 0 and says so in its identity."""
    settings = {"output": {"tune": {"lam": [1000.0, 0.0, 30.0]}}}
    # enough steps for the student to follow whichever target it is given
    training = {"teacher": {"epochs": 1, "batch_size": 2},
                "student": {"epochs": 8, "batch_size": 2, "lr": 1e-2}}
    config = _config(settings, tmp_path, tuning={"seed": 5}, training=training)
    data = preprocess(None, tmp_path / "toy.h5", config["datasets"]["toy"], name="toy")
    teacher = tmp_path / "teacher"
    train_teacher(config, "toy", data, teacher, device="cpu")
    ckpt = load_checkpoint(teacher / "best.pt")
    generator = torch.Generator().manual_seed(0)
    ckpt["model"] = {k: v + 10.0 * torch.randn(v.shape, generator=generator)
                     if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(teacher / "best.pt", ckpt)

    student = config["models"]["students"][0]
    for run in tuning_runs(config):
        distill_student(config, "toy", data, teacher / "best.pt", student, "output", 5,
                        tmp_path / run["run_dir"], device="cpu", tune_point=run["point"])
    config_path = write_config(tmp_path, {"toy": config["datasets"]["toy"]},
                               distill={"settings": settings}, tuning={"seed": 5},
                               training=training)
    status, err = sdkd_cli("tune", "--config", config_path, "--dataset", "toy",
                           "--bands", "output", "--results-root", tmp_path,
                           "--out", tmp_path / "tuning/toy/output.json")
    assert status == 0, err
    doc = json.loads((tmp_path / "tuning/toy/output.json").read_text())
    scores = [p["val_mse"] for p in doc["points"]]
    assert doc["chosen"]["values"] == {"lam": 0.0}, scores
    assert scores[1] < min(scores[0], scores[2]) / 2, scores  # a clear optimum

    out = tmp_path / "final"
    distill_student(config, "toy", data, teacher / "best.pt", student, "output", 0, out,
                    device="cpu", tuned=tmp_path / "tuning/toy/output.json")
    bands = json.loads((out / "done.json").read_text())["identity"]["spec"]["bands"]
    assert bands["lam"] == 0.0 and bands["tune"] == {"lam": [1000.0, 0.0, 30.0]}

    # a tuned setting cannot run without its choice, nor a tuning run with a wrong seed
    with pytest.raises(SdkdError, match="is tuned: give its tuning file"):
        distill_student(config, "toy", data, teacher / "best.pt", student, "output", 0,
                        tmp_path / "untuned", device="cpu")
    status, err = sdkd_cli("distill", "--config", config_path, "--dataset", "toy",
                           "--data", data, "--teacher", teacher / "best.pt",
                           "--student", student, "--bands", "output", "--seed", "0",
                           "--tune-point", "1", "--out", tmp_path / "wrong")
    assert_clean_failure(status, err, "with seed 5, not", f"{student} with seed 0")
