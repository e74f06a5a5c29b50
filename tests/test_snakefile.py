"""The Snakefile itself: job counts of every config, lint, profiles, the light run grid.

Every Snakemake call runs in a temporary copy of Snakefile, workflow/ and config/, so
no results/ exist there and nothing is written into the project.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import file_dataset, write_config

from sdkd import plan

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
GPU_RULES = {"train_teacher", "tune_point", "distill", "evaluate_teacher", "evaluate_student"}
HEAVY_MODULES = ("torch", "numpy", "pandas", "matplotlib", "seaborn", "h5py", "scipy")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("snakefile")
    for name in ("Snakefile", "workflow", "config"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy(source, work / name)
    return work


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # rules find `sdkd` beside this interpreter
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
        capture_output=True, text=True, check=False, timeout=300,
    )


def job_stats(output: str) -> dict[str, int]:
    """The `Job stats` table of a dry run: rule → job count (without the total)."""
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3  # title, header, rule line
    counts = {}
    for line in lines[start:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    assert counts.pop("total") == sum(counts.values())
    return counts


def expected_counts(config: dict) -> dict[str, int]:
    """Jobs per rule, from the config grid alone (schema default: seeds [0]; a dataset
    without `students:`/`settings:` runs all of them)."""
    distill = config["distill"]
    default_seeds = distill.get("seeds", [0])
    seeds = {key: len(entry.get("seeds", default_seeds))
             for key, entry in distill["settings"].items()}
    datasets = len(config["datasets"])
    # a `file` source is read in place: nothing to acquire
    acquired = sum(block["source"] != "file" for block in config["datasets"].values())
    students = sum(
        len(block.get("students", config["models"]["students"]))
        * sum(seeds[key] for key in block.get("settings", seeds))
        for block in config["datasets"].values()
    )
    # a tuned setting: one tune_point job per grid point (the product of its candidate
    # lists) and one tune job, per dataset that runs it
    grids = {key: math.prod(len(v) for v in entry["tune"].values())
             for key, entry in distill["settings"].items() if entry.get("tune")}
    tuned = [grids[key] for block in config["datasets"].values()
             for key in block.get("settings", seeds) if key in grids]
    per_dataset = ("preprocess", "train_teacher", "evaluate_teacher")
    once = ("aggregate", "figures", "report", "all")
    return {
        **({"acquire": acquired} if acquired else {}),
        **dict.fromkeys(per_dataset, datasets),
        "distill": students,
        "evaluate_student": students,
        **({"tune_point": sum(tuned), "tune": len(tuned)} if tuned else {}),
        **dict.fromkeys(once, 1),
    }


def resources(output: str, rule: str) -> list[dict[str, str]]:
    """The `resources:` of every job of ``rule`` in a dry run's job listing."""
    found = []
    for block in output.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:$", block, re.M):
            line = re.search(r"^\s+resources: (.*)$", block, re.M)[1]
            found.append(dict(item.split("=", 1) for item in line.split(", ")))
    return found


# ---- job counts ---------------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.parametrize("name", CONFIGS)
def test_dry_run_lists_the_config_grid(workdir, name):
    config = yaml.safe_load((workdir / "config" / name).read_text())
    started = time.perf_counter()
    result = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", f"config/{name}")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stdout + result.stderr) == expected_counts(config)
    # The DAG of the paper's grid (hundreds of jobs) is built in a few seconds; this
    # bound is loose on purpose (shared CI machines), it catches heavy imports.
    assert elapsed < 30, f"snakemake -n took {elapsed:.1f} s on {name}"


@pytest.mark.workflow
def test_dry_run_honours_a_datasets_subset(workdir):
    """diffusion_reaction runs unet-m with none and dual only; navier_stokes runs all."""
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["models"]["students"] = ["unet-s", "unet-m"]
    config["distill"]["seeds"] = [0]
    config["distill"]["settings"] = {
        "none": {"seeds": [0, 1]}, "low": {"cutoffs": [4], "weights": [1.0]},
        "high": {"cutoffs": [4], "weights": [1.0]},
        "dual": {"cutoffs": [4], "weights": [1.0, 1.0], "seeds": [0, 1]},
        "output": {}, "fitnet": {},
    }
    config["datasets"]["navier_stokes"].pop("students", None)
    config["datasets"]["navier_stokes"].pop("settings", None)
    for name in ("diffusion_reaction", "climate"):
        config["datasets"][name].update(students=["unet-m"], settings=["dual", "none"])
    (workdir / "subset.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "-n", "--configfile", "subset.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # navier_stokes: 2 students × (none 2 + low + high + dual 2 + output + fitnet);
    # diffusion_reaction and climate: unet-m × (none 2 + dual 2); climate is read in place
    students = 2 * 8 + 2 * 4
    assert job_stats(output) == {
        "acquire": 2, "preprocess": 3, "train_teacher": 3, "evaluate_teacher": 3,
        "distill": students, "evaluate_student": students,
        "aggregate": 1, "figures": 1, "report": 1, "all": 1,
    } == expected_counts(config)
    runs = set(re.findall(r"results/students/(\w+)/([\w-]+)/(\w+)/seed-(\d+)/done\.json",
                          output))
    dr = {(model, bands, seed) for dataset, model, bands, seed in runs
          if dataset == "diffusion_reaction"}
    assert dr == {("unet-m", bands, seed) for bands in ("none", "dual") for seed in "01"}
    assert len(runs) == students
    # figures: one sample figure per student a dataset runs
    assert "results/figures/samples_diffusion_reaction_unet-m.png" in output
    assert "samples_diffusion_reaction_unet-s.png" not in output
    assert "results/figures/samples_navier_stokes_unet-s.png" in output


@pytest.mark.workflow
def test_a_subset_does_not_rerun_the_data_jobs(workdir, tmp_path):
    """A dataset's students/settings pick jobs, they are not in its data jobs' params:
    narrowing them reruns no acquire or preprocess job; another data key does."""
    work = tmp_path / "work"
    shutil.copytree(workdir, work, ignore=shutil.ignore_patterns(".snakemake", "results"))
    raw = tmp_path / "toy.h5"
    with h5py.File(raw, "w") as f:
        f["u"] = np.random.default_rng(0).normal(size=(6, 4, 8, 8)).astype(np.float32)

    def dry_run(**block: object) -> dict[str, int]:
        path = write_config(tmp_path, {"toy": file_dataset(raw, **block)})
        result = snakemake(work, "-n", "--until", "preprocess", "--configfile", str(path))
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        return job_stats(output) if "Job stats:" in output else {}

    path = write_config(tmp_path, {"toy": file_dataset(raw)})
    result = snakemake(work, "--cores", "1", "--until", "preprocess", "--configfile", str(path))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert dry_run() == {}
    assert dry_run(students=["unet-s"], settings=["none"]) == {}
    # the params trigger is live: a key the data depends on reruns preprocess (a file
    # source has no acquire job: it is read in place)
    assert dry_run(window_stride=2) == {"preprocess": 1}


def test_paper_config_is_the_paper_grid():
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    ns = config["datasets"]["navier_stokes"]
    assert ns["simulate"]["viscosity"] == 1e-5
    assert ns["simulate"]["n_trajectories"] == 1200
    assert (ns["simulate"]["resolution"], ns["simulate"]["n_records"]) == (64, 20)
    assert ns["split"] == {"train": 1000, "val": 100, "test": 100}
    assert (ns["in_steps"], ns["out_steps"]) == (10, 10)
    assert config["models"]["teacher"] == "teacher-paper"
    assert {plan.split_name(s) for s in config["models"]["students"]} == {
        (family, size) for family in ("unet", "resnet", "mixer") for size in "sml"
    }
    assert set(config["distill"]["settings"]) == set(plan.SETTINGS)


# ---- lint and report ----------------------------------------------------------------------


@pytest.mark.workflow
def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Lints for" not in output, output[-3000:]


def test_every_figure_kind_has_a_caption():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert {figure.kind for figure in plan.figure_plan(config)} == set(plan.FIGURE_KINDS)
    for name in (*plan.FIGURE_KINDS, "metrics", "workflow"):
        assert (ROOT / "workflow/report" / f"{name}.rst").read_text().strip()


# ---- profiles -----------------------------------------------------------------------------


@pytest.mark.workflow
def test_slurm_profile_maps_gpus(workdir):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    # A dry run needs no sbatch: the profile is parsed and resources are set, nothing
    # is submitted.
    result = snakemake(workdir, "--profile", "workflow/profiles/slurm", "-n",
                       "--configfile", "config/smoke.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]

    class Resources(dict):
        __getattr__ = dict.__getitem__

    class Job:
        def __init__(self, res: dict[str, str]) -> None:
            self.resources = Resources(res)

    for rule in ("train_teacher", "distill", "evaluate_student", "preprocess", "acquire"):
        jobs = resources(output, rule)
        assert jobs, f"no {rule} job in the dry run"
        for res in jobs:
            if rule in GPU_RULES:
                assert res["gpu"] == "1" and res["slurm_partition"] == "gpu"
                assert "gres" not in res  # the plugin refuses gpu and gres together
                assert set_gres_string(Job(res)).strip() == "--gpus=1"
            else:
                assert "gpu" not in res and res["slurm_partition"] == "cpu"
                assert set_gres_string(Job(res)) == ""


def test_kubernetes_profile_names_the_gpu_maker():
    profile = yaml.safe_load((ROOT / "workflow/profiles/kubernetes/config.yaml").read_text())
    assert profile["executor"] == "kubernetes"
    assert profile["default-storage-provider"] and profile["default-storage-prefix"]
    # the plugin stops on a `gpu` resource without gpu_manufacturer
    for rule in GPU_RULES:
        assert profile["set-resources"][rule]["gpu_manufacturer"] in ("nvidia", "amd")


def _rules_with(line: str) -> set[str]:
    """Names of the rules in workflow/rules/ that have a line matching regex ``line``."""
    found = set()
    for path in (ROOT / "workflow/rules").glob("*.smk"):
        for match in re.finditer(r"^rule (\w+):.*?(?=^rule |\Z)", path.read_text(), re.M | re.S):
            if re.search(line, match[0], re.M):
                found.add(match[1])
    return found


def test_gpu_rules_are_the_profiles_gpu_rules():
    assert _rules_with(r"^\s+gpu=1,$") == GPU_RULES


def test_the_jobs_that_head_the_dags_chains_go_first():
    """Data and teachers are scheduled before students of datasets already further on
    (acquire's two threads would otherwise wait behind one-thread jobs)."""
    assert _rules_with(r"^\s+priority: 50$") == {"acquire"}
    assert _rules_with(r"^\s+priority: 10$") == {"preprocess", "train_teacher"}


SHADOW_RULES = {"train_teacher", "tune_point", "distill", "evaluate_teacher",
                "evaluate_student"}


def test_the_shadow_switch_is_a_checked_config_key():
    """`execution: {shadow: minimal}` turns on the `shadow:` of the training and
    evaluation rules (tests/test_workflow.py runs them so); other values are errors."""
    from sdkd.config import validate
    from sdkd.errors import SdkdError

    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    for value in ("minimal", None):
        validate({**config, "execution": {"shadow": value}})
    with pytest.raises(SdkdError, match=r"execution\.shadow"):
        validate({**config, "execution": {"shadow": "full"}})
    assert _rules_with(r"^\s+shadow:\s+SHADOW$") == SHADOW_RULES


# ---- the run grid is light ----------------------------------------------------------------


# What the Snakefile may import: every start of Snakemake pays for these
LIGHT_MODULES = ("sdkd.plan", "sdkd.config", "sdkd.errors", "sdkd.data.paths", "sdkd.hardware")


def test_workflow_imports_only_light_modules():
    code = (
        f"import sys, {', '.join(LIGHT_MODULES)}\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
    for path in [ROOT / "Snakefile", *(ROOT / "workflow/rules").glob("*.smk")]:
        for module in re.findall(r"^\s*(?:from|import) (sdkd[\w.]*)", path.read_text(), re.M):
            assert module in LIGHT_MODULES, (
                f"{path.name} imports {module}")


def test_plan_agrees_with_the_losses():
    from sdkd.distill import losses, settings

    assert plan.SETTINGS == losses.SETTINGS
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["$defs"]["band_setting"]["properties"]["setting"]["enum"] == list(plan.SETTINGS)
    from sdkd.report.setup import METHOD_ORIGIN

    assert set(METHOD_ORIGIN) == set(plan.SETTINGS)
    distill = {"lam": 0.5, "latent_weight": 1.0, "output_weight": 2.0, "normalize_bands": False,
               "standardize_latents": True, "seeds": [3],
               "settings": {"dual_c8": {"setting": "dual", "cutoffs": [8], "seeds": [1, 2]}}}
    resolved = settings.band_setting(distill, "dual_c8")
    assert isinstance(resolved, plan.BandSetting)
    assert resolved.values() == plan.band_setting(distill, "dual_c8").values()
    assert resolved.setting == "dual" and resolved.seeds == (1, 2) and resolved.lam == 0.5


# ---- hostile paths and bad configs --------------------------------------------------------


def _shell_commands() -> dict[str, str]:
    """Each rule's shell command as Snakemake formats it (adjacent literals joined)."""
    commands = {}
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for match in re.finditer(r"^rule (\w+):.*?^    shell:\n((?:        \"[^\n]*\"\n)+)",
                                 path.read_text(), re.M | re.S):
            commands[match[1]] = "".join(re.findall(r'"(.*)"', match[2]))
    return commands


def test_every_value_reaching_a_shell_is_quoted():
    """A file name, folder or param holding `$(...)`, a space or a quote stays one shell
    word: every field of every rule's command is shell-quoted (`:q`)."""
    commands = _shell_commands()
    assert set(commands) >= {"acquire", "preprocess", "train_teacher", "distill",
                             "evaluate_teacher", "evaluate_student", "aggregate", "figures",
                             "report"}
    for rule, command in commands.items():
        fields = re.findall(r"\{([^{}]*)\}", command)
        assert fields, rule
        assert [f for f in fields if not f.endswith(":q")] == [], f"{rule}: {command}"


@pytest.mark.workflow
def test_hostile_file_names_run_as_data(tmp_path):
    """A `file` source named `evil$(touch PWNED).h5`, and one in a folder with a space
    and a quote: acquire and preprocess take them as names, no shell runs them."""
    from snakerun import copy_workflow
    from snakerun import snakemake as run_snakemake

    work = copy_workflow(tmp_path / "work")
    files = [tmp_path / "evil$(touch PWNED).h5", tmp_path / "my data" / "it's here.h5"]
    for path in files:
        path.parent.mkdir(exist_ok=True)
        with h5py.File(path, "w") as f:
            f["u"] = np.random.default_rng(0).normal(size=(6, 4, 8, 8)).astype(np.float32)
    config = write_config(tmp_path, {"evil": file_dataset(files[0]),
                                     "spaced": file_dataset(files[1])})
    # targets first: --configfile takes every word after it
    result = run_snakemake(work, "results/data/evil.h5", "results/data/spaced.h5",
                           "--configfile", str(config))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (work / "results/data/evil.h5").is_file() and (work / "results/data/spaced.h5").is_file()
    assert not (work / "resources").exists()  # read in place, never linked or copied
    assert not [p for p in (*tmp_path.rglob("PWNED"), *ROOT.glob("PWNED"))]


def _bad_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["datasets"]["navier_stokes"].update(bogus=1),
         "datasets.navier_stokes: Additional properties are not allowed ('bogus' was"),
        (lambda c: c["training"]["student"].update(lr=float("nan")), "training.student.lr"),
        (lambda c: c["distill"]["settings"]["dual"].update(cutoffs=[3]),
         "distill.settings.dual.cutoffs"),
    ],
    ids=["unknown key", "nan", "cutoff above Nyquist"],
)
def test_snakemake_stops_on_a_bad_config_with_one_line(workdir, tmp_path, sdkd_cli, edit, key):
    """`snakemake -n --configfile bad.yaml`: the line `sdkd check-config` prints, once, and
    nothing else (Snakemake's own validator printed 824 lines for an unknown key)."""
    path = _bad_config(tmp_path, edit)
    result = snakemake(workdir, "-n", "--configfile", str(path))
    status, err = sdkd_cli("check-config", "--config", path)
    assert status == result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == err
    assert result.stderr.startswith(f"sdkd: error: {path}: {key}")
    assert result.stderr.count("\n") == 1


@pytest.mark.workflow
def test_snakemake_checks_the_models_before_the_first_job(tmp_path):
    """What only torch can check (a model name) fails before any job, in one line that
    names the user's file, not the resolved copy alone; nothing is written."""
    from snakerun import copy_workflow
    from snakerun import snakemake as run_snakemake

    work = copy_workflow(tmp_path / "work")
    path = _bad_config(tmp_path, lambda c: c["models"].update(students=["unet-xs"]))
    result = run_snakemake(work, "--configfile", str(path), cores=1)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"sdkd: error: {path} (resolved in {work}/.snakemake/sdkd/config-")
    assert last.endswith("models.students: unknown size 'xs' for model family 'unet'; valid "
                         "names: unet-s, unet-m, unet-l")
    assert result.stderr.count("sdkd: error:") == 1 and "Traceback" not in result.stderr
    assert not (work / "resources").exists() and not (work / "results").exists()
