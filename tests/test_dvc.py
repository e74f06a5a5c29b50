"""DVC on top of the Snakemake DAG: dvc.yaml in step with the Snakefile, and a round trip.

The drift check dry-runs every stage's Snakemake command in an empty copy of the
workflow and compares the jobs it would run with the stage's declared outs and deps;
the round trip runs `dvc repro` on the smoke config in a temporary git repository,
pushes to a local remote, pulls into a fresh clone and checks that Snakemake finds
nothing to redo there (docs/dvc.md).
"""

from __future__ import annotations

import copy
import filecmp
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from snakerun import job_counts, trimmed_smoke

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS_FILE = "config/config.yaml"
METRICS_FILE = "results/tables/summary.json"
# The outs git keeps instead of DVC's cache (dvc.yaml `cache: false`, .gitignore).
GIT_TRACKED = ("results/tables/metrics.csv", METRICS_FILE)
# The workflow's own files: what a copy of the project needs to run Snakemake.
WORKFLOW_FILES = ("Snakefile", "workflow", "config")
# What every stage runs before Snakemake, and what docs/dvc.md tells users to run after
# `dvc pull` before calling Snakemake themselves; the round trip runs it verbatim.
ADOPT = "python -m sdkd.dvc_adopt"
# Options that would make a stage build from something other than its params file.
# Files every rule depends on: Snakemake reads them before any job.
EVERY_STAGE_DEPS = ("Snakefile", "workflow/rules/common.smk", "workflow/schemas")
FORBIDDEN_OPTIONS = {"--configfile", "--configfiles", "--config", "-C", "--snakefile", "-s",
                     "--directory", "-d"}


class Job(NamedTuple):
    rule: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _env(**extra: str) -> dict[str, str]:
    """The environment DVC and Snakemake run in: this venv first (the rules call `sdkd`)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def _copy_workflow(dest: Path, names=WORKFLOW_FILES) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)


def _stages(dvc: dict) -> dict[str, dict]:
    return dvc["stages"]


def _paths(entries: list | None) -> dict[str, dict]:
    """dvc.yaml's out/metric/dep list → {path: options}."""
    result = {}
    for entry in entries or []:
        if isinstance(entry, str):
            result[entry] = {}
        else:
            ((path, options),) = entry.items()
            result[path] = options or {}
    return result


def _covers(out: str, path: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def _commands(stage: dict) -> list[str]:
    """A stage's commands: dvc.yaml's `cmd` is one command or a list of them."""
    cmd = stage["cmd"]
    return [cmd] if isinstance(cmd, str) else list(cmd)


def _snakemake_args(cmd: str) -> tuple[list[str], list[str], list[str]]:
    """A stage command → (problems, --until rules, file or rule targets)."""
    argv = shlex.split(cmd)
    if not argv or argv[0] != "snakemake":
        return [f"does not run snakemake: {cmd!r}"], [], []
    problems, until, targets = [], [], []
    args, i = argv[1:], 0
    while i < len(args):
        arg = args[i]
        option = arg.split("=", 1)[0]
        i += 1
        if option in FORBIDDEN_OPTIONS:
            problems.append(f"{arg} makes Snakemake read something other than {PARAMS_FILE}")
        elif option in ("--until", "-U"):
            if "=" in arg:
                until.append(arg.split("=", 1)[1])
            while i < len(args) and not args[i].startswith("-"):
                until.append(args[i])
                i += 1
        elif option in ("--cores", "-c"):
            i += "=" not in arg
        elif arg.startswith("-"):
            problems.append(f"unexpected option {arg} (see tests/test_dvc.py)")
        else:
            targets.append(arg)
    if len(until) > 1:
        # Snakemake 9 never starts a job that depends on another --until job.
        problems.append(f"give one --until rule per stage, not {until}")
    return problems, until, targets


def _dry_run_argv(cmd: str) -> tuple[str, ...]:
    """The stage command without its --cores setting, as a hashable dry-run key."""
    argv = shlex.split(cmd)
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--cores", "-c"):
            skip = True
        elif not arg.startswith(("--cores=", "-c=")):
            kept.append(arg)
    return tuple(kept)


def _parse_dry_run(text: str) -> list[Job]:
    """The jobs `snakemake -n` lists: a `rule NAME:` line, then indented `key: value` lines."""
    jobs, rule, fields = [], None, {}

    def files(key: str) -> tuple[str, ...]:
        return tuple(p for p in fields.get(key, "").split(", ") if p)

    def flush():
        if rule is not None:
            jobs.append(Job(rule, files("input"), files("output")))

    for line in text.splitlines():
        header = re.fullmatch(r"(?:local)?(?:rule|checkpoint) (\S+):", line)
        if header:
            flush()
            rule, fields = header.group(1), {}
        elif rule is not None and (field := re.fullmatch(r"    (\w+): (.*)", line)):
            fields[field.group(1)] = field.group(2)
        elif rule is not None and not line.startswith("    "):
            flush()
            rule, fields = None, {}
    flush()
    return jobs


def _dry_run(workdir: Path, argv: tuple[str, ...]) -> list[Job]:
    result = subprocess.run(
        [*argv, "--cores", "1", "--dry-run", "--nocolor"],
        cwd=workdir, env=_env(), capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, f"{shlex.join(argv)} -n failed:\n{result.stderr[-3000:]}"
    jobs = _parse_dry_run(result.stdout + result.stderr)
    assert jobs, f"{shlex.join(argv)} -n listed no jobs:\n{result.stdout[-2000:]}"
    return jobs


def _rule_files() -> dict[str, str]:
    """Rule name → the file that defines it (Snakefile or workflow/rules/*.smk)."""
    files = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        for name in re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), re.MULTILINE):
            files[name] = str(path.relative_to(ROOT))
    return files


def drift(dvc: dict, rule_files: dict[str, str],
          dry_run: Callable[[tuple[str, ...]], list[Job]]) -> list[str]:
    """Every way dvc.yaml disagrees with the Snakefile, one line each (empty: in step).

    ``dry_run(argv)`` returns the jobs a Snakemake command would run from scratch.
    """
    problems: list[str] = []
    stages = _stages(dvc)
    for name, stage in stages.items():
        deps = _paths(stage.get("deps"))
        problems += [f"stage {name}: add {path} to its deps (every rule uses it)"
                     for path in EVERY_STAGE_DEPS if path not in deps]
    owner_of_out: dict[str, str] = {}
    for name, stage in stages.items():
        declared = {**_paths(stage.get("outs")), **_paths(stage.get("metrics")),
                    **_paths(stage.get("plots"))}
        for path, options in declared.items():
            if path in owner_of_out:
                problems.append(f"{path} is an out of both {owner_of_out[path]} and {name}")
            owner_of_out[path] = name
            if options.get("persist") is not True:
                problems.append(f"stage {name}: out {path} needs `persist: true` (DVC would "
                                "delete it before running Snakemake, which then redoes everything)")
        if stage.get("params") != [{PARAMS_FILE: None}]:
            problems.append(f"stage {name}: params must be the whole {PARAMS_FILE}")
    if METRICS_FILE not in {p for s in stages.values() for p in _paths(s.get("metrics"))}:
        problems.append(f"{METRICS_FILE} is not declared as metrics")

    # Each stage's jobs, in dvc.yaml's order; a job belongs to the first stage that runs it.
    full = dry_run(("snakemake", "all"))
    owner_of_job: dict[Job, str] = {}
    done_stages: list[str] = []
    skipped = False
    for name, stage in stages.items():
        commands = _commands(stage)
        if commands[:-1] != [ADOPT]:
            problems.append(f"stage {name}: run `{ADOPT}` first, then only Snakemake "
                            "(sdkd/dvc_adopt.py)")
        cmd_problems, until, targets = _snakemake_args(commands[-1])
        problems += [f"stage {name}: {p}" for p in cmd_problems]
        unknown = [r for r in until if r not in rule_files]
        unknown += [t for t in targets if "/" not in t and "." not in t and t not in rule_files]
        problems += [f"stage {name}: no Snakemake rule {r!r}" for r in unknown]
        if cmd_problems or unknown:
            skipped = True
            continue
        deps = list(_paths(stage.get("deps")))
        for dep in deps:
            producer = owner_of_out.get(dep)
            if producer is not None and producer not in done_stages:
                problems.append(f"stage {name}: dep {dep} comes from a later stage ({producer})")
            elif producer is None and (dep.split("/")[0] in ("results", "resources")
                                       or not (ROOT / dep).exists()):
                problems.append(f"stage {name}: dep {dep} is neither a project file nor an out")
        new = [j for j in dry_run(_dry_run_argv(commands[-1])) if j not in owner_of_job]
        if not new:
            problems.append(f"stage {name}: {stage['cmd']!r} runs no job of its own")
        for job in new:
            owner_of_job[job] = name
            rule_file = rule_files.get(job.rule)
            if rule_file and rule_file not in deps:
                problems.append(f"stage {name} runs rule {job.rule}: add {rule_file} to its deps")
            for path in job.inputs:
                producer = next((s for j, s in owner_of_job.items() if path in j.outputs), None)
                if producer not in (None, name) and not any(_covers(d, path) for d in deps):
                    problems.append(f"stage {name}: input {path} (from stage {producer}) "
                                    "is not covered by its deps")
        done_stages.append(name)

    if skipped:  # the checks below would only repeat that a stage's jobs are unknown
        return problems
    for job in full:
        if job not in owner_of_job:
            problems.append(f"no stage runs rule {job.rule} ({', '.join(job.outputs)})")
    produced = {path: owner_of_job.get(j) for j in full for path in j.outputs}
    for path, stage in produced.items():
        covering = [out for out in owner_of_out if _covers(out, path)]
        if not covering:
            problems.append(f"Snakemake writes {path} but no DVC out covers it")
        elif any(owner_of_out[out] != stage for out in covering):
            problems.append(f"{path} is written by stage {stage} but declared by "
                            f"{', '.join(sorted({owner_of_out[o] for o in covering}))}")
    for out, stage in owner_of_out.items():
        if not any(_covers(out, path) for path in produced):
            problems.append(f"stage {stage}: out {out} is not produced by the Snakefile")
    return problems


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


@pytest.fixture(scope="module")
def dry_runs(dvc_yaml, tmp_path_factory) -> Callable[[tuple[str, ...]], list[Job]]:
    """Dry runs of the full DAG and of every stage command, on config/config.yaml.

    Each runs in its own empty copy of the workflow (no results yet), side by side.
    """
    argvs = {("snakemake", "all")}
    argvs |= {_dry_run_argv(_commands(stage)[-1]) for stage in _stages(dvc_yaml).values()
              if shlex.split(_commands(stage)[-1])[:1] == ["snakemake"]}
    argvs = sorted(argvs)
    base = tmp_path_factory.mktemp("dry-runs")

    def run(index_argv):
        index, argv = index_argv
        workdir = base / str(index)
        _copy_workflow(workdir)
        return argv, _dry_run(workdir, argv)

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        cache = dict(pool.map(run, enumerate(argvs)))

    def lookup(argv):
        if argv not in cache:  # a command only a test below makes up
            workdir = base / f"extra-{len(cache)}"
            _copy_workflow(workdir)
            cache[argv] = _dry_run(workdir, argv)
        return cache[argv]

    return lookup


def test_dvc_is_initialised():
    assert (ROOT / ".dvc/config").is_file()
    assert (ROOT / ".dvcignore").is_file()
    ignored = (ROOT / ".dvc/.gitignore").read_text().split()
    assert "/cache" in ignored and "/tmp" in ignored


@pytest.mark.workflow
def test_dvc_yaml_matches_the_snakefile(dvc_yaml, dry_runs):
    problems = drift(dvc_yaml, _rule_files(), dry_runs)
    assert not problems, "dvc.yaml and the Snakefile drifted apart:\n" + "\n".join(problems)


def test_versions_data_checkpoints_and_metrics(dvc_yaml):
    outs = {path for stage in _stages(dvc_yaml).values() for path in _paths(stage.get("outs"))}
    assert {"resources/raw", "results/data", "results/teachers", "results/students"} <= outs
    metrics = {p for s in _stages(dvc_yaml).values() for p in _paths(s.get("metrics"))}
    assert metrics == {METRICS_FILE}


def test_git_keeps_the_metrics_table_and_the_headline_numbers(dvc_yaml):
    """`dvc metrics diff` and `dvc plots diff` compare commits with git alone."""
    declared = {path: options for stage in _stages(dvc_yaml).values()
                for key in ("outs", "metrics") for path, options in _paths(stage.get(key)).items()}
    for path in GIT_TRACKED:
        assert declared[path].get("cache") is False, path
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 1, f".gitignore hides {path}"
    assert subprocess.run(["git", "check-ignore", "-q", "results/tables/other.csv"],
                          cwd=ROOT, check=False).returncode == 0


def _mutated(dvc: dict, stage: str, key: str, edit: Callable) -> dict:
    changed = copy.deepcopy(dvc)
    changed["stages"][stage][key] = edit(changed["stages"][stage][key])
    return changed


def _in_snakemake(edit: Callable[[str], str]) -> Callable[[list[str]], list[str]]:
    """An edit of a stage's Snakemake command (its last), the commands before it kept."""
    return lambda commands: [*commands[:-1], edit(commands[-1])]


def _without(entries: list, path: str) -> list:
    return [e for e in entries if path not in ([e] if isinstance(e, str) else e)]


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("stage", "key", "edit", "expected"),
    [
        ("students", "outs", lambda outs: _without(outs, "results/students"),
         "no DVC out covers"),
        ("students", "outs", lambda outs: [*outs, {"results/checkpoints": {"persist": True}}],
         "results/checkpoints is not produced by the Snakefile"),
        ("students", "deps", lambda deps: _without(deps, "results/teachers"),
         "is not covered by its deps"),
        ("students", "deps", lambda deps: _without(deps, "workflow/rules/distill.smk"),
         "add workflow/rules/distill.smk"),
        ("teachers", "cmd", _in_snakemake(lambda c: c.replace("train_teacher", "train_teachers")),
         "no Snakemake rule 'train_teachers'"),
        ("teachers", "cmd", _in_snakemake(lambda c: f"{c} distill"), "one --until rule"),
        ("data", "cmd", _in_snakemake(lambda c: f"{c} --configfile config/smoke.yaml"),
         "--configfile"),
        ("students", "cmd", lambda cmd: cmd[-1:], ADOPT),
        ("teachers", "outs", lambda outs: [{"results/teachers": {"persist": False}}],
         "persist: true"),
        ("evaluate", "params", lambda params: [{PARAMS_FILE: ["seed"]}], "whole config"),
    ],
)
def test_drift_is_detected(dvc_yaml, dry_runs, stage, key, edit, expected):
    problems = drift(_mutated(dvc_yaml, stage, key, edit), _rule_files(), dry_runs)
    assert any(expected in p for p in problems), problems


@pytest.mark.workflow
def test_a_moved_out_is_detected(dvc_yaml, dry_runs):
    changed = copy.deepcopy(dvc_yaml)
    stages = changed["stages"]
    stages["evaluate"]["outs"] = _without(stages["evaluate"]["outs"], "results/eval")
    stages["report"]["outs"].append({"results/eval": {"persist": True}})
    problems = drift(changed, _rule_files(), dry_runs)
    assert any("written by stage evaluate but declared by report" in p for p in problems), problems


def test_the_params_file_is_the_default_experiment():
    """DVC's outs are the default's paths (results/, resources/raw/): the params file
    names no experiment, whose files would go to results/experiments/<name>/ instead."""
    assert "experiment" not in yaml.safe_load((ROOT / PARAMS_FILE).read_text())


def test_docs_give_the_after_pull_command():
    assert ADOPT in (ROOT / "docs/dvc.md").read_text()


# ---------------------------------------------------------------------------------------
# A project run through DVC in a temporary git repository: the round trip (dvc repro →
# dvc push → fresh clone → dvc pull → Snakemake has nothing to do), plots, experiments.

# The experiments' change: the dual setting's tuning grid, whose choice sets its KD
# weight. It reruns the tuning, the dual student and what reads them, never the data,
# the teacher or the plain student, and it changes the dual student's test MSE.
EXPERIMENT_PARAM = "distill.settings.dual.tune.lam"
EXPERIMENT_VALUE = [2.0]
UNAFFECTED_RULES = ("acquire", "preprocess", "train_teacher", "evaluate_teacher")


def _run(argv: list[str] | str, cwd: Path, env: dict[str, str], timeout: int = 300):
    """The command's output, stdout and stderr in the order written (DVC prints each
    stage's name to one, Snakemake its jobs to the other)."""
    result = subprocess.run(
        shlex.split(argv) if isinstance(argv, str) else argv, cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{argv} failed in {cwd}:\n{result.stdout[-6000:]}"
    return result.stdout


def _tracked_files(repo: Path, outs: list[str]) -> dict[str, Path]:
    files = {}
    for out in outs:
        path = repo / out
        for item in [path] if path.is_file() else sorted(path.rglob("*")):
            if item.is_file():
                files[str(item.relative_to(repo))] = item
    return files


class Project(NamedTuple):
    """A git repository where `dvc repro` has run and whose results are committed."""

    repo: Path
    env: dict[str, str]

    def run(self, *argv: str, cwd: Path | None = None, timeout: int = 300) -> str:
        return _run(list(argv), cwd or self.repo, self.env, timeout)

    def dvc(self, *argv: str, cwd: Path | None = None, timeout: int = 300) -> str:
        return self.run(sys.executable, "-m", "dvc", *argv, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """The smoke grid cut to one dataset and two settings as the params file, with no
    experiment name (the params file is the default: DVC's outs are its paths):
    versioning, not the grid, is under test, and every job of the DAG runs here."""
    tmp = tmp_path_factory.mktemp("dvc-project")
    config_home = tmp / "dvc-config"
    config_home.mkdir()
    (config_home / "config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    env = _env(
        DVC_NO_ANALYTICS="1", DVC_GLOBAL_CONFIG_DIR=str(config_home),
        DVC_SYSTEM_CONFIG_DIR=str(config_home / "system"),
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        GIT_AUTHOR_NAME="sdkd test", GIT_AUTHOR_EMAIL="sdkd@example.invalid",
        GIT_COMMITTER_NAME="sdkd test", GIT_COMMITTER_EMAIL="sdkd@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
    )
    project = Project(tmp / "repo", env)
    _copy_workflow(project.repo, (*WORKFLOW_FILES, "dvc.yaml", ".dvcignore", ".gitignore"))
    (project.repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(ROOT / ".dvc" / name, project.repo / ".dvc" / name)
    (project.repo / PARAMS_FILE).write_text(yaml.safe_dump(trimmed_smoke(), sort_keys=False))
    project.run("git", "init", "-q")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "project")

    project.dvc("repro", timeout=1800)
    # What docs/dvc.md says to commit after a run: the lock file and the tables git keeps.
    project.run("git", "add", "dvc.lock", *GIT_TRACKED)
    project.run("git", "commit", "-qm", "results")
    return project


@pytest.mark.workflow
@pytest.mark.slow
def test_repro_push_pull_round_trip(project, dvc_yaml, tmp_path):
    repo, env = project.repo, project.env
    assert "Nothing to be done" in _run("snakemake --cores 1 -n", repo, env)
    assert "up to date" in project.dvc("status")
    assert not project.run("git", "status", "--porcelain"), "a run left files git would add"

    remote = tmp_path / "remote"
    project.dvc("remote", "add", "--local", "-d", "local", str(remote))
    project.dvc("push")

    clone = tmp_path / "clone"
    project.run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    project.dvc("remote", "add", "--local", "-d", "local", str(remote), cwd=clone)
    project.dvc("pull", cwd=clone)

    outs = [path for stage in _stages(dvc_yaml).values()
            for key in ("outs", "metrics") for path in _paths(stage.get(key))]
    built, pulled = _tracked_files(repo, outs), _tracked_files(clone, outs)
    assert sorted(pulled) == sorted(built)
    for data in ("resources/raw/", "results/data/", "results/teachers/", "results/students/"):
        assert any(name.startswith(data) for name in built), f"nothing under {data}"
    assert any(name.endswith("/best.pt") for name in built)
    different = [name for name in built if not filecmp.cmp(built[name], pulled[name], False)]
    assert not different, f"pulled files differ: {different}"
    assert "up to date" in project.dvc("status", cwd=clone)

    # DVC does not keep modification times, and the clone has no .snakemake/ records.
    _run(ADOPT, clone, env)
    after = _run("snakemake --cores 1 -n", clone, env)
    assert "Nothing to be done" in after, after[-3000:]
    assert "missing provenance" not in after
    assert "up to date" in project.dvc("status", cwd=clone)
    # Adopting recorded provenance: a config change still reruns the jobs it affects.
    smoke = yaml.safe_load((clone / PARAMS_FILE).read_text())
    smoke["datasets"]["navier_stokes"]["simulate"]["n_trajectories"] += 1
    (clone / PARAMS_FILE).write_text(yaml.safe_dump(smoke))
    changed = _run("snakemake --cores 1 -n", clone, env)
    assert "Params have changed" in changed and "rule acquire:" in changed


@pytest.mark.workflow
def test_plots_show_renders_every_plot_source(project, tmp_path):
    out = tmp_path / "plots"
    rendered = project.dvc("plots", "show", "-o", str(out))
    assert "failed to load" not in rendered.lower() and "WARNING" not in rendered, rendered
    assert (out / "index.html").is_file()
    shown = project.dvc("plots", "show", "--json", "-o", str(out))
    plots = json.loads(shown[shown.index("{"):])["data"]
    figures = {p.name for p in (project.repo / "results/figures").glob("*.png")}
    assert {Path(name).name for name in plots} >= figures
    assert any("training" in name for name in figures)
    (by_setting,) = (p for name, p in plots.items() if "band setting" in name)
    rows = by_setting[0]["content"]["data"]["values"]
    assert {row["setting"] for row in rows} >= {"none", "dual"}
    # one training-curve plot per run: the teacher and each student
    curves = {name: p for name, p in plots.items() if name.startswith("results/plots/training/")}
    runs = [p.parent.name + "/" + p.name for p in
            (project.repo / "results/eval").rglob("*.json")]
    assert sorted(Path(name).parent.name + "/" + Path(name).stem + ".json" for name in curves) \
        == sorted(runs)
    for plot in curves.values():
        points = plot[0]["content"]["data"]["values"]
        assert {row["field"] for row in points} == {"train", "validation"}


def _stage_jobs(output: str) -> dict[str, int]:
    """The jobs the stages' Snakemake calls ran, summed over the stages: each stage's
    last "Job stats" table (an adopting touch may print one before it)."""
    counts: dict[str, int] = {}
    for stage in output.split("Running stage")[1:]:
        table = stage.rsplit("Job stats:", 1)
        for rule, count in (job_counts("Job stats:" + table[1]) if len(table) > 1 else {}).items():
            counts[rule] = counts.get(rule, 0) + count
    return counts


def _dual_mse(summary: dict) -> float:
    return summary["datasets"]["navier_stokes"]["students"]["unet-s"]["settings"]["dual"]["mse"]


def _experiments(project: Project, cwd: Path) -> dict[str, dict]:
    """`dvc exp show`: each experiment's (and the baseline's) params and headline metrics."""
    shown = json.loads(project.dvc("exp", "show", "--json", cwd=cwd))
    result = {}
    for commit in shown:
        if commit["rev"] == "workspace":
            continue
        for row in [commit, *(r for e in commit.get("experiments") or [] for r in e["revs"])]:
            data = row["data"]
            result[row.get("name") or data["rev"]] = {
                "params": data["params"][PARAMS_FILE]["data"],
                "summary": data["metrics"][METRICS_FILE]["data"],
            }
    return result


def _check_experiment(output: str, experiments: dict[str, dict], baseline: dict) -> None:
    """The experiment reran only what its param affects and `dvc exp show` shows it."""
    jobs = _stage_jobs(output)
    assert jobs.get("tune_point") == 1 and jobs.get("distill") == 1, jobs
    assert not {rule for rule in UNAFFECTED_RULES if jobs.get(rule)}, jobs
    (new,) = (e for e in experiments.values()
              if e["params"]["distill"]["settings"]["dual"]["tune"]["lam"] == EXPERIMENT_VALUE)
    tuning = new["summary"]["datasets"]["navier_stokes"]["tuning"]["dual"]
    assert tuning["chosen"]["values"]["lam"] == EXPERIMENT_VALUE[0]
    assert _dual_mse(new["summary"]) != _dual_mse(baseline["summary"])


def _set_param() -> str:
    return f"{PARAMS_FILE}:{EXPERIMENT_PARAM}={json.dumps(EXPERIMENT_VALUE)}"


@pytest.mark.workflow
@pytest.mark.slow
def test_queued_experiment_reruns_only_what_its_param_changes(project):
    """A queued experiment runs in a temporary copy of the repository, where DVC checks
    out the baseline's outs with fresh times and Snakemake has no records."""
    baseline = _experiments(project, project.repo)
    project.dvc("exp", "run", "--queue", "-S", _set_param())
    output = project.dvc("exp", "run", "--run-all", timeout=900)
    _check_experiment(output, _experiments(project, project.repo),
                      next(iter(baseline.values())))


@pytest.mark.workflow
@pytest.mark.slow
def test_exp_run_set_param_in_a_clone(project, tmp_path):
    """`dvc exp run -S` in a colleague's clone that checked the results out of a
    shared cache: the workspace's experiment, with the same adoption as a queued one."""
    clone = tmp_path / "clone"
    project.run("git", "clone", "-q", str(project.repo), str(clone), cwd=tmp_path)
    project.dvc("cache", "dir", "--local", str(project.repo / ".dvc/cache"), cwd=clone)
    project.dvc("checkout", cwd=clone)
    baseline = _experiments(project, clone)
    output = project.dvc("exp", "run", "-S", _set_param(), cwd=clone, timeout=900)
    config = yaml.safe_load((clone / PARAMS_FILE).read_text())
    assert config["distill"]["settings"]["dual"]["tune"]["lam"] == EXPERIMENT_VALUE
    _check_experiment(output, _experiments(project, clone), next(iter(baseline.values())))
    assert "Nothing to be done" in _run("snakemake --cores 1 -n", clone, project.env)
