"""Real reruns of the smoke DAG after a change: what trains again is what the change
touches, through the run identity (sdkd.plan.run_spec/run_identity), and nothing else.

Each test reruns a copy of the session's finished smoke run (``copy_of_smoke`` in
conftest.py) and compares the training folders byte for byte with the files before the
rerun. (A dry run cannot show any of this: it lists the jobs, not what they train.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from snakerun import SMOKE_RESULTS, digests, job_counts, snakemake

from sdkd.train.checkpoint import load_checkpoint, weights_sha256

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SMOKE = "config/smoke.yaml"
NS, DR = "navier_stokes", "diffusion_reaction"


@pytest.fixture
def work(copy_of_smoke) -> Path:
    return copy_of_smoke


def runs(work: Path) -> dict[str, dict[str, str]]:
    """{run folder: {file: sha256}} of every teacher and student run."""
    results = work / SMOKE_RESULTS
    folders = [*results.glob("teachers/*/*"), *results.glob("students/*/*/*/seed-*")]
    return {str(f.relative_to(results)): digests(f) for f in sorted(folders)}


def changed_config(work: Path, edit) -> str:
    config = yaml.safe_load((work / SMOKE).read_text())
    edit(config)
    path = work / "config/changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=True))  # key order must not matter
    return str(path.relative_to(work))


def rerun(work: Path, configfile: str, *args: str) -> str:
    result = snakemake(work, *args, "--configfile", configfile)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def retrained(before: dict, after: dict) -> set[str]:
    """Run folders whose training history changed (so they trained again)."""
    assert before.keys() == after.keys()
    return {run for run in before if before[run]["history.csv"] != after[run]["history.csv"]}


def untouched(before: dict, after: dict) -> set[str]:
    """Run folders whose every file is byte-identical."""
    return {run for run in before if before[run] == after[run]}


def run_id(work: Path, run: str) -> str:
    return json.loads((work / SMOKE_RESULTS / run / "done.json").read_text())["run_id"]


def test_nothing_changed_nothing_runs(work):
    before = digests(work / SMOKE_RESULTS)
    output = rerun(work, SMOKE)
    assert "Nothing to be done" in output
    assert digests(work / SMOKE_RESULTS) == before


def test_new_band_weights_retrain_that_setting_only(work):
    before = runs(work)
    output = rerun(work, changed_config(
        work, lambda c: c["distill"]["settings"]["dual"].update(weights=[1.0, 3.0])))
    after = runs(work)
    dual = {f"students/{d}/unet-s/dual/seed-0" for d in (NS, DR)}
    assert retrained(before, after) == dual
    assert untouched(before, after) == set(before) - dual
    # dual's tuning runs train with its weights too: they run again, and so does its choice
    assert job_counts(output) == {"tune_point": 4, "tune": 2, "distill": 2,
                                  "evaluate_student": 2, "aggregate": 1, "figures": 1,
                                  "report": 1, "all": 1}
    for run in dual:  # the job said why it did not resume the finished run
        log = (work / SMOKE_RESULTS / "logs/distill" / run.split("/", 1)[1]).with_suffix(".log")
        assert re.search(r"belongs to another run \(spec\.bands\.weights: \[1\.0, 1\.0\] → "
                         r"\[1\.0, 3\.0\]\); training from scratch", log.read_text())
        assert run_id(work, run) != before[run]["done.json"]


def test_new_data_retrains_the_teacher_and_every_student_of_it(work):
    before = runs(work)
    rerun(work, changed_config(
        work, lambda c: c["datasets"][NS]["simulate"].update(viscosity=2.0e-3)))
    after = runs(work)
    navier_stokes = {run for run in before if f"/{NS}/" in f"/{run}"}
    assert {f"teachers/{NS}/teacher-tiny", f"students/{NS}/unet-s/dual/seed-0"} <= navier_stokes
    assert retrained(before, after) == navier_stokes
    assert untouched(before, after) == set(before) - navier_stokes


def test_a_teacher_retrained_to_the_same_weights_keeps_its_students(work):
    """The student's identity holds the teacher's weights hash, not its file's date: a
    teacher trained again to identical weights (CPU training is deterministic) leaves
    its students as they were, though Snakemake reruns their jobs."""
    before = runs(work)
    teacher = f"teachers/{NS}/teacher-tiny"
    weights = teacher_weights(work, teacher)
    shutil.rmtree(work / SMOKE_RESULTS / teacher)  # what forces a run to train again
    output = rerun(work, SMOKE, "--forcerun", f"{SMOKE_RESULTS}/{teacher}/done.json")
    after = runs(work)
    assert job_counts(output)["train_teacher"] == 1
    assert job_counts(output)["distill"] == 2  # the two distilled students of NS
    assert "resuming" not in (work / SMOKE_RESULTS / f"logs/train_teacher/{NS}/teacher-tiny.log"
                              ).read_text()
    assert teacher_weights(work, teacher) == weights
    assert retrained(before, after) == {teacher}  # its history holds new timings
    for bands in ("dual", "fitnet"):
        log = (work / SMOKE_RESULTS / f"logs/distill/{NS}/unet-s/{bands}/seed-0.log").read_text()
        assert "resuming" in log and "after epoch 2 of 2" in log
        assert "training from scratch" not in log


def teacher_weights(work: Path, run: str) -> str:
    return weights_sha256(load_checkpoint(work / SMOKE_RESULTS / run / "best.pt")["model"])
