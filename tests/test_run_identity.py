"""The run identity (sdkd.plan.run_spec / run_identity / run_id): what decides that a
training run is the same run, field by field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml

from sdkd.config import validate
from sdkd.data.dataset import fingerprint
from sdkd.plan import (
    data_spec,
    identity_changes,
    run_id,
    run_identity,
    run_spec,
    training_block,
)
from sdkd.train.checkpoint import weights_sha256

ROOT = Path(__file__).resolve().parents[1]
NS = "navier_stokes"


@pytest.fixture(scope="module")
def smoke() -> dict[str, Any]:
    return validate(yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))


def teacher_id(config: dict[str, Any]) -> str:
    return run_id(run_spec(config, NS, "teacher"))


def student_id(config: dict[str, Any], bands: str = "dual", seed: int = 0) -> str:
    return run_id(run_spec(config, NS, "student", "unet-s", bands, seed))


def edited(config: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A validated copy of ``config`` with ``edit`` applied."""
    changed = copy.deepcopy(config)
    edit(changed)
    return validate(changed)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        block = config
        for name in parents:
            block = block[name]
        block[key] = value

    return edit


DATA = f"datasets.{NS}"

# Every field a teacher run depends on: changing it changes the teacher and, through the
# teacher's spec, every distilled student.
TEACHER_FIELDS = {
    "simulation parameter": _set(f"{DATA}.simulate.viscosity", 2e-3),
    "number of trajectories": _set(f"{DATA}.simulate.n_trajectories", 9),
    "split": _set(f"{DATA}.split", {"train": 5, "val": 2, "test": 1}),
    "in_steps": _set(f"{DATA}.in_steps", 2),
    "window stride": _set(f"{DATA}.window_stride", 2),
    "teacher model": _set("models.teacher", "teacher-small"),
    "teacher overrides": _set("models.teacher_overrides", {"hid_S": 8}),
    "teacher epochs": _set("training.teacher.epochs", 3),
    "teacher lr": _set("training.teacher.lr", 5e-4),
    "teacher precision": _set("training.teacher.amp", False),
    "the dataset's teacher epochs": _set(f"{DATA}.training", {"teacher": {"epochs": 3}}),
    "seed": _set("seed", 1),
}

# Fields of a student run alone: the teacher is not touched.
STUDENT_FIELDS = {
    "student overrides": _set("models.student_overrides", {"width_mult": 0.5}),
    "student epochs": _set("training.student.epochs", 3),
    "student batch size": _set("training.student.batch_size", 2),
    "the dataset's student lr": _set(f"{DATA}.training", {"student": {"lr": 5e-4}}),
    "band weights": _set("distill.settings.dual.weights", [1.0, 2.0]),
    "band cutoffs": _set("distill.settings.dual.cutoffs", [1.5]),
    "setting's latent weight": _set("distill.settings.dual.latent_weight", 0.5),
    "inherited lam": _set("distill.lam", 0.5),
    "inherited latent weight": _set("distill.latent_weight", 0.5),
    "inherited output weight": _set("distill.output_weight", 0.5),
    "band normalisation": _set("distill.normalize_bands", True),
    "latent standardisation": _set("distill.standardize_latents", False),
    "teacher feature of each band": _set("distill.settings.dual.features",
                                         ["attn_path", "conv_path"]),
    "method of the key": _set("distill.settings.dual.setting", "multi"),
}

# Fields that change speed or which runs exist, never what one run computes.
FREE_FIELDS = {
    "data loader workers": _set("training.student.num_workers", 2),
    "in-memory data": _set("training.student.in_memory", False),
    "teacher-forecast cache": _set("distill.teacher_cache_mb", 0),
    "another setting's weights": _set("distill.settings.fitnet.lam", 0.5),
    "the dataset's run subset": _set(f"{DATA}.settings", ["none", "dual"]),
    "the setting's seed list": _set("distill.settings.dual.seeds", [0, 1]),
    "the evaluation block": _set("evaluate.batch_size", 4),
    "another dataset's training": _set("datasets.diffusion_reaction.training",
                                       {"teacher": {"epochs": 3}, "student": {"lr": 0.1}}),
    "the dataset's speed keys": _set(f"{DATA}.training", {"student": {"num_workers": 2}}),
}


@pytest.mark.parametrize("field", TEACHER_FIELDS)
def test_a_teacher_field_changes_the_teacher_and_its_students(smoke, field):
    changed = edited(smoke, TEACHER_FIELDS[field])
    assert teacher_id(changed) != teacher_id(smoke)
    assert student_id(changed) != student_id(smoke)


@pytest.mark.parametrize("field", STUDENT_FIELDS)
def test_a_student_field_changes_the_student_only(smoke, field):
    changed = edited(smoke, STUDENT_FIELDS[field])
    assert student_id(changed) != student_id(smoke)
    assert teacher_id(changed) == teacher_id(smoke)


@pytest.mark.parametrize("field", FREE_FIELDS)
def test_speed_and_grid_keys_change_no_run(smoke, field):
    changed = edited(smoke, FREE_FIELDS[field])
    assert teacher_id(changed) == teacher_id(smoke)
    assert student_id(changed) == student_id(smoke)
    assert student_id(changed, "none") == student_id(smoke, "none")


def test_a_dataset_training_key_replaces_the_top_level_one_alone(smoke):
    """The dataset's keys win, the other keys stay the top-level ones, and restating a
    top-level value changes no run; the data itself never depends on training."""
    teacher_epochs = smoke["training"]["teacher"]["epochs"]
    changed = edited(smoke, _set(f"{DATA}.training", {"teacher": {"epochs": teacher_epochs + 5}}))
    block = training_block(changed, NS, "teacher")
    assert block == {**smoke["training"]["teacher"], "epochs": teacher_epochs + 5}
    assert training_block(changed, "diffusion_reaction", "teacher") == smoke["training"]["teacher"]
    assert data_spec(changed, NS) == data_spec(smoke, NS)
    same = edited(smoke, _set(f"{DATA}.training", {"teacher": {"epochs": teacher_epochs}}))
    assert teacher_id(same) == teacher_id(smoke)


def test_the_plain_student_does_not_depend_on_the_teacher(smoke):
    changed = edited(smoke, TEACHER_FIELDS["teacher lr"])
    assert student_id(changed, "none") == student_id(smoke, "none")
    assert run_spec(smoke, NS, "student", "unet-s", "none", 0)["teacher"] is None


def test_seed_and_student_name_each_make_another_run(smoke):
    assert student_id(smoke, seed=1) != student_id(smoke, seed=0)
    other = edited(smoke, _set("models.students", ["unet-s", "resnet-s"]))
    assert run_id(run_spec(other, NS, "student", "resnet-s", "dual", 0)) != student_id(smoke)


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    return value


def test_reordering_config_keys_changes_nothing(smoke):
    flipped = validate(_reordered(copy.deepcopy(smoke)))
    assert list(flipped) != list(smoke)
    for bands in ("none", "dual", "fitnet"):
        assert student_id(flipped, bands) == student_id(smoke, bands)
    assert teacher_id(flipped) == teacher_id(smoke)


def test_input_fingerprints_are_part_of_the_identity(smoke):
    spec = run_spec(smoke, NS, "student", "unet-s", "dual", 0)
    base = run_identity(spec, data="d1", teacher="t1")
    assert run_id(run_identity(spec, data="d2", teacher="t1")) != run_id(base)
    assert run_id(run_identity(spec, data="d1", teacher="t2")) != run_id(base)
    assert run_id(json.loads(json.dumps(base))) == run_id(base)
    assert len(run_id(base)) == 12 and int(run_id(base), 16) >= 0


def test_identity_changes_names_each_changed_leaf():
    old = {"spec": {"bands": {"weights": [1, 1], "lam": 1}, "seed": 0}, "inputs": {"data": "a"}}
    new = {"spec": {"bands": {"weights": [1, 2], "lam": 1}, "seed": 0}, "inputs": {"data": "b"}}
    assert identity_changes(old, new) == [
        'inputs.data: "a" → "b"', "spec.bands.weights: [1, 1] → [1, 2]"]
    assert identity_changes(old, old) == []
    assert identity_changes(None, {"a": 1}) == ['(identity): null → {"a": 1}']


def test_a_student_run_spec_needs_its_student_bands_and_seed(smoke):
    with pytest.raises(Exception, match="a student run needs all three"):
        run_spec(smoke, NS, "student", "unet-s")


# ---- fingerprints of what a run reads ------------------------------------------------------


def _canonical(path: Path, **attrs: Any) -> Path:
    with h5py.File(path, "w") as f:
        for split, n in (("train", 3), ("val", 1), ("test", 1)):
            f[f"{split}/frames"] = np.zeros((n, 4, 1, 2, 2), np.float32)
        f.attrs.update({"dataset": "toy", "raw_sha256": "ab" * 32, "channels": ["u"],
                        "mean": np.zeros(1), "std": np.ones(1), "in_steps": 2, "out_steps": 2,
                        "window_stride": 1, "created_with": "sdkd 0.1.0", **attrs})
    return path


def test_data_fingerprint_follows_content_not_provenance(tmp_path):
    base = fingerprint(_canonical(tmp_path / "a.h5"))
    assert fingerprint(_canonical(tmp_path / "b.h5")) == base
    assert fingerprint(_canonical(tmp_path / "c.h5", created_with="sdkd 9")) == base
    assert fingerprint(_canonical(tmp_path / "d.h5", raw_sha256="cd" * 32)) != base
    assert fingerprint(_canonical(tmp_path / "e.h5", std=np.full(1, 2.0))) != base
    with h5py.File(_canonical(tmp_path / "f.h5"), "a") as f:
        del f["test/frames"]
        f["test/frames"] = np.zeros((2, 4, 1, 2, 2), np.float32)
    assert fingerprint(tmp_path / "f.h5") != base


def test_weights_hash_follows_every_value_dtype_and_name():
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    base = weights_sha256(state)
    assert weights_sha256({k: v.clone() for k, v in reversed(state.items())}) == base
    bumped = {**state, "w": state["w"].clone()}
    bumped["w"][1, 2] = torch.nextafter(bumped["w"][1, 2], torch.tensor(100.0))
    assert weights_sha256(bumped) != base
    assert weights_sha256({**state, "b": state["b"].double()}) != base
    assert weights_sha256({"w2": state["w"], "b": state["b"]}) != base
    assert weights_sha256({**state, "w": state["w"].reshape(3, 2)}) != base
