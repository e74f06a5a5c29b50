"""The run folder (sdkd.train.runfolder): one writer at a time, a finished run replaced
only by a finished run, nothing half-written left behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import assert_clean_failure
from snakerun import digests
from toytrain import CPU, META, TRAIN, VAL, config, killed_after_the_first_epoch, model, mse_loss

from sdkd.errors import SdkdError
from sdkd.train import fit, runfolder

FIRST = {"spec": {"lr": 1}, "inputs": {}}
SECOND = {"spec": {"lr": 2}, "inputs": {}}


def train(run, identity, **overrides):
    return fit(model(), mse_loss, TRAIN, VAL, config(epochs=2, **overrides), run, device=CPU,
               meta=META, identity=identity, attachments={"config.yaml": json.dumps(identity)})


def finished_files(run):
    """Every file of the run folder but its staging area."""
    return {k: v for k, v in digests(run).items() if not k.startswith(runfolder.STAGING)}


class DiskFull(OSError):
    pass


def full_disk_at(monkeypatch, name):
    """Make the writes of ``name`` fail as on a full disk."""
    real_save = runfolder.save_checkpoint

    def save(path, payload):
        if path.name == name:
            raise DiskFull(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(path, payload)

    monkeypatch.setattr(runfolder, "save_checkpoint", save)
    return real_save


@pytest.mark.parametrize("failing", ["best.pt", "last.pt"])
def test_a_failed_rerun_leaves_the_finished_run_byte_for_byte(tmp_path, monkeypatch, failing):
    run = tmp_path / "run"
    train(run, FIRST)
    before = finished_files(run)
    real_save = full_disk_at(monkeypatch, failing)
    with pytest.raises(DiskFull):
        train(run, SECOND)
    assert finished_files(run) == before
    # the next rerun that succeeds replaces the run, and its staging area is gone
    monkeypatch.setattr(runfolder, "save_checkpoint", real_save)
    train(run, SECOND)
    assert json.loads((run / "done.json").read_text())["identity"] == SECOND
    assert json.loads((run / "config.yaml").read_text()) == SECOND
    assert not (run / runfolder.STAGING).exists()


def test_a_killed_staged_run_resumes_in_staging_then_moves_in(tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    train(run, FIRST)
    before = finished_files(run)
    killed_after_the_first_epoch(monkeypatch, lambda: train(run, SECOND))
    assert finished_files(run) == before
    with caplog.at_level("INFO"):
        resumed = train(run, SECOND)
    assert f"resuming {run / runfolder.STAGING} after epoch 1 of 2" in caplog.text
    fresh = train(tmp_path / "fresh", SECOND)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in fresh.history]
    assert json.loads((run / "done.json").read_text())["run_id"] == \
        json.loads((tmp_path / "fresh/done.json").read_text())["run_id"]


def test_a_move_stopped_halfway_is_completed_by_the_next_session(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(run, FIRST)
    real_replace, real_move_in, calls = os.replace, runfolder.RunFolder._move_in, []

    def stopped_on_the_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    def move_in_stopped(folder):
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", stopped_on_the_third)
            real_move_in(folder)

    monkeypatch.setattr(runfolder.RunFolder, "_move_in", move_in_stopped)
    with pytest.raises(KeyboardInterrupt):
        train(run, SECOND)
    assert not (run / "done.json").exists()  # half-moved: nothing looks finished
    monkeypatch.setattr(runfolder.RunFolder, "_move_in", real_move_in)
    result = train(run, SECOND)  # finds the staged, finished run and moves it in
    assert result.epochs_run == 2
    assert json.loads((run / "done.json").read_text())["identity"] == SECOND
    assert not (run / runfolder.STAGING).exists()


def test_a_second_writer_is_refused_while_the_first_trains(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from sdkd.train.runfolder import RunFolder
            with RunFolder({str(run)!r}, meta={{}}, identity={{}}, config={{}}).session():
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SdkdError, match="another sdkd process is training in this folder"):
            train(run, FIRST)
    finally:
        holder.communicate("\n", timeout=30)
    assert not (run / "done.json").exists()
    train(run, FIRST)  # the lock went with the process
    assert (run / "done.json").exists()


def test_killed_writes_are_cleaned_and_failed_starts_leave_no_folder(tmp_path):
    run = tmp_path / "a" / "run"
    with pytest.raises(SdkdError, match="is empty"):
        fit(model(), mse_loss, [], VAL, config(), run, device=CPU, meta=META)
    assert not (tmp_path / "a").exists()
    train(run, FIRST)
    (run / ".last.pt.x1.part").write_bytes(b"")  # what a kill during a write leaves
    train(run, FIRST)
    assert not list(run.glob(".*.part"))


def test_an_os_error_is_one_line_naming_the_path(sdkd_cli, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x" / "last.pt"))

    monkeypatch.setattr("sdkd.cli._cmd_check_config", full)
    status, err = sdkd_cli("check-config", "--config", tmp_path / "c.yaml")
    assert_clean_failure(status, err, str(tmp_path / "x" / "last.pt"), "No space left on device")
