"""Model plugins (the ``sdkd.models`` entry-point group) and ``sdkd models``.

The example plugin (tests/plugin_pkg, distribution ``sdkd-plugin-example``, family
``tinyconv``) is installed by pip into a folder of its own, never into the test
environment; a test puts that folder on ``sys.path`` (in-process, with the registry
reset as a fresh process has it and restored afterwards) or on ``PYTHONPATH`` (a
subprocess). Broken plugins are written as pip would leave them (a module beside a
``.dist-info`` folder with ``entry_points.txt``), which is all that entry-point
discovery reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import assert_clean_failure
from snakerun import copy_workflow, snakemake

from sdkd import config as configuration
from sdkd.cli import main
from sdkd.distill.settings import band_setting
from sdkd.errors import SdkdError
from sdkd.models import build_model, get_family, model_names, model_spec, plugins, registry
from sdkd.plan import results_root
from sdkd.report.aggregate import read_metrics
from sdkd.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = ROOT / "tests/plugin_pkg"
SIZES = {"tinyconv-s": 16, "tinyconv-m": 32}  # latent width D of each preset


def tinyconv_parameters(d: int, t_in: int, t_out: int, c: int) -> int:
    """Counted by hand: a 4×4 stride-4 conv T_in·C → D and its transpose D → T_out·C."""
    return (16 * t_in * c * d + d) + (16 * d * t_out * c + t_out * c)


def tinyconv_flops(d: int, t_in: int, t_out: int, c: int, h: int, w: int) -> int:
    """Forward FLOPs, 2 per multiply-add: each conv does 16·D·T·C of them per latent pixel."""
    return 2 * 16 * d * c * (t_in + t_out) * (h // 4) * (w // 4)


def pythonpath(*folders: Path) -> str:
    """PYTHONPATH with ``folders`` first (a subprocess then finds their distributions)."""
    rest = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return os.pathsep.join([*map(str, folders), *rest])


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin, installed by pip into a folder of its own (offline: no index,
    no build isolation; the test environment has setuptools)."""
    work = tmp_path_factory.mktemp("plugin")
    # pip builds in the source folder (build/, *.egg-info): a copy keeps the checkout clean.
    source = shutil.copytree(PLUGIN_SOURCE, work / "source",
                             ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    site = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "sdkd_plugin_example").is_dir()
    return site


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as a new process finds it (plugins not loaded yet); everything a test
    registers or imports is undone afterwards."""
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    monkeypatch.setattr(plugins, "_STATE", "unloaded")
    monkeypatch.setattr(plugins, "_ERROR", None)
    modules = set(sys.modules)
    yield monkeypatch
    for name in set(sys.modules) - modules:
        if name.startswith("sdkd_plugin"):
            del sys.modules[name]


@pytest.fixture
def with_plugin(fresh_registry, plugin_site):
    """The example plugin importable in this process."""
    fresh_registry.syspath_prepend(str(plugin_site))
    return plugin_site


def fake_plugin(site: Path, dist: str, entry_point: str, module: str, source: str) -> None:
    """What ``pip install`` of a one-module plugin leaves in ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sdkd.models]\n{entry_point} = {module}\n")


# A one-size family for the fake plugins below: a 1×1 conv forecast and a zero latent.
FAMILY_SOURCE = """
from torch import nn
from sdkd.models import Forecast, ForecastModel, register

@register({family!r})
class Tiny(ForecastModel):
    ROLE = {role!r}
    SIZES = {{"s": {{}}}}
    OVERRIDES = {{}}

    def __init__(self, *, in_steps, out_steps, channels, height=None, width=None):
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels)
        self.latent_channels = 3
        self.conv = nn.Conv2d(in_steps * channels, out_steps * channels, 1)

    def forecast(self, x):
        b, t, c, h, w = x.shape
        y = self.conv(x.reshape(b, t * c, h, w)).reshape(b, self.out_steps, c, h, w)
        z = y.new_zeros(b, {latent}, h // 4, w // 4)
        return Forecast(y, {{name: z for name in {features!r}}})
"""


def family_source(family: str, *, role: str = "student", latent: int = 3,
                  features: tuple[str, ...] = ("latent",)) -> str:
    """A module registering ``family`` (size ``s``) whose features have ``latent`` channels."""
    return FAMILY_SOURCE.format(family=family, role=role, latent=latent, features=features)


# ---- the example plugin -----------------------------------------------------------------


def test_sdkd_models_lists_the_plugin_in_a_fresh_process(plugin_site):
    """Installed, the plugin's models are listed with their provider, role, parameters and
    FLOPs at the asked input, after every built-in model."""
    shape = {"height": 32, "width": 48, "in_steps": 3, "out_steps": 2, "channels": 2}
    args = [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
    result = subprocess.run(
        [sys.executable, "-m", "sdkd", "models", "--json", *args], capture_output=True,
        text=True, check=False, timeout=300,
        env={**os.environ, "PYTHONPATH": pythonpath(plugin_site)},
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["input"] == shape
    rows = {row["model"]: row for row in doc["models"]}
    assert list(rows)[-2:] == list(SIZES)  # built-ins first, then plugins
    assert rows["teacher-tiny"]["role"] == "teacher" and rows["unet-s"]["role"] == "student"
    assert {rows[n]["provider"] for n in rows if n not in SIZES} == {"sdkd"}
    c, t_in, t_out = shape["channels"], shape["in_steps"], shape["out_steps"]
    for name, d in SIZES.items():
        assert rows[name] == {
            "model": name, "family": "tinyconv", "size": name[-1], "role": "student",
            "provider": "sdkd-plugin-example", "plugin": "tinyconv",
            "parameters": tinyconv_parameters(d, t_in, t_out, c),
            "flops_per_sample": tinyconv_flops(d, t_in, t_out, c, shape["height"],
                                               shape["width"]),
        }


def test_sdkd_models_table(with_plugin, capsys):
    status = main(["models"])
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("64×64 grid, 10 → 10 frames, 1 channel(s)")
    line = next(line for line in out.splitlines() if line.startswith("tinyconv-s "))
    assert line.split()[1:4] == ["student", "sdkd-plugin-example",
                                 f"{tinyconv_parameters(16, 10, 10, 1):,}"]


def test_the_plugin_builds_and_distils_like_a_builtin(with_plugin):
    """Config validation accepts the plugin student (and its width_mult override), and
    the distillation losses train it from the teacher's latent."""
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["models"]["students"] = ["tinyconv-s", "unet-s"]
    configuration.validate(config, source="plugin.yaml")
    family, size = get_family("tinyconv-s")
    assert (family.provider, family.plugin, size) == ("sdkd-plugin-example", "tinyconv", "s")
    assert model_names()[-2:] == list(SIZES)

    torch.manual_seed(0)
    student = build_model("tinyconv-s", in_steps=3, out_steps=2, channels=2, width_mult=0.5)
    teacher = build_model("teacher-tiny", in_steps=3, out_steps=2, channels=2)
    assert student.latent_channels == 8
    assert student.num_parameters() == tinyconv_parameters(8, 3, 2, 2)
    x, y = torch.randn(2, 3, 2, 16, 24), torch.randn(2, 2, 2, 16, 24)
    with torch.no_grad():
        taught = teacher(x)
    for key in ("dual", "fitnet"):
        kd = band_setting(config["distill"], key).loss(
            student_channels=student.latent_channels, teacher_channels=teacher.latent_channels)
        kd.set_teacher_statistics({name: (f.mean((0, 2, 3)), f.std((0, 2, 3)))
                                   for name, f in taught.features.items()
                                   if name in kd.teacher_features})
        student.zero_grad()
        total, terms = kd(student(x), taught, y)
        total.backward()
        assert torch.isfinite(total) and terms["kd"] > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_a_plugin_student_is_no_teacher(with_plugin):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["models"]["teacher"] = "tinyconv-m"
    with pytest.raises(SdkdError, match=r"^cfg.yaml: models.teacher: tinyconv-m is a student "
                                        r"model; a teacher is one of teacher-paper, "):
        configuration.validate(config, source="cfg.yaml")


def test_a_checkpoint_of_a_plugin_model_reloads_in_a_fresh_process(with_plugin, tmp_path):
    """The checkpoint stores the model spec; build_from_spec in a new interpreter finds
    the plugin again through its entry point, and the weights give the same forecast."""
    torch.manual_seed(0)
    model = build_model("tinyconv-m", in_steps=3, out_steps=2, channels=1, height=16,
                        width=24, width_mult=0.5).eval()
    x = torch.randn(2, 3, 1, 16, 24)
    with torch.no_grad():
        expected = model(x).prediction
    save_checkpoint(tmp_path / "best.pt", {"meta": {"model": model_spec(model)},
                                           "model": model.state_dict()})
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")
    code = (
        "import sys, torch\n"
        "from sdkd.models import build_from_spec, get_family\n"
        "from sdkd.train.checkpoint import load_checkpoint\n"
        "ckpt = load_checkpoint(sys.argv[1] + '/best.pt')\n"
        "model = build_from_spec(ckpt['meta']['model'], max_gib=0.1)\n"
        "model.load_state_dict(ckpt['model'])\n"
        "io = torch.load(sys.argv[1] + '/io.pt')\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(model.eval()(io['x']).prediction, io['expected'])\n"
        "print(model.name, type(model).__module__, get_family(model.name)[0].provider)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
        check=False, timeout=300, env={**os.environ, "PYTHONPATH": pythonpath(with_plugin)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tinyconv-m", "sdkd_plugin_example", "sdkd-plugin-example"]


def test_a_plugin_teacher_teaches(fresh_registry, tmp_path):
    """A teacher family with the features every band setting may align to is a valid
    models.teacher, and listed as a teacher."""
    site = tmp_path / "site"
    fake_plugin(site, "sdkd-plugin-teacher", "pteacher", "sdkd_plugin_teacher",
                family_source("pteacher", role="teacher",
                              features=("latent", "attn_path", "conv_path")))
    fresh_registry.syspath_prepend(str(site))
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["models"]["teacher"] = "pteacher-s"
    configuration.validate(config, source="cfg.yaml")
    config["models"]["teacher"] = "unet-s"
    with pytest.raises(SdkdError, match=r"models.teacher: unet-s is a student model; a "
                                        r"teacher is one of teacher-paper, teacher-small, "
                                        r"teacher-tiny, pteacher-s$"):
        configuration.validate(config, source="cfg.yaml")


def test_plugins_import_on_the_cpu_whatever_the_first_lookup(fresh_registry, tmp_path):
    """build_from_spec sizes a checkpoint's model on the meta device, which may be the
    process's first lookup: a plugin's module-level tensors must not land there."""
    site = tmp_path / "site"
    fake_plugin(site, "sdkd-plugin-const", "const", "sdkd_plugin_const",
                "import torch\nCONST = torch.ones(2)\n" + family_source("const"))
    fresh_registry.syspath_prepend(str(site))
    with torch.device("meta"):
        assert "const-s" in model_names()
    assert sys.modules["sdkd_plugin_const"].CONST.device.type == "cpu"


def test_the_builtin_families_keep_the_plugin_contract():
    """The check plugins pass is one the built-ins pass too (it asks nothing more)."""
    families = {family.name: family for family in (get_family(n)[0] for n in model_names())
                if family.provider == "sdkd"}
    assert list(families) == ["teacher", "unet", "resnet", "mixer"]
    for family in families.values():
        assert plugins.contract_problem(family) is None, family.name


def test_without_the_plugin_its_model_is_unknown_and_says_why(fresh_registry):
    with pytest.raises(SdkdError, match=r"unknown model family 'tinyconv'.*plugin's family "
                                        r"needs its package installed"):
        build_model("tinyconv-s", in_steps=1, out_steps=1, channels=1)


# ---- broken plugins ------------------------------------------------------------------------


BROKEN = {
    "import error": (
        [("sdkd-plugin-broken", "broken", "sdkd_plugin_broken",
          "import sdkd_plugin_missing_dependency\n")],
        ["model plugin 'broken' (sdkd-plugin-broken 0.1): failed to load: "
         "ModuleNotFoundError: No module named 'sdkd_plugin_missing_dependency'",
         "(pip uninstall sdkd-plugin-broken)"],
    ),
    "clash with a built-in": (
        [("sdkd-plugin-clash", "clash", "sdkd_plugin_clash",
          family_source("unet"))],
        ["model plugin 'clash' (sdkd-plugin-clash 0.1): failed to load: ValueError: "
         "model family 'unet' is already registered by sdkd"],
    ),
    "clash between plugins": (
        [("sdkd-plugin-a", "twin", "sdkd_plugin_a", family_source("twin")),
         ("sdkd-plugin-b", "twin", "sdkd_plugin_b", family_source("twin"))],
        ["model plugin 'twin' (sdkd-plugin-b 0.1)",
         "model family 'twin' is already registered by sdkd-plugin-a"],
    ),
    "latent of the wrong width": (
        [("sdkd-plugin-wide", "wide", "sdkd_plugin_wide",
          family_source("wide", latent=5))],
        ["model plugin 'wide' (sdkd-plugin-wide 0.1): wide-s breaks the model contract: "
         "features['latent'] is of shape (1, 5, 4, 6), expected (B, latent_channels, "
         "*latent_grid(H, W)) = (1, 3, 4, 6)"],
    ),
    "teacher without the decoupled paths": (
        [("sdkd-plugin-teach", "teach", "sdkd_plugin_teach",
          family_source("teach", role="teacher"))],
        ["model plugin 'teach' (sdkd-plugin-teach 0.1): teach-s breaks the model contract: "
         "features['attn_path'] is missing, expected (B, latent_channels, *latent_grid(H, W)) "
         "= (1, 3, 4, 6) (a teacher returns latent, attn_path, conv_path"],
    ),
    "registers nothing": (
        [("sdkd-plugin-empty", "empty", "sdkd_plugin_empty", "VALUE = 1\n")],
        ["model plugin 'empty' (sdkd-plugin-empty 0.1): registers no model family"],
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_plugin_stops_with_one_line_naming_it(case, fresh_registry, sdkd_cli,
                                                       tmp_path):
    """Fatal at the first registry lookup (sdkd.models.plugins says why), at every later
    one, and before the config is blamed: check-config names the plugin, not a key."""
    site = tmp_path / "site"
    dists, fragments = BROKEN[case]
    for dist in dists:
        fake_plugin(site, *dist)
    fresh_registry.syspath_prepend(str(site))
    before = dict(registry._FAMILIES)
    message = assert_clean_failure(*sdkd_cli("models"), *fragments, "fix the plugin")
    assert dict(registry._FAMILIES) == before  # rolled back: no half-registered plugin
    assert_clean_failure(*sdkd_cli("models", "--json"), *fragments)
    status, err = sdkd_cli("check-config", "--config", ROOT / "config/smoke.yaml")
    assert assert_clean_failure(status, err) == message


# ---- the workflow -------------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.slow
def test_smoke_dag_runs_with_a_plugin_student(plugin_site, tmp_path):
    """The smoke DAG with the plugin's student instead of unet-s, the plugin installed
    only on PYTHONPATH: every job, tuning included, runs to the report. One dataset is
    enough to show it and halves the test's time."""
    work = copy_workflow(tmp_path / "work")
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["models"]["students"] = ["tinyconv-s"]  # student_overrides: {width_mult: 0.25}
    config["datasets"] = {"navier_stokes": config["datasets"]["navier_stokes"]}
    (work / "config/plugin.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(work, "--configfile", "config/plugin.yaml", "--resources", "gpu=1",
                       cores=4, PYTHONPATH=pythonpath(plugin_site))
    assert result.returncode == 0, result.stderr[-3000:]

    results = work / results_root(config)  # the smoke experiment's folder
    table = read_metrics(results / "tables/metrics.csv")
    assert (table["status"] == "ok").all()
    assert set(table.loc[table["role"] == "student", "model"]) == {"tinyconv-s"}
    assert "tinyconv-s" in (results / "report.html").read_text()
    for dataset in config["datasets"]:
        for bands in config["distill"]["settings"]:
            run = results / f"students/{dataset}/tinyconv-s/{bands}/seed-0/best.pt"
            assert run.exists()
        doc = json.loads((results / f"eval/{dataset}/tinyconv-s/dual/seed-0.json").read_text())
        assert (doc["model"], doc["family"]) == ("tinyconv-s", "tinyconv")
        d = 4  # tinyconv-s's D = 16 × width_mult 0.25
        shape = (doc["in_steps"], doc["out_steps"], len(doc["channels"]))  # channel names
        assert doc["efficiency"]["parameters"] == tinyconv_parameters(d, *shape)
        assert doc["efficiency"]["flops_per_sample"] == tinyconv_flops(d, *shape, *doc["grid"])
