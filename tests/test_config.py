"""The config schema: the shipped configs pass, every kind of mistake names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sdkd import config as configuration
from sdkd import plan
from sdkd.errors import SdkdError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = configuration.load(path)
    # defaults were filled in, also those beside a $ref and inside if/then branches
    for dataset in config["datasets"].values():
        assert dataset["window_stride"] >= 1
        assert dataset.get("simulate", {}).get("device", "auto") == "auto"
    assert isinstance(config["models"]["teacher_overrides"], dict)
    assert config["distill"]["seeds"] and config["training"]["student"]["in_memory"] in (1, 0)


def test_package_reads_the_workflow_schema():
    packaged = configuration.SCHEMA_PATH.resolve()
    assert packaged == (ROOT / "workflow/schemas/config.schema.yaml").resolve()


def base() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def mutated(edit) -> dict:
    config = copy.deepcopy(base())
    edit(config)
    return config


NS = ("datasets", "navier_stokes")


def _set(path, value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(path):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set((*NS, "simulate", "viscosity"), -1e-3), "datasets.navier_stokes.simulate.viscosity"),
        (_set((*NS, "simulate", "resolution"), 2), "simulate.resolution: 2 is less than"),
        (_set((*NS, "simulate", "equation"), "burgers"), "'burgers' is not one of"),
        (_set((*NS, "source"), "ftp"), "datasets.navier_stokes.source: 'ftp' is not one of"),
        (_set((*NS, "in_steps"), 0), "datasets.navier_stokes.in_steps"),
        (_set((*NS, "in_steps"), "ten"), "'ten' is not of type 'integer'"),
        (_set((*NS, "bogus"), 1), "'bogus' was unexpected"),
        (_set(("bogus",), 1), "'bogus' was unexpected"),
        (_set((*NS, "simulate", "du"), 1e-3), "simulate: Unevaluated properties are not allowed"),
        (_delete((*NS, "split")), "'split' is a required property"),
        (_delete((*NS, "simulate")), "'simulate' is a required property"),
        (_set((*NS, "split"), {"train": 0.5, "val": 0.2, "test": 0.2}), "must sum to 1"),
        (_set((*NS, "split"), {"train": 490, "val": 20, "test": 20}), "530 trajectories"),
        (_set((*NS, "simulate", "solver_resolution"), 48), "not a multiple of resolution 32"),
        (
            _set((*NS, "download"), {"name": "pdebench_diff_react"}),
            "datasets.navier_stokes.download: block given but source is 'simulate'",
        ),
        (_set(("datasets",), {}), "should be non-empty"),
        (_set(("models", "students"), ["unet-s", "unet-m", "unet-xl"]),
         "models.students: unknown size 'xl'"),
        (_set(("models", "teacher"), "teacher-huge"), "models.teacher: unknown size 'huge'"),
        (_set(("distill", "settings", "decoupled", "weights"), [1.0]),
         "distill.settings.decoupled:"),
        (_set(("distill", "settings", "low"), {}), "distill.settings.low: cutoffs"),
        (_set(("distill", "settings", "dual_c8"), {"cutoffs": [8]}), "name the method"),
        (_set(("training", "teacher", "epochs"), 0), "training.teacher.epochs"),
        (_set((*NS, "students"), ["unet-s", "resnet-s"]),
         "datasets.navier_stokes.students: 'resnet-s' is not in models.students (unet-s, unet-m)"),
        (_set((*NS, "settings"), ["none", "multi"]),
         "datasets.navier_stokes.settings: 'multi' is not in distill.settings (none, sdkd_latent,"),
        (_set((*NS, "students"), []), "datasets.navier_stokes.students: [] should be non-empty"),
        (_set((*NS, "settings"), ["dual", "dual"]),
         "datasets.navier_stokes.settings: ['dual', 'dual'] has non-unique elements"),
        (_set(("datasets",), {"Bad-Name": {}}), "does not match"),
    ],
)
def test_bad_values_name_the_key(edit, expected):
    with pytest.raises(SdkdError, match=None) as info:
        configuration.validate(mutated(edit), source="cfg.yaml")
    message = str(info.value)
    assert message.startswith("cfg.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_download_block_needs_name_or_url_hash_layout():
    def edit(config):
        config["datasets"]["navier_stokes"] = {
            "source": "download",
            "download": {"url": "http://127.0.0.1/x.h5"},
            "split": {"train": 1, "val": 1, "test": 1},
            "in_steps": 1,
            "out_steps": 1,
        }

    with pytest.raises(SdkdError, match=r"datasets\.navier_stokes\.download"):
        configuration.validate(mutated(edit))


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(SdkdError, match=r"unknown dataset 'weather'.*navier_stokes"):
        configuration.dataset_config(base(), "weather")


def test_load_errors(tmp_path):
    with pytest.raises(SdkdError, match="config file not found"):
        configuration.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(SdkdError, match="not valid YAML"):
        configuration.load(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SdkdError, match="mapping"):
        configuration.load(bad)


# ---- a dataset's subset of students and band settings ----------------------------------------

DR = ("datasets", "diffusion_reaction")


def test_a_dataset_runs_a_subset():
    def subset(config):
        config["datasets"]["diffusion_reaction"].update(students=["unet-m"],
                                                        settings=["dual", "none"])
        config["datasets"]["navier_stokes"].pop("students")

    config = configuration.validate(mutated(subset))
    # the config's order, not the subset's: a setting sits at one place in every table
    assert plan.dataset_settings(config, "diffusion_reaction") == ["none", "dual"]
    assert plan.dataset_students(config, "diffusion_reaction") == ["unet-m"]
    assert plan.dataset_students(config, "navier_stokes") == config["models"]["students"]
    assert plan.dataset_settings(config, "navier_stokes") == list(config["distill"]["settings"])
    # no default is written: absent means all, whatever models/distill list later
    assert "students" not in config["datasets"]["navier_stokes"]


@pytest.mark.parametrize(
    ("key", "names", "expected"),
    [
        ("students", ["unet-m", "unet-xl"],
         "datasets.diffusion_reaction.students: 'unet-xl' is not in models.students"),
        ("settings", ["none", "dual_c8"],
         "datasets.diffusion_reaction.settings: 'dual_c8' is not in distill.settings"),
    ],
)
def test_check_config_rejects_an_unknown_name(sdkd_cli, tmp_path, key, names, expected):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(mutated(_set((*DR, key), names))))
    status, err = sdkd_cli("check-config", "--config", path)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sdkd: error: {path}: {expected}"), lines[0]


def test_resolved_config_keeps_the_users_order(tmp_path):
    """The order of datasets, students and settings is the order of the report."""
    from sdkd.config import write_resolved

    config = {"datasets": {"zeta": {}, "alpha": {}}, "distill": {"settings": {"none": {},
                                                                              "dual": {}}}}
    text = write_resolved(config, tmp_path).read_text()
    assert text.index("zeta") < text.index("alpha") and text.index("none") < text.index("dual")


# ---- what validation knows about the models, without importing them --------------------------


def test_validation_agrees_with_the_models():
    """The light copies in sdkd.config and the schema say what sdkd.models does: every
    family downsamples by MODEL_DOWNSAMPLING, and the override keys of each role are
    exactly the keys its families accept."""
    from sdkd.models.registry import get_family, model_names

    families = {f.name: f for f in (get_family(name)[0] for name in model_names())}
    assert {f.cls.downsample_factor for f in families.values()} == {
        configuration.MODEL_DOWNSAMPLING}
    defs = configuration.schema()["$defs"]
    students = set().union(*(f.overrides for name, f in families.items() if name != "teacher"))
    assert set(defs["teacher_overrides"]["properties"]) == set(families["teacher"].overrides)
    assert set(defs["student_overrides"]["properties"]) == students
    # The teacher features a band may align to are the teacher's (B, D_t, h, w) features.
    import torch

    from sdkd.models import build_model

    teacher = build_model("teacher-tiny", in_steps=2, out_steps=2, channels=1)
    features = teacher(torch.zeros(1, 2, 1, 16, 16)).features
    names = defs["band_setting"]["properties"]["features"]["items"]["enum"]
    assert {k for k, f in features.items() if f.shape[1] == teacher.latent_channels} == set(names)


def test_a_dataset_may_set_every_training_key():
    """A dataset's training block lists the top-level block's keys, each the same rule."""
    defs = configuration.schema()["$defs"]
    keys = defs["training_keys"]["properties"]
    assert set(keys) == set(defs["training"]["properties"])
    assert all(rule == {"$ref": f"#/$defs/training/properties/{key}"}
               for key, rule in keys.items())


@pytest.mark.parametrize("grid", [1, 2, 3, 4, 5, 8, 9, 16])
@pytest.mark.parametrize("cutoffs", [(0.5,), (1,), (1.4, 1.5), (1.1, 1.2), (2, 2.5, 3), (2.83,),
                                     (2.8, 2.9), (5.5, 5.7, 8)])
def test_empty_band_agrees_with_the_spectral_bands(grid, cutoffs):
    from sdkd.distill.bands import SpectralBands

    empty = configuration._empty_band(cutoffs, grid, grid)
    try:
        SpectralBands(cutoffs).masks(grid, grid)
    except SdkdError as exc:
        assert empty is not None and f"band {empty} is empty" in str(exc)
    else:
        assert empty is None


def test_validation_without_models_imports_no_torch():
    """The Snakefile validates with models=False while it plans, which must stay light."""
    import subprocess
    import sys

    code = (
        "import sys, yaml\n"
        "from sdkd.config import validate\n"
        f"validate(yaml.safe_load(open({str(ROOT / 'config/paper.yaml')!r})), models=False)\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# ---- the resolved config names the user's files ------------------------------------------------


def test_a_resolved_config_names_the_users_file(tmp_path):
    config = mutated(_set(("training", "student", "lr"), -1.0))
    path = configuration.write_resolved(config, tmp_path, "config/mine.yaml")
    with pytest.raises(SdkdError) as info:
        configuration.load(path)
    assert str(info.value).startswith(
        f"config/mine.yaml (resolved in {path}): training.student.lr: -1.0 is less than"
    )
    # a good one loads as before; the header is a comment
    good = configuration.write_resolved(base(), tmp_path, "config/mine.yaml")
    assert configuration.load(good)["seed"] == base()["seed"]
    assert good != path and configuration.write_resolved(base(), tmp_path) != good


def test_the_resolved_header_is_one_line_whatever_the_names(tmp_path):
    source = 'evil\nseed: 5 "quoted" \x00.yaml'
    path = configuration.write_resolved(base(), tmp_path, source)
    text = path.read_text()
    assert text.count("\n") == configuration.write_resolved(base(), tmp_path).read_text().count(
        "\n") + 1
    assert yaml.safe_load(text)["seed"] == base()["seed"]
    with pytest.raises(SdkdError) as info:
        configuration.load(configuration.write_resolved(
            mutated(_set(("seed",), -1)), tmp_path, source))
    assert "\n" not in str(info.value) and "evil\\nseed" in str(info.value)


def test_config_source_names_files_as_the_user_gave_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert configuration.config_source([tmp_path / "config" / "a.yaml"], {}) == "config/a.yaml"
    assert configuration.config_source(["/elsewhere/b.yaml", "c.yaml"], {"seed": 1}) == (
        "/elsewhere/b.yaml + c.yaml with --config overrides")
    assert configuration.config_source([], {"seed": 1}) == "config with --config overrides"
