"""The Snakemake DAG on the smoke config, in a temporary copy of the project."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from htmlpage import Page, assert_summary_matches
from snakerun import SMOKE_RESULTS, copy_workflow, env, job_counts, snakemake

from sdkd.data.dataset import ForecastWindows
from sdkd.plan import expected_runs
from sdkd.report.aggregate import read_metrics

# Every test here runs Snakemake in a subprocess: `pytest -m "not workflow"` skips them.
pytestmark = pytest.mark.workflow


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def _span(log: Path) -> tuple[datetime, datetime]:
    """First and last timestamp of an sdkd log: when the job ran."""
    stamps = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in _STAMP.findall(log.read_text())]
    return stamps[0], stamps[-1]


def _training_logs(work: Path) -> list[Path]:
    logs = work / SMOKE_RESULTS / "logs"
    return sorted([*logs.glob("train_teacher/*/*.log"), *logs.glob("distill/*/*/*/*.log")])


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_smoke_builds_the_report(smoke_run):
    results = smoke_run / SMOKE_RESULTS
    report = (results / "report.html").read_text()
    assert 'id="summary"' in report and 'id="setup"' in report
    for name in ("navier_stokes", "diffusion_reaction"):
        assert f'id="dataset-{name}"' in report
        assert (results / f"eval/{name}/teacher/teacher-tiny.json").exists()
        assert (results / f"students/{name}/unet-s/dual/seed-0/best.pt").exists()
    assert (results / "tables/summary.json").exists()
    # a named experiment: nothing of it in the default's folders
    assert sorted(p.name for p in (smoke_run / "results").iterdir()) == ["experiments"]
    assert sorted(p.name for p in (smoke_run / "resources").iterdir()) == ["shared"]


def test_smoke_report_headline_equals_the_metrics_table(smoke_run):
    """The summary of a real (smoke-scale) run can never disagree with its metrics.csv."""
    results = smoke_run / SMOKE_RESULTS
    table = read_metrics(results / "tables" / "metrics.csv")
    assert (table["status"] == "ok").all()
    page = Page((results / "report.html").read_text(encoding="utf-8"))
    assert_summary_matches(page, table, yaml.safe_load((smoke_run / "config/smoke.yaml")
                                                       .read_text()))


def test_smoke_builds_every_dataset(smoke_run):
    for name, channels in (("navier_stokes", 1), ("diffusion_reaction", 2)):
        ds = ForecastWindows(smoke_run / SMOKE_RESULTS / f"data/{name}.h5", "train")
        x, y = ds[0]
        assert x.shape[1] == channels and y.shape[0] == ds.out_steps
        assert (smoke_run / SMOKE_RESULTS / f"benchmarks/preprocess/{name}.tsv").exists()


def test_variant_replaces_default_config(smoke_run):
    """--configfile is a whole experiment, not merged into config/config.yaml."""
    (resolved,) = (smoke_run / ".snakemake/sdkd").glob("config-*.yaml")
    config = yaml.safe_load(resolved.read_text())
    # config.yaml keeps every 5th diffusion-reaction frame; smoke.yaml says nothing, so 1
    assert config["datasets"]["diffusion_reaction"]["temporal_stride"] == 1
    assert config["datasets"]["navier_stokes"]["simulate"]["resolution"] == 16


def test_one_gpu_never_runs_two_gpu_jobs_at_once(smoke_run):
    """Training and evaluation jobs each hold `gpu=1`: an evaluation never times its model
    beside a training job on the same GPU."""
    evaluations = sorted((smoke_run / SMOKE_RESULTS / "logs/evaluate").rglob("*.log"))
    assert len(evaluations) == 8  # one per training run
    spans = [_span(log) for log in [*_training_logs(smoke_run), *evaluations]]
    assert len(spans) == 16  # 2 teachers + 2 datasets × 3 settings, and their evaluations
    for a, b in itertools.combinations(spans, 2):
        assert not _overlap(a, b)


def test_two_gpus_run_side_by_side_on_different_gpus(copy_of_smoke):
    work = copy_of_smoke
    shutil.rmtree(work / SMOKE_RESULTS / "students/navier_stokes")
    shutil.rmtree(work / SMOKE_RESULTS / "logs/distill/navier_stokes")
    targets = [f"{SMOKE_RESULTS}/students/navier_stokes/unet-s/{b}/seed-0/done.json"
               for b in ("none", "dual", "fitnet")]
    # targets first: --configfile and --resources take every word after them
    result = snakemake(work, *targets, "--configfile", "config/smoke.yaml", "--resources",
                        "gpu=2", cores=6, SDKD_FAKE_GPUS="0,1",
                        SDKD_GPU_LOCK_DIR=str(work / "locks"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = []
    for log in (work / SMOKE_RESULTS / "logs/distill/navier_stokes").glob("*/*/*.log"):
        (gpu,) = re.findall(r"leased GPU (\S+) as", log.read_text())
        jobs.append((_span(log), gpu))
    side_by_side = [(a, b) for a, b in itertools.combinations(jobs, 2) if _overlap(a[0], b[0])]
    assert side_by_side, "no two training jobs ran at the same time"
    assert all(a[1] != b[1] for a, b in side_by_side)


def test_gpu_jobs_without_a_gpu_limit_never_share_a_gpu(copy_of_smoke):
    """`--cores 6` and no `--resources gpu=N` on a machine with two (fake) GPUs: the
    Snakefile limits GPU jobs to the two GPUs, so of an evaluation and two training jobs
    at most two run at once, each on a GPU of its own, and none waits for a lease."""
    work = copy_of_smoke
    for folder in ("students/navier_stokes", "logs/distill/navier_stokes",
                   "eval/navier_stokes/teacher", "logs/evaluate/navier_stokes/teacher"):
        shutil.rmtree(work / SMOKE_RESULTS / folder)
    evaluation = f"{SMOKE_RESULTS}/eval/navier_stokes/teacher/teacher-tiny.json"
    targets = [evaluation, *(f"{SMOKE_RESULTS}/students/navier_stokes/unet-s/{b}/seed-0/"
                             "done.json" for b in ("none", "fitnet"))]
    result = snakemake(work, *targets, "--configfile", "config/smoke.yaml", cores=6,
                       SDKD_FAKE_GPUS="0,1", SDKD_GPU_LOCK_DIR=str(work / "locks"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 GPU(s) visible and no gpu limit given" in result.stderr
    logs = [*(work / SMOKE_RESULTS / "logs/distill/navier_stokes").glob("*/*/*.log"),
            *(work / SMOKE_RESULTS / "logs/evaluate/navier_stokes/teacher").glob("*.log")]
    jobs = []
    for log in logs:
        text = log.read_text()
        assert "waiting for a free GPU" not in text
        (gpu,) = re.findall(r"leased GPU (\S+) as", text)
        jobs.append((_span(log), gpu))
    assert len(jobs) == 3
    side_by_side = [(a, b) for a, b in itertools.combinations(jobs, 2) if _overlap(a[0], b[0])]
    assert side_by_side, "no two GPU jobs ran at the same time"
    assert all(a[1] != b[1] for a, b in side_by_side)
    assert not all(_overlap(a[0], b[0]) for a, b in itertools.combinations(jobs, 2))


def test_killed_training_resumes_from_its_checkpoint(copy_of_smoke):
    work = copy_of_smoke
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    # Enough epochs that the kill, a few epochs in (polled every 0.2 s), comes long
    # before the end; each costs a fraction of a second on the smoke data.
    epochs = 40
    config["training"]["teacher"]["epochs"] = epochs
    (work / "config/long.yaml").write_text(yaml.safe_dump(config))
    # long.yaml keeps smoke's `experiment` key: an edited config of one experiment reruns
    # in that experiment's folder
    run = work / SMOKE_RESULTS / "teachers/navier_stokes/teacher-tiny"
    # The folder holds the finished 2-epoch run (its last.pt: Snakemake deleted the
    # declared files), so the new run trains in its staging folder until it finishes.
    staging = run / ".staging"
    target = str((run / "done.json").relative_to(work))
    command = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile",
               "config/long.yaml"]
    job = subprocess.Popen(command, cwd=work, env=env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for a few epochs of the new run
            history = staging / "history.csv"
            if history.exists() and len(history.read_text().splitlines()) > 4:
                break
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait()
    assert not (run / "done.json").exists()  # nothing looks finished
    assert (run / "last.pt").exists()  # the old run's last file is still there
    epochs_done = len((staging / "history.csv").read_text().splitlines()) - 1
    assert 0 < epochs_done < epochs
    # a killed Snakemake leaves its lock; what a user types after a crash:
    assert snakemake(work, "--unlock", "--configfile", "config/long.yaml").returncode == 0
    result = snakemake(work, target, "--rerun-incomplete", "--configfile", "config/long.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (work / SMOKE_RESULTS / "logs/train_teacher/navier_stokes/teacher-tiny.log"
           ).read_text()
    assert re.search(rf"resuming .*\.staging after epoch \d+ of {epochs}", log)
    done = json.loads((run / "done.json").read_text())
    assert done["epochs_run"] == epochs and not staging.exists()


# ---- every file a job reads from a training folder is declared ----------------------------
#
# On Kubernetes (workflow/profiles/kubernetes) pods share no file system: a job sees
# only its declared inputs, staged from the object store, and only its declared
# outputs reach later jobs. These tests hold the rules to that without a cluster.

# Cluster jobs whose shell command reads files of a training folder another job wrote
# (figures, a local job, too: see test_jobs_declare_the_training_files_they_read).
READERS = ("distill", "evaluate_teacher", "evaluate_student")
TRAINING_RULES = ("train_teacher", "distill")


def _jobs(listing: str) -> list[dict]:
    """The jobs of a `snakemake -n -p` listing: rule, input and output files, command.

    Storage annotations ("(retrieve from storage)") are dropped from the file names.
    """
    def files(block: str, key: str) -> list[str]:
        line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
        return [] if line is None else [re.sub(r" \(.*\)$", "", f) for f in line[1].split(", ")]

    jobs = []
    for block in re.split(r"\n\s*\n", listing):
        rule = re.search(r"^(?:local)?rule (\w+):$", block, re.M)
        if rule:
            shell = re.search(r"^Shell command: (.*)$", block, re.M)
            jobs.append({"rule": rule[1], "input": files(block, "input"),
                         "output": files(block, "output"), "shell": shell[1] if shell else ""})
    return jobs


def _training_reads(shell: str, runs: list[dict]) -> set[str]:
    """Files of training folders that an `sdkd` command line reads, by its options.

    `--run DIR` (evaluate): the weights and the training cost; `--teacher FILE`
    (distill): that file; `--runs-root ROOT` (figures): every run's history.csv.
    """
    reads = set()
    for folder in re.findall(r"--run (\S+)", shell):
        reads |= {f"{folder}/best.pt", f"{folder}/history.csv"}
    reads |= set(re.findall(r"--teacher (\S+)", shell))
    for root in re.findall(r"--runs-root (\S+)", shell):
        reads |= {f"{root}/{run['run_dir']}/history.csv" for run in runs}
    return reads


@pytest.fixture(scope="module")
def smoke_listing(tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """(jobs, expected runs) of a dry run of the whole smoke DAG, nothing built yet."""
    work = copy_workflow(tmp_path_factory.mktemp("listing"))
    result = snakemake(work, "-n", "-p", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    (resolved,) = (work / ".snakemake/sdkd").glob("config-*.yaml")
    return _jobs(result.stdout + result.stderr), expected_runs(yaml.safe_load(resolved.read_text()))


def test_training_jobs_declare_what_later_jobs_read(smoke_listing):
    jobs, _ = smoke_listing
    for rule in TRAINING_RULES:
        outputs = [job["output"] for job in jobs if job["rule"] == rule]
        assert outputs, f"no {rule} job in the dry run"
        for files in outputs:
            assert sorted(Path(f).name for f in files) == ["best.pt", "done.json", "history.csv"]
            # never last.pt: Snakemake would delete it before rerunning an incomplete job


@pytest.mark.parametrize("rule", [
    *READERS,
    "figures",
])
def test_jobs_declare_the_training_files_they_read(smoke_listing, rule):
    jobs, runs = smoke_listing
    readers = [job for job in jobs if job["rule"] == rule]
    assert readers, f"no {rule} job in the dry run"
    assert any(_training_reads(job["shell"], runs) for job in readers)
    for job in readers:
        undeclared = _training_reads(job["shell"], runs) - set(job["input"])
        assert not undeclared, f"{rule} reads undeclared {sorted(undeclared)[:3]}"


def test_kubernetes_profile_stages_the_training_files(tmp_path):
    """The profile's dry run, with a local folder standing in for the object store."""
    pytest.importorskip("snakemake_executor_plugin_kubernetes")
    pytest.importorskip("snakemake_storage_plugin_fs")
    work = copy_workflow(tmp_path / "work")
    store = tmp_path / "store"
    store.mkdir()
    # The profile's s3 storage needs credentials even for a dry run; the fs plugin has
    # the same staging semantics (declared files only, local copies under
    # .snakemake/storage/fs/) without a bucket. Nothing is submitted in a dry run.
    result = snakemake(work, "--profile", "workflow/profiles/kubernetes", "-n", "-p",
                        "--configfile", "config/smoke.yaml", "--default-storage-provider",
                        "fs", "--default-storage-prefix", str(store))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    (resolved,) = (work / ".snakemake/sdkd").glob("config-*.yaml")
    runs = expected_runs(yaml.safe_load(resolved.read_text()))
    jobs = _jobs(output)

    def local(path: str) -> str:  # where a job finds a staged file
        return f".snakemake/storage/fs/{path.lstrip('/')}"

    for job in jobs:
        if job["rule"] in TRAINING_RULES:
            assert {Path(f).name for f in job["output"]} == {"best.pt", "history.csv",
                                                            "done.json"}
            assert all(f.startswith(str(store)) for f in job["output"])
        if job["rule"] in READERS:
            staged = {local(f) for f in job["input"]}
            assert _training_reads(job["shell"], runs) <= staged, job["shell"]
    assert any(_training_reads(job["shell"], runs) for job in jobs
               if job["rule"] in READERS)


def test_jobs_run_with_only_their_declared_inputs(copy_of_smoke):
    """Training and evaluation jobs in `shadow: "minimal"` folders, which hold links to
    the declared inputs only (as a Kubernetes pod holds the staged ones); a file read
    but not declared is missing there: best.pt stops the job, history.csv leaves the
    evaluation's training cost empty.

    The config switches the rules' shadow on (`execution: {shadow: minimal}`,
    workflow/schemas/config.schema.yaml); nothing in the rule files is edited."""
    work = copy_of_smoke
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["execution"] = {"shadow": "minimal"}
    (work / "config/shadow.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # How jobs run is no param of theirs: the switch alone reruns nothing.
    dry = snakemake(work, "-n", "--configfile", "config/shadow.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # The rules call `sdkd` from PATH: a stand-in first on it notes where each job ran.
    probe = work.parent / "probe"
    probe.mkdir()
    calls = probe / "calls.txt"
    (probe / "sdkd").write_text(
        f'#!/bin/sh\necho "$(pwd -P) $*" >> {calls}\n'
        f'exec {Path(sys.executable).parent / "sdkd"} "$@"\n')
    (probe / "sdkd").chmod(0o755)

    targets = [f"{SMOKE_RESULTS}/eval/navier_stokes/teacher/teacher-tiny.json",
               f"{SMOKE_RESULTS}/eval/navier_stokes/unet-s/dual/seed-0.json"]
    result = snakemake(work, *targets, "--configfile", "config/shadow.yaml",
                        "--forcerun", "train_teacher",
                        PATH=f"{probe}{os.pathsep}{env()['PATH']}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # a new teacher reruns dual's tuning runs (smoke tunes its lam) and its choice too
    assert job_counts(output) == {
        "train_teacher": 1, "tune_point": 2, "tune": 1, "distill": 1, "evaluate_teacher": 1,
        "evaluate_student": 1}
    # Each training and evaluation job ran in a shadow folder of its own, none in the
    # project folder; tune, a local rule that reads the tuning runs' declared
    # done.json, runs where Snakemake does.
    calls_made = [line.split() for line in calls.read_text().splitlines()]
    ran = [call for call in calls_made if call[1] != "tune"]
    assert [call[0] for call in calls_made if call[1] == "tune"] == [str(work.resolve())]
    assert sorted(call[3] for call in ran) == ["distill"] * 3 + ["evaluate", "evaluate",
                                                                 "train-teacher"], ran
    shadows = work.resolve() / ".snakemake/shadow"
    assert all(Path(call[0]).parent == shadows for call in ran), ran
    assert len({call[0] for call in ran}) == len(ran)
    for target in targets:
        evaluation = json.loads((work / target).read_text())
        assert evaluation["efficiency"]["training"]["epochs"] == 2, target
    # Undeclared files stay behind in the shadow folder: each run folder's last.pt is
    # still the copied one, older than the new best.pt.
    for run in (f"{SMOKE_RESULTS}/teachers/navier_stokes/teacher-tiny",
                f"{SMOKE_RESULTS}/students/navier_stokes/unet-s/dual/seed-0"):
        assert (work / run / "last.pt").stat().st_mtime < (work / run / "best.pt").stat().st_mtime
