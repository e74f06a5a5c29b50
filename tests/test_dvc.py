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
from snakerun import trimmed_smoke

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS_FILE = "config/config.yaml"
METRICS_FILE = "results/tables/summary.json"
# The workflow's own files: what a copy of the project needs to run Snakemake.
WORKFLOW_FILES = ("Snakefile", "workflow", "config")
# What docs/dvc.md tells users to run after `dvc pull`; the round trip runs it verbatim.
AFTER_PULL = "snakemake --cores 1 --touch --forceall"
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
        cmd_problems, until, targets = _snakemake_args(stage["cmd"])
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
        new = [j for j in dry_run(_dry_run_argv(stage["cmd"])) if j not in owner_of_job]
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
    argvs |= {_dry_run_argv(stage["cmd"]) for stage in _stages(dvc_yaml).values()
              if shlex.split(stage["cmd"])[:1] == ["snakemake"]}
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


def _mutated(dvc: dict, stage: str, key: str, edit: Callable) -> dict:
    changed = copy.deepcopy(dvc)
    changed["stages"][stage][key] = edit(changed["stages"][stage][key])
    return changed


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
        ("teachers", "cmd", lambda cmd: cmd.replace("train_teacher", "train_teachers"),
         "no Snakemake rule 'train_teachers'"),
        ("teachers", "cmd", lambda cmd: f"{cmd} distill", "one --until rule"),
        ("data", "cmd", lambda cmd: f"{cmd} --configfile config/smoke.yaml", "--configfile"),
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
    assert AFTER_PULL in (ROOT / "docs/dvc.md").read_text()


# ---------------------------------------------------------------------------------------
# The round trip: dvc repro → dvc push → fresh clone → dvc pull → Snakemake has nothing to do


def _run(argv: list[str] | str, cwd: Path, env: dict[str, str], timeout: int = 300):
    result = subprocess.run(
        shlex.split(argv) if isinstance(argv, str) else argv,
        cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{argv} failed in {cwd}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def _tracked_files(repo: Path, outs: list[str]) -> dict[str, Path]:
    files = {}
    for out in outs:
        path = repo / out
        for item in [path] if path.is_file() else sorted(path.rglob("*")):
            if item.is_file():
                files[str(item.relative_to(repo))] = item
    return files


@pytest.mark.workflow
@pytest.mark.slow
def test_repro_push_pull_round_trip(tmp_path, dvc_yaml):
    config_home = tmp_path / "dvc-config"
    config_home.mkdir()
    (config_home / "config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    env = _env(
        DVC_NO_ANALYTICS="1", DVC_GLOBAL_CONFIG_DIR=str(config_home),
        DVC_SYSTEM_CONFIG_DIR=str(config_home / "system"),
        DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site-cache"),
        GIT_AUTHOR_NAME="sdkd test", GIT_AUTHOR_EMAIL="sdkd@example.invalid",
        GIT_COMMITTER_NAME="sdkd test", GIT_COMMITTER_EMAIL="sdkd@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
    )
    dvc = [sys.executable, "-m", "dvc"]

    # A project checkout whose params file is the smoke config.
    repo = tmp_path / "repo"
    _copy_workflow(repo, (*WORKFLOW_FILES, "dvc.yaml", ".dvcignore", ".gitignore"))
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(ROOT / ".dvc" / name, repo / ".dvc" / name)
    # The smoke grid cut to one dataset and two settings, with no experiment name (the
    # params file is the default: DVC's outs are its paths): versioning, not the grid,
    # is under test, and every job of the DAG runs here once more.
    (repo / PARAMS_FILE).write_text(yaml.safe_dump(trimmed_smoke(), sort_keys=False))
    _run("git init -q", repo, env)
    _run("git add -A", repo, env)
    _run(["git", "commit", "-qm", "project"], repo, env)

    _run([*dvc, "repro"], repo, env, timeout=1800)
    assert "Nothing to be done" in _run("snakemake --cores 1 -n", repo, env)
    assert "up to date" in _run([*dvc, "status"], repo, env)

    remote = tmp_path / "remote"
    _run([*dvc, "remote", "add", "-d", "local", str(remote)], repo, env)
    _run("git add dvc.lock .dvc/config", repo, env)
    _run(["git", "commit", "-qm", "results"], repo, env)
    _run([*dvc, "push"], repo, env)

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    _run([*dvc, "pull"], clone, env)

    outs = [path for stage in _stages(dvc_yaml).values()
            for key in ("outs", "metrics") for path in _paths(stage.get(key))]
    built, pulled = _tracked_files(repo, outs), _tracked_files(clone, outs)
    assert sorted(pulled) == sorted(built)
    for data in ("resources/raw/", "results/data/", "results/teachers/", "results/students/"):
        assert any(name.startswith(data) for name in built), f"nothing under {data}"
    assert any(name.endswith("/best.pt") for name in built)
    different = [name for name in built if not filecmp.cmp(built[name], pulled[name], False)]
    assert not different, f"pulled files differ: {different}"

    # DVC does not keep modification times, and the clone has no .snakemake/ metadata.
    _run(AFTER_PULL, clone, env)
    after = _run("snakemake --cores 1 -n", clone, env)
    assert "Nothing to be done" in after, after[-3000:]
    assert "missing provenance" not in after
    assert "up to date" in _run([*dvc, "status"], clone, env)
    # The touch recorded provenance: a config change still reruns the jobs it affects.
    smoke = yaml.safe_load((clone / PARAMS_FILE).read_text())
    smoke["datasets"]["navier_stokes"]["simulate"]["n_trajectories"] += 1
    (clone / PARAMS_FILE).write_text(yaml.safe_dump(smoke))
    changed = _run("snakemake --cores 1 -n", clone, env)
    assert "Params have changed" in changed and "rule acquire:" in changed
