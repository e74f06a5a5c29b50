"""train-teacher and distill end to end on a tiny dataset, and their bad inputs."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from helpers import experiment, file_dataset, write_config

from sdkd.config import validate
from sdkd.data.dataset import ForecastWindows
from sdkd.data.preprocess import preprocess
from sdkd.distill.losses import SETTINGS
from sdkd.train.checkpoint import load_checkpoint, sub_state_dict
from sdkd.train.jobs import distill_student, load_teacher, train_teacher

ALL_SETTINGS = {
    "none": {},
    "low": {"cutoffs": [1.5], "weights": [1.0]},
    "high": {"cutoffs": [1.5], "weights": [1.0]},
    "dual": {"cutoffs": [1.5], "weights": [1.0, 0.5]},
    "multi": {"cutoffs": [1.0, 2.0], "weights": [1.0, 1.0, 1.0]},
    "sdkd_latent": {"cutoffs": [1.0, 2.0], "weights": [1.0, 1.0, 1.0]},
    "decoupled": {"cutoffs": [1.5], "weights": [1.0, 1.0]},
    "output": {},
    "fitnet": {},
}


def _dataset(tmp_path, name="toy", frames=6, in_steps=2, out_steps=2):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    waves = np.sin(x[None, None, :, None] + x[None, None, None, :] + rng.normal(size=(8, 1, 1, 1)))
    data = (waves + 0.1 * np.arange(frames)[None, :, None, None]).astype("f4")  # N T H W
    raw = tmp_path / f"{name}.raw.h5"
    with h5py.File(raw, "w") as f:
        f["u"] = data
    block = file_dataset(raw, split={"train": 6, "val": 1, "test": 1}, in_steps=in_steps,
                         out_steps=out_steps)
    config = validate(experiment({name: block}, distill={"settings": ALL_SETTINGS}))
    out = preprocess(None, tmp_path / f"{name}.h5", config["datasets"][name], name=name)
    return config, out


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("jobs")
    config, data = _dataset(tmp_path)
    result = train_teacher(config, "toy", data, tmp_path / "teacher", device="cpu")
    return config, data, tmp_path / "teacher", result


def test_teacher_folder(teacher_run):
    config, _, out, _ = teacher_run
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "history.csv",
                                               "config.yaml", "done.json"}
    done = json.loads((out / "done.json").read_text())
    assert done["epochs_run"] == config["training"]["teacher"]["epochs"]
    meta = load_checkpoint(out / "best.pt")["meta"]
    assert meta["dataset"] == "toy" and meta["grid"] == [16, 16] and meta["role"] == "teacher"
    assert meta["model"]["name"] == "teacher-tiny"
    teacher = load_teacher(out / "best.pt", {"dataset": "toy"})
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("bands", list(ALL_SETTINGS))
def test_every_band_setting_trains(teacher_run, tmp_path, bands):
    config, data, teacher_dir, _ = teacher_run
    before = load_checkpoint(teacher_dir / "best.pt")["model"]
    out = tmp_path / bands
    result = distill_student(config, "toy", data, teacher_dir / "best.pt", "unet-s", bands, 0,
                             out, device="cpu")
    assert np.isfinite(result.best_val)
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["meta"]["setting"] == bands and ckpt["meta"]["bands"] == bands
    student_state = sub_state_dict(ckpt["model"], "student")
    assert student_state  # the student's weights are extractable
    header = (out / "history.csv").read_text().splitlines()[0]
    assert "val_gt" in header
    if bands in ("dual", "multi", "low", "high", "sdkd_latent", "decoupled"):
        assert "train_kd_latent_b0" in header
    assert ("train_kd_out_b0" in header) == (bands in ("dual", "multi", "low", "high"))
    after = load_checkpoint(teacher_dir / "best.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # teacher untouched
    assert bands in SETTINGS


@pytest.mark.parametrize("bands", ["dual", "decoupled", "output"])
def test_cached_teacher_forecasts_train_like_the_live_teacher(teacher_run, tmp_path, bands,
                                                              caplog):
    """The teacher's forecasts computed once give the run a teacher at every step gives."""
    config, data, teacher_dir, _ = teacher_run
    histories = {}
    for cache_mb in (4096, 0):
        cfg = {**config, "distill": {**config["distill"], "teacher_cache_mb": cache_mb}}
        out = tmp_path / f"cache-{cache_mb}"
        with caplog.at_level("INFO", logger="sdkd.distill.cache"):
            distill_student(cfg, "toy", data, teacher_dir / "best.pt", "unet-s", bands, 0, out,
                            device="cpu")
        histories[cache_mb] = np.genfromtxt(out / "history.csv", delimiter=",", names=True)
    assert "computed once" in caplog.text
    assert "runs at every step instead" in caplog.text  # the 0 MB budget
    cached, live = histories[4096], histories[0]
    for name in ("train_total", "val_gt", "val_kd"):
        np.testing.assert_allclose(cached[name], live[name], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("bands", ["decoupled", "fitnet"])
def test_teacher_features_are_standardised_with_train_statistics(teacher_run, tmp_path, bands):
    """The run's standardisation is the per-channel mean and std of each teacher feature
    it aligns to, over the train windows and the latent grid (computed here with numpy)."""
    config, data, teacher_dir, _ = teacher_run
    distill_student(config, "toy", data, teacher_dir / "best.pt", "unet-s", bands, 0,
                    tmp_path / bands, device="cpu")
    state = load_checkpoint(tmp_path / bands / "best.pt")["model"]
    teacher = load_teacher(teacher_dir / "best.pt", {"dataset": "toy"})
    train = ForecastWindows(data, "train")
    inputs = torch.stack([train[i][0] for i in range(len(train))])
    with torch.no_grad():
        features = teacher(inputs).features
    names = ["attn_path", "conv_path"] if bands == "decoupled" else ["latent"]
    assert {k.split(".")[2] for k in state if ".standardizers." in k} == set(names)
    for name in names:
        values = features[name].double().numpy()
        np.testing.assert_allclose(state[f"kd.standardizers.{name}.mean"],
                                   values.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state[f"kd.standardizers.{name}.std"],
                                   values.std(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_seed_s_of_every_setting_starts_from_the_same_student(teacher_run, tmp_path,
                                                              monkeypatch):
    """Paired seeds: the student's initial weights depend on the seed alone, not on the
    setting (whose loss module is built after it); batch order is (seed, epoch)'s
    (sdkd.train.engine.epoch_seed), so the pairs of the report's intervals hold."""
    from sdkd.train import jobs

    config, data, teacher_dir, _ = teacher_run
    initial = {}

    def capture(modules, *args, **kwargs):
        initial[modules["kd"].setting] = {
            k: v.clone() for k, v in modules["student"].state_dict().items()}
        raise RuntimeError("captured")

    monkeypatch.setattr(jobs, "fit", capture)
    for bands in ("none", "decoupled", "dual"):
        with pytest.raises(RuntimeError, match="captured"):
            distill_student(config, "toy", data, teacher_dir / "best.pt", "unet-s", bands, 3,
                            tmp_path / bands, device="cpu")
    reference = initial["none"]
    for bands in ("decoupled", "dual"):
        assert all(torch.equal(reference[k], initial[bands][k]) for k in reference)


def test_none_needs_no_teacher(teacher_run, tmp_path):
    config, data, _, _ = teacher_run
    distill_student(config, "toy", data, None, "resnet-s", "none", 1, tmp_path / "n",
                    device="cpu")
    assert (tmp_path / "n/done.json").exists()


def test_teacher_of_another_dataset_or_shape(teacher_run, tmp_path, sdkd_cli):
    _, _, teacher_dir, _ = teacher_run
    config, data = _dataset(tmp_path, name="other")
    path = write_config(tmp_path, {"other": config["datasets"]["other"]},
                        distill={"settings": ALL_SETTINGS})
    status, err = sdkd_cli("distill", "--config", path, "--dataset", "other", "--data", data,
                           "--teacher", teacher_dir / "best.pt", "--student", "unet-s",
                           "--bands", "dual", "--out", tmp_path / "s", "--device", "cpu")
    assert status == 2 and "trained on dataset 'toy', expected 'other'" in err
    assert not (tmp_path / "s").exists()

    config, data = _dataset(tmp_path / "..", name="toy", in_steps=3, out_steps=2)
    with pytest.raises(Exception, match="in_steps=2, expected 3"):
        distill_student(config, "toy", data, teacher_dir / "best.pt", "unet-s", "dual", 0,
                        tmp_path / "s2", device="cpu")


def test_corrupt_teacher_checkpoint(teacher_run, tmp_path, sdkd_cli):
    config, data, teacher_dir, _ = teacher_run
    broken = tmp_path / "best.pt"
    blob = (teacher_dir / "best.pt").read_bytes()
    broken.write_bytes(blob[: len(blob) // 3])
    path = write_config(tmp_path, config["datasets"], distill={"settings": ALL_SETTINGS})
    status, err = sdkd_cli("distill", "--config", path, "--dataset", "toy", "--data", data,
                           "--teacher", broken, "--student", "unet-s", "--bands", "dual",
                           "--out", tmp_path / "s", "--device", "cpu")
    assert status == 2 and str(broken) in err and "corrupt" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--student", "unet-xl", "--bands", "dual"), "unknown size 'xl'"),
        (("--student", "vit-s", "--bands", "dual"), "unknown model family 'vit'"),
        (("--student", "unet-s", "--bands", "tri"), "unknown band setting 'tri'"),
    ],
)
def test_unknown_names(teacher_run, tmp_path, sdkd_cli, args, expected):
    config, data, teacher_dir, _ = teacher_run
    path = write_config(tmp_path, config["datasets"], distill={"settings": ALL_SETTINGS})
    status, err = sdkd_cli("distill", "--config", path, "--dataset", "toy", "--data", data,
                           "--teacher", teacher_dir / "best.pt", *args,
                           "--out", tmp_path / "s", "--device", "cpu")
    assert status == 2 and expected in err


def test_diverging_training_stops_cleanly(teacher_run, tmp_path, sdkd_cli):
    config, data, _, _ = teacher_run
    training = {"teacher": {"epochs": 2, "batch_size": 2, "lr": 1e30, "grad_clip": None,
                            "warmup_epochs": 0},
                "student": {"epochs": 1, "batch_size": 2}}
    path = write_config(tmp_path, config["datasets"], training=training)
    status, err = sdkd_cli("train-teacher", "--config", path, "--dataset", "toy", "--data", data,
                           "--out", tmp_path / "t", "--device", "cpu")
    assert status == 2 and "non-finite" in err
    assert not (tmp_path / "t/done.json").exists() and not (tmp_path / "t/best.pt").exists()
