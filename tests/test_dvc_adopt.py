"""`python -m sdkd.dvc_adopt`, the first step of every dvc.yaml stage, without DVC or
Snakemake: which stages it adopts, the Snakemake call it makes, and one line for a
dvc.lock or dvc.yaml it cannot use (the DVC round trips are in test_dvc.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdkd import dvc_adopt
from sdkd.dvc_adopt import PARAMS_FILE, RECORDS, adopt, adoptable

CONFIG = {"seed": 0, "distill": {"lam": 1.0}}
STAGES = {
    "data": {"cmd": ["python -m sdkd.dvc_adopt", "snakemake --cores all --until preprocess"]},
    "teachers": {"cmd": ["python -m sdkd.dvc_adopt",
                         "snakemake --cores=all --until train_teacher"]},
    "report": {"cmd": "snakemake -c all all"},
}


def _lock(config: dict, *outs: str) -> dict:
    return {"params": {PARAMS_FILE: config}, "outs": [{"path": out} for out in outs]}


def _project(root: Path, locked: dict, stages: dict = STAGES) -> Path:
    """dvc.yaml and dvc.lock, and every out the lock lists as a file."""
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": locked}))
    for entry in locked.values():
        for out in entry.get("outs", []):
            (root / out["path"]).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def touches(monkeypatch) -> list[dict]:
    """Snakemake calls made by adopt, each with the config file's contents at the time."""
    calls: list[dict] = []

    def run(argv, cwd, check):
        config = Path(argv[argv.index("--configfile") + 1])
        calls.append({"argv": argv, "cwd": cwd, "config": yaml.safe_load(config.read_text())})
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(dvc_adopt.subprocess, "run", run)
    return calls


def test_adopts_the_longest_run_of_stages_with_one_config_and_their_outs(tmp_path):
    locked = {"data": _lock(CONFIG, "results/data"),
              "teachers": _lock(CONFIG, "results/teachers"),
              "report": _lock(CONFIG, "results/report")}
    _project(tmp_path, locked)
    assert adoptable(STAGES, locked, tmp_path) == ["data", "teachers", "report"]

    (tmp_path / "results/teachers").rmdir()  # a missing out: it and later stages rebuild
    assert adoptable(STAGES, locked, tmp_path) == ["data"]

    other = {**locked, "teachers": _lock({**CONFIG, "seed": 1}, "results/data")}
    assert adoptable(STAGES, other, tmp_path) == ["data"]  # locked with another config
    assert adoptable(STAGES, {"teachers": locked["teachers"]}, tmp_path) == []


@pytest.mark.parametrize("entry", [
    None, "data", {"outs": [{"path": "results/data"}]}, {"params": {PARAMS_FILE: None}},
    {"params": {PARAMS_FILE: CONFIG}, "outs": ["results/data"]},
    {"params": {PARAMS_FILE: CONFIG}, "outs": [{"path": 3}]},
], ids=["null", "string", "no params", "null params", "outs not mappings", "path not text"])
def test_an_entry_dvc_would_not_write_is_not_adopted(tmp_path, entry):
    (tmp_path / "results/data").mkdir(parents=True)
    assert adoptable(STAGES, {"data": entry}, tmp_path) == []


def test_touches_with_the_locked_config_and_the_stage_targets(tmp_path, touches):
    locked = {"data": _lock(CONFIG, "results/data"),
              "teachers": _lock(CONFIG, "results/teachers")}
    _project(tmp_path, locked)
    (tmp_path / PARAMS_FILE).parent.mkdir()
    (tmp_path / PARAMS_FILE).write_text(yaml.safe_dump({**CONFIG, "seed": 7}))  # -S edited it

    assert adopt(tmp_path) == "teachers"
    (call,) = touches
    assert call["config"] == CONFIG and call["cwd"] == tmp_path
    argv = call["argv"]
    assert argv[:3] == [sys.executable, "-m", "snakemake"]
    assert argv[3:5] == ["--until", "train_teacher"] and "--cores=all" not in argv
    assert {"--touch", "--forceall", "--quiet"} <= set(argv) and argv[-1] == "all"
    assert argv[argv.index("--cores") + 1] == "1"


def test_leaves_a_workspace_snakemake_has_records_of_unless_forced(tmp_path, touches):
    _project(tmp_path, {"data": _lock(CONFIG, "results/data")})
    (tmp_path / RECORDS).mkdir(parents=True)
    (tmp_path / RECORDS / "cmVzdWx0cw==").write_text("{}")
    assert adopt(tmp_path) is None and touches == []
    assert adopt(tmp_path, force=True) == "data" and len(touches) == 1


def test_nothing_to_adopt_without_a_lock(tmp_path, touches):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": STAGES}))
    assert adopt(tmp_path) is None and touches == []


@pytest.mark.parametrize("lock, fragments", [
    ("stages: [unclosed", ["dvc.lock: not YAML (line 1, column 18"]),
    ("- a list\n", ["dvc.lock: expected a mapping", "it is list"]),
    ("stages: 3\n", ["dvc.lock: expected a mapping under 'stages'", "it is int"]),
], ids=["not yaml", "a list", "stages not a mapping"])
def test_an_unreadable_lock_is_one_line(tmp_path, monkeypatch, capsys, touches, lock, fragments):
    _project(tmp_path, {})
    (tmp_path / "dvc.lock").write_text(lock)
    monkeypatch.chdir(tmp_path)
    assert dvc_adopt.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sdkd: error: ") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err
    assert touches == []


def test_a_stage_without_snakemake_is_one_line(tmp_path, monkeypatch, capsys, touches):
    _project(tmp_path, {"data": _lock(CONFIG, "results/data")},
             stages={"data": {"cmd": "make data"}})
    monkeypatch.chdir(tmp_path)
    assert dvc_adopt.main([]) == 1
    err = capsys.readouterr().err
    assert "dvc.yaml: stage 'data' has no `snakemake` command" in err and err.count("\n") == 1
    assert touches == []


def test_a_failed_touch_is_one_line_and_a_failure(tmp_path, monkeypatch, capsys):
    _project(tmp_path, {"data": _lock(CONFIG, "results/data")})
    monkeypatch.setattr(dvc_adopt.subprocess, "run",
                        lambda argv, cwd, check: subprocess.CompletedProcess(argv, 1))
    monkeypatch.chdir(tmp_path)
    assert dvc_adopt.main([]) == 1
    err = capsys.readouterr().err
    assert "`snakemake --touch`" in err and "stage 'data' failed (exit 1" in err
    assert err.count("\n") == 1
