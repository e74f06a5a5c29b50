"""sdkd.report.results: the answers the summary, figures and page share, and the check
that the reported runs belong together (planted identities of another config, teacher
or data must be found; a consistent tree must give no finding)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
from fake_results import (
    fake_sha256,
    make_fake_results,
    plant_identity,
    subset_config,
    tiny_config,
)

from sdkd.config import validate
from sdkd.report.aggregate import aggregate, collect
from sdkd.report.results import Results

NS, DR = "navier_stokes", "diffusion_reaction"
ANOTHER_CONFIG = "trained with another config (run → this config): "


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A consistent fake tree of tiny_config (no figures: fast); tests copy what they edit."""
    root = tmp_path_factory.mktemp("results")
    config = tiny_config()
    make_fake_results(root, config)
    return config, root


def results_of(config, eval_root) -> Results:
    return Results(config, collect(config, eval_root))


@pytest.fixture
def eval_root(tree, tmp_path):
    root = tmp_path / "eval"
    shutil.copytree(tree[1] / "eval", root)
    return root


def by_run(findings):
    out: dict[str, list[tuple[str, str]]] = {}
    for f in findings:
        out.setdefault(f.run, []).append((f.check, f.message))
    return out


def test_a_consistent_tree_has_no_findings(tree):
    config, root = tree
    assert results_of(config, root / "eval").findings() == []


def test_another_config(tree, eval_root):
    """(a) a run trained with other settings, and a report of another config."""
    config = tree[0]

    plant_identity(eval_root / NS / "unet-s/dual/seed-1.json",
                   lambda i: i["spec"]["training"].update(epochs=7))
    found = by_run(results_of(config, eval_root).findings())
    assert found == {f"{NS}/unet-s/dual/seed-1": [
        ("config", ANOTHER_CONFIG + "spec.training.epochs: 7 → 1")]}

    # the same files reported under a config whose `dual` weights changed: every dual
    # run of the config differs, nothing else does
    other = copy.deepcopy(config)
    other["distill"]["settings"]["dual"]["weights"] = [1.0, 2.0]
    other = validate(other, source="other")
    found = by_run(results_of(other, eval_root).findings())
    duals = {f"{d}/{m}/dual/seed-{s}" for d in (NS, DR) for m in ("unet-s", "unet-m")
             for s in (0, 1)}
    assert set(found) == duals
    message = found[f"{DR}/unet-m/dual/seed-0"][0][1]
    assert message == ANOTHER_CONFIG + "spec.bands.weights: [1.0, 1.0] → [1.0, 2.0]"
    # the planted run differs in both: the first changes are listed, in key order
    assert found[f"{NS}/unet-s/dual/seed-1"] == [(
        "config", ANOTHER_CONFIG + "spec.bands.weights: [1.0, 1.0] → [1.0, 2.0]; "
                                   "spec.training.epochs: 7 → 1")]


def test_another_teacher(tree, eval_root):
    """(b) a student distilled from other teacher weights; then a retrained teacher, whose
    students all fit no more (the plain ones never named a teacher)."""
    config = tree[0]

    plant_identity(eval_root / NS / "unet-m/low/seed-0.json",
                   lambda i: i["inputs"].update(teacher=fake_sha256("another teacher")))
    findings = results_of(config, eval_root).findings()
    assert [(f.dataset, f.run, f.check) for f in findings] == [
        (NS, f"{NS}/unet-m/low/seed-0", "teacher")]
    assert findings[0].message.startswith("distilled from another teacher: its teacher's "
                                          f"weights are {fake_sha256('another teacher')[:12]}")
    doc = json.loads((eval_root / NS / "unet-m/low/seed-0.json").read_text())
    assert findings[0].run_id == doc["run_id"]

    path = eval_root / DR / "teacher/teacher-tiny.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc | {"weights_sha256": fake_sha256("retrained")}))
    found = by_run(f for f in results_of(config, eval_root).findings() if f.dataset == DR)
    runs = collect(config, eval_root)
    distilled = runs[(runs["dataset"] == DR) & (runs["role"] == "student")
                     & (runs["setting"] != "none")]
    assert set(found) == {f"{DR}/{r.model}/{r.bands}/seed-{r.seed}"
                          for r in distilled.itertuples()}
    assert {check for problems in found.values() for check, _ in problems} == {"teacher"}


def test_other_data(tree, eval_root):
    """(c) a run trained on another version of the dataset; the others agree."""
    config = tree[0]

    plant_identity(eval_root / DR / "unet-s/high/seed-0.json",
                   lambda i: i["inputs"].update(data=fake_sha256("data", "v2")))
    findings = results_of(config, eval_root).findings()
    assert [(f.run, f.check) for f in findings] == [(f"{DR}/unet-s/high/seed-0", "data")]
    usual = fake_sha256("data", DR)
    assert findings[0].message == (
        f"trained on other data: data fingerprint {fake_sha256('data', 'v2')[:12]}…, where "
        f"16 of the dataset's 17 evaluated runs have {usual[:12]}…")


def test_findings_go_to_the_summary(tree, eval_root, tmp_path):
    config = tree[0]
    plant_identity(eval_root / NS / "teacher/teacher-tiny.json",
                   lambda i: i["inputs"].update(data=fake_sha256("data", "v2")))
    aggregate(config, eval_root, tmp_path / "metrics.csv", tmp_path / "summary.json")
    summary = json.loads((tmp_path / "summary.json").read_text())
    doc = json.loads((eval_root / NS / "teacher/teacher-tiny.json").read_text())
    assert summary["consistency"] == [{
        "dataset": NS, "run": f"{NS}/teacher-tiny", "run_id": doc["run_id"], "check": "data",
        "message": f"trained on other data: data fingerprint {fake_sha256('data', 'v2')[:12]}…, "
                   f"where 16 of the dataset's 17 evaluated runs have "
                   f"{fake_sha256('data', NS)[:12]}…"}]


def test_missing_and_invalid_runs_are_not_judged(tree, eval_root):
    config = tree[0]
    (eval_root / NS / "teacher/teacher-tiny.json").unlink()  # no teacher to compare with
    (eval_root / NS / "unet-s/none/seed-0.json").write_text("{not json")
    assert results_of(config, eval_root).findings() == []


def test_baseline_best_and_band_errors(tmp_path):
    config = tiny_config()
    config["distill"]["settings"]["plain"] = {"setting": "none"}
    config = subset_config(config, settings=["plain", "dual"])
    make_fake_results(tmp_path, config)
    path = tmp_path / "eval" / NS / "unet-m/low/seed-0.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc | {"band_errors": {"cutoffs": [2.0], "mse": [1.0, 1.0],
                                                      "truth_energy": [2.0, 1.0]}}))
    path = tmp_path / "eval" / NS / "unet-m/high/seed-0.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"band_errors": None}))
    results = results_of(config, tmp_path / "eval")

    assert results.none_key(DR) == "plain" and results.none_key(NS) == "none"
    assert results.none_key() == "none"
    assert results.method("plain") == "none"
    assert results.best(NS, "unet-s") == results.best(DR, "unet-m") == "dual"
    assert results.best(DR, "unet-s") is None  # diffusion_reaction does not run it
    assert len(results.runs(DR, "student", ok=True)) == 3  # plain seed 0, dual seeds 0, 1

    bands = results.band_errors(NS)
    assert bands.cutoffs == tuple(config["evaluate"]["band_cutoffs"])
    assert bands.skipped == [f"{NS}/unet-m/low/seed-0 (other cutoffs)",
                             f"{NS}/unet-m/high/seed-0"]
    assert len(bands.runs) == len(results.runs(NS, ok=True)) - 2


def test_the_report_side_imports_no_torch():
    code = ("import sys, sdkd.evaluate.format, sdkd.report.aggregate, sdkd.report.figures, "
            "sdkd.report.html; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
