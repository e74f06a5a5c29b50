"""Bad input to the training and evaluation commands, table-driven: each case ends with
exit 2 and one ``sdkd: error:`` line naming what and where, no traceback, and no file
left or destroyed (categories: command-line argument, file, checkpoint, OS fault,
concurrent writer)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import assert_clean_failure, file_dataset, write_config
from snakerun import digests

from sdkd.train import runfolder
from sdkd.train.checkpoint import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class Trained:
    """A config, its canonical dataset and a finished teacher run, made with the CLI."""

    root: Path
    config: Path
    data: Path
    teacher: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    from sdkd.cli import main

    root = tmp_path_factory.mktemp("trained")
    raw = root / "raw.h5"
    with h5py.File(raw, "w") as f:
        f["u"] = np.random.default_rng(0).normal(size=(6, 6, 16, 16)).astype("f4")
    blocks = {name: file_dataset(raw) for name in ("toy", "other")}
    config = write_config(root, blocks)
    data, teacher = root / "toy.h5", root / "teacher"
    for args in (["preprocess", "--raw", raw, "--out", data],
                 ["train-teacher", "--data", data, "--out", teacher, "--device", "cpu"]):
        assert main([args[0], "--config", str(config), "--dataset", "toy",
                     *map(str, args[1:])]) == 0
    return Trained(root, config, data, teacher)


@dataclass(frozen=True)
class Case:
    """``args(trained, tmp_path)`` → the command line; ``fragments`` must be in the error
    line; ``keeps`` names folders of ``trained`` that must stay byte-identical, and
    ``absent`` files (relative to ``tmp_path``) that must not exist afterwards."""

    args: Callable[[Trained, Path], list]
    fragments: tuple[str, ...]
    absent: tuple[str, ...] = ("out",)
    # prepares the case; may return what ends it (called after the command)
    setup: Callable[[Trained, Path, pytest.MonkeyPatch], Callable[[], None] | None] | None = None


def teacher_cmd(t: Trained, out: Path, dataset: str = "toy", *extra: object) -> list:
    return ["train-teacher", "--config", t.config, "--dataset", dataset, "--data", t.data,
            "--out", out, "--device", "cpu", *extra]


def distill_cmd(t: Trained, out: Path, *extra: object) -> list:
    return ["distill", "--config", t.config, "--dataset", "toy", "--data", t.data,
            "--student", "unet-s", "--bands", "dual", "--out", out, "--device", "cpu", *extra]


def hostile_spec(t: Trained, tmp: Path) -> Path:
    """The teacher's best.pt with a model spec that asks for terabytes."""
    ckpt = load_checkpoint(t.teacher / "best.pt")
    ckpt["meta"]["model"]["kwargs"]["hid_S"] = 200_000
    return save_checkpoint(tmp / "hostile.pt", {k: v for k, v in ckpt.items()
                                                if k != "format_version"})


def hold_lock(t: Trained, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Another process trains in tmp/out until the returned function ends it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from sdkd.train.runfolder import RunFolder
            with RunFolder({str(tmp / "out")!r}, meta={{}}, identity={{}}, config={{}}).session():
                print("locked", flush=True)
                sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return lambda: holder.communicate("\n", timeout=30)


def full_disk(t: Trained, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the finished teacher at tmp/finished; then every checkpoint write fails
    as on a full disk."""
    shutil.copytree(t.teacher, tmp / "finished")

    def save(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runfolder, "save_checkpoint", save)


def other_lr(t: Trained, tmp: Path) -> Path:
    config = yaml.safe_load(t.config.read_text())
    config["training"]["teacher"]["lr"] = 5e-4
    path = tmp / "other.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


CASES = {
    # command-line arguments
    "negative seed": Case(lambda t, tmp: distill_cmd(t, tmp / "out", "--seed", -5),
                          ("argument --seed", "≥ 0", "-5")),
    "seed not a number": Case(lambda t, tmp: distill_cmd(t, tmp / "out", "--seed", "x"),
                              ("argument --seed", "'x'")),
    "negative threads": Case(lambda t, tmp: ["--threads", -1, *teacher_cmd(t, tmp / "out")],
                             ("argument --threads", "≥ 1")),
    # files
    "another dataset's file": Case(lambda t, tmp: teacher_cmd(t, tmp / "out", "other"),
                                   ("toy.h5", "holds dataset 'toy', not 'other'")),
    "a teacher that is no checkpoint": Case(
        lambda t, tmp: distill_cmd(t, tmp / "out", "--teacher", t.data),
        ("teacher checkpoint", "toy.h5", "corrupt or unreadable")),
    # checkpoints
    "a model spec of terabytes (evaluate)": Case(
        lambda t, tmp: ["evaluate", "--config", t.config, "--dataset", "toy", "--data", t.data,
                        "--run", hostile_spec(t, tmp), "--out", tmp / "out" / "eval.json",
                        "--device", "cpu"],
        ("limits.max_array_gib", "GiB")),
    "a model spec of terabytes (distill)": Case(
        lambda t, tmp: distill_cmd(t, tmp / "out", "--teacher", hostile_spec(t, tmp)),
        ("limits.max_array_gib", "teacher")),
    # OS faults
    "--out is a file": Case(
        lambda t, tmp: teacher_cmd(t, t.data), ("toy.h5", "is a file"), absent=()),
    "evaluate --out is a folder": Case(
        lambda t, tmp: ["evaluate", "--config", t.config, "--dataset", "toy", "--data", t.data,
                        "--run", t.teacher, "--out", t.root, "--device", "cpu"],
        ("trained", "Is a directory"), absent=()),
    "--out below a file": Case(
        lambda t, tmp: teacher_cmd(t, t.data / "run"), ("toy.h5",), absent=()),
    "a full disk on a rerun": Case(
        lambda t, tmp: ["train-teacher", "--config", other_lr(t, tmp), "--dataset", "toy",
                        "--data", t.data, "--out", tmp / "finished", "--device", "cpu"],
        ("No space left on device",), setup=full_disk),
    # a second writer
    "a run folder in use": Case(lambda t, tmp: teacher_cmd(t, tmp / "out"),
                                ("out", "another sdkd process is training in this folder"),
                                absent=(), setup=hold_lock),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_training_input_ends_cleanly(name, trained, tmp_path, monkeypatch, sdkd_cli):
    case = CASES[name]
    end = case.setup(trained, tmp_path, monkeypatch) if case.setup is not None else None
    before = digests(trained.root)
    finished = digests(tmp_path / "finished") if (tmp_path / "finished").exists() else None
    try:
        status, err = sdkd_cli(*case.args(trained, tmp_path))
    finally:
        if end is not None:
            end()
    message = assert_clean_failure(status, err, *case.fragments)
    assert "\n" not in message
    assert digests(trained.root) == before  # the teacher run and the data are untouched
    if finished is not None:  # the finished run survived its failed rerun byte for byte
        assert {k: v for k, v in digests(tmp_path / "finished").items()
                if not k.startswith(runfolder.STAGING)} == finished
    for name in case.absent:
        assert not (tmp_path / name).exists(), name
