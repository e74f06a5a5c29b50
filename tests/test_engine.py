"""The training loop: learning, outputs, exact resume, early stop, NaN handling, checkpoints."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from toytrain import (
    COLUMNS,
    CPU,
    META,
    TRAIN,
    VAL,
    H,
    Killed,
    Tiny,
    W,
    config,
    killed_after_the_first_epoch,
    model,
    mse_loss,
)

from sdkd.errors import SdkdError
from sdkd.plan import run_id
from sdkd.train import TrainConfig, engine, fit, load_checkpoint, runfolder, save_checkpoint
from sdkd.train.checkpoint import sub_state_dict


def read_csv(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_fit_learns_and_writes_its_outputs(tmp_path, monkeypatch):
    out = tmp_path / "run"
    done_seen = []
    real_save = runfolder.save_checkpoint

    def watching(path, payload):
        done_seen.append((out / "done.json").exists())
        return real_save(path, payload)

    monkeypatch.setattr(runfolder, "save_checkpoint", watching)
    result = fit(model(), mse_loss, TRAIN, VAL, config(epochs=6), out, device=CPU, meta=META)

    assert done_seen and not any(done_seen)  # done.json only after the last checkpoint
    assert result.epochs_run == 6 and not result.stopped_early
    rows = read_csv(out / "history.csv")
    assert list(rows[0]) == COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    val = [float(r["val_loss"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    assert val[-1] < 0.5 * val[0] and train[-1] < 0.5 * train[0]
    assert float(rows[0]["lr"]) == pytest.approx(1e-2)  # warmup ends at epoch 1's last step
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-9)  # cosine ends at min_lr
    assert all(float(r["samples_per_s"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows)
    assert rows[0]["device"].startswith("cpu")

    best = load_checkpoint(out / "best.pt", expect={"dataset": "toy", "grid": [H, W]})
    assert best["val_loss"] == min(val) == result.best_val
    assert best["epoch"] == result.best_epoch == 1 + val.index(min(val))
    Tiny().load_state_dict(best["model"])
    assert load_checkpoint(out / "last.pt")["epoch"] == 6

    done = json.loads((out / "done.json").read_text())
    assert done["epochs_run"] == 6 and done["best_epoch"] == result.best_epoch
    assert done["best_val"] == result.best_val and done["stopped_early"] is False
    assert done["total_seconds"] > 0

    # A finished run is returned as stored, without training or writing anything.
    monkeypatch.setattr(runfolder, "save_checkpoint", lambda *a: pytest.fail("wrote a checkpoint"))
    again = fit(model(), mse_loss, TRAIN, VAL, config(epochs=6), out, device=CPU, meta=META)
    assert again.best_val == result.best_val and again.history == result.history


LOSSES = ["train_loss", "val_loss", "train_mse", "train_mae", "val_mse", "val_mae", "lr"]


def assert_same_outputs(a, b):
    """best.pt and history.csv of two runs agree in everything but timings."""
    best_a, best_b = load_checkpoint(a / "best.pt"), load_checkpoint(b / "best.pt")
    for key in ("kind", "epoch", "val_loss", "meta", "config"):
        assert best_a[key] == best_b[key], key
    assert best_a["model"].keys() == best_b["model"].keys()
    for key in best_a["model"]:
        assert torch.equal(best_a["model"][key], best_b["model"][key]), key
    assert [best_a["history_row"][k] for k in LOSSES] == [best_b["history_row"][k] for k in LOSSES]
    rows_a, rows_b = read_csv(a / "history.csv"), read_csv(b / "history.csv")
    assert [list(r) for r in rows_a] == [list(r) for r in rows_b]
    assert [[r[k] for k in LOSSES] for r in rows_a] == [[r[k] for k in LOSSES] for r in rows_b]


def best_first(model, x, y):
    """Picked on ``neg_mse`` the best epoch is the first: later epochs never write best.pt."""
    loss, terms = mse_loss(model, x, y)
    return loss, {**terms, "neg_mse": -terms["mse"]}


@pytest.mark.parametrize(("kill", "delete", "monitor"), [
    ("after epoch 2", False, None),
    # what Snakemake does before rerunning an incomplete job: its declared outputs go,
    # the undeclared last.pt stays
    ("after epoch 2", True, None),
    ("after epoch 2", True, "neg_mse"),  # no later epoch would write best.pt again
    # killed between best.pt/history.csv and last.pt of epoch 3: both are one epoch ahead
    ("during epoch 3", False, None),
    ("during epoch 3", True, "neg_mse"),
])
def test_resume_after_a_kill_is_bit_identical(tmp_path, monkeypatch, kill, delete, monitor):
    cfg = config()
    loss_fn = mse_loss if monitor is None else best_first
    model_a = model()
    first = fit(model_a, loss_fn, TRAIN, VAL, cfg, tmp_path / "a", device=CPU, meta=META,
                monitor=monitor)
    if monitor is not None:
        assert first.best_epoch == 1

    real_save = runfolder.save_checkpoint

    def dying(path, payload):
        if kill == "during epoch 3" and path.name == "last.pt" and payload["epoch"] == 3:
            raise Killed
        real_save(path, payload)
        if kill == "after epoch 2" and path.name == "last.pt" and payload["epoch"] == 2:
            raise Killed

    run = tmp_path / "b"
    monkeypatch.setattr(runfolder, "save_checkpoint", dying)
    with pytest.raises(Killed):
        fit(model(), loss_fn, TRAIN, VAL, cfg, run, device=CPU, meta=META, monitor=monitor)
    monkeypatch.setattr(runfolder, "save_checkpoint", real_save)
    assert not (run / "done.json").exists()
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    expected_rows = 3 if kill == "during epoch 3" else 2
    assert len(read_csv(run / "history.csv")) == expected_rows
    if delete:
        (run / "best.pt").unlink()
        (run / "history.csv").unlink()

    # A new process: other global RNG states, another initialisation.
    torch.manual_seed(1234)
    np.random.seed(99)
    model_b = model(seed=7)
    resumed = fit(model_b, loss_fn, TRAIN, VAL, cfg, run, device=CPU, meta=META, monitor=monitor)

    assert resumed.epochs_run == 4
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert_same_outputs(tmp_path / "a", run)


def _killed_after_the_first_epoch(monkeypatch, run):
    """Train into ``run`` until the first last.pt is written, then die as if SIGKILLed."""
    killed_after_the_first_epoch(
        monkeypatch, lambda: fit(model(), mse_loss, TRAIN, VAL, config(), run, device=CPU,
                                 meta=META))


def test_resume_rewrites_outputs_from_last_pt_before_training_on(tmp_path, monkeypatch):
    """Killed again before the next improvement, a resumed run still has both files."""
    run = tmp_path / "run"
    _killed_after_the_first_epoch(monkeypatch, run)
    last = load_checkpoint(run / "last.pt")
    assert last["best"]["epoch"] == last["best_epoch"] == 1
    (run / "best.pt").unlink()
    (run / "history.csv").unlink()

    def killed_in_epoch_2(model, x, y):
        raise Killed

    with pytest.raises(Killed):
        fit(model(), killed_in_epoch_2, TRAIN, VAL, config(), run, device=CPU, meta=META)
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    assert [int(r["epoch"]) for r in read_csv(run / "history.csv")] == [1]


def test_finished_run_missing_its_outputs_is_rebuilt_without_training(tmp_path, caplog):
    run = tmp_path / "run"
    fit(model(), mse_loss, TRAIN, VAL, config(), run, device=CPU, meta=META)
    (tmp_path / "a").mkdir()
    for name in ("best.pt", "history.csv"):
        (tmp_path / "a" / name).write_bytes((run / name).read_bytes())
    done = json.loads((run / "done.json").read_text())
    (run / "best.pt").unlink()
    (run / "history.csv").unlink()

    def no_training(model, x, y):
        pytest.fail("trained again")

    with caplog.at_level("WARNING"):
        result = fit(model(), no_training, TRAIN, VAL, config(), run, device=CPU, meta=META)
    assert "finished, but best.pt and history.csv missing; rebuilding from last.pt" in caplog.text
    assert result.epochs_run == 4 and result.best_epoch == done["best_epoch"]
    assert_same_outputs(tmp_path / "a", run)
    assert json.loads((run / "done.json").read_text())["history"] == done["history"]


def test_last_pt_of_an_older_sdkd_starts_over(tmp_path, caplog):
    """A last.pt without a run identity (an older sdkd wrote it) is another run."""
    run = tmp_path / "run"
    fit(model(), mse_loss, TRAIN, VAL, config(), run, device=CPU, meta=META)
    last = load_checkpoint(run / "last.pt")
    del last["best"], last["identity"], last["format_version"]
    save_checkpoint(run / "last.pt", last)
    for name in ("done.json", "best.pt", "history.csv"):
        (run / name).unlink()
    with caplog.at_level("WARNING"):
        result = fit(model(), mse_loss, TRAIN, VAL, config(), run, device=CPU, meta=META)
    assert "belongs to another run ((identity): null → {" in caplog.text
    fresh = fit(model(), mse_loss, TRAIN, VAL, config(), tmp_path / "fresh", device=CPU,
                meta=META)
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in fresh.history]
    assert_same_outputs(tmp_path / "fresh", run)


def test_another_config_or_meta_starts_over(tmp_path, monkeypatch, caplog):
    """A pipeline rerun after a parameter change must not continue the old run."""
    _killed_after_the_first_epoch(monkeypatch, tmp_path)
    fresh = fit(model(), mse_loss, TRAIN, VAL, config(lr=1e-3), tmp_path / "fresh", device=CPU,
                meta=META)
    with caplog.at_level("WARNING"):
        restarted = fit(model(), mse_loss, TRAIN, VAL, config(lr=1e-3), tmp_path, device=CPU,
                        meta=META)
    assert "belongs to another run (train.lr: 0.01 → 0.001)" in caplog.text
    assert [r["train_loss"] for r in restarted.history] == [r["train_loss"] for r in fresh.history]
    # a finished run of other meta is not returned as if it were this one
    caplog.clear()
    with caplog.at_level("WARNING"):
        other = fit(model(), mse_loss, TRAIN, VAL, config(lr=1e-3), tmp_path, device=CPU,
                    meta={**META, "dataset": "other"})
    assert 'meta.dataset: "toy" → "other"' in caplog.text
    assert other.epochs_run == restarted.epochs_run
    # the pipeline's identity decides alone: equal identity, other meta → reused as is
    caplog.clear()
    identity = {"spec": {"bands": {"weights": [1.0, 1.0]}}, "inputs": {"data": "ab"}}
    first = fit(model(), mse_loss, TRAIN, VAL, config(), tmp_path / "pipe", device=CPU,
                meta=META, identity=identity)
    with caplog.at_level("INFO"):
        again = fit(model(), mse_loss, TRAIN, VAL, config(), tmp_path / "pipe", device=CPU,
                    meta=META, identity=json.loads(json.dumps(identity)))
    assert "already finished" in caplog.text and again.history == first.history
    caplog.clear()
    changed = {**identity, "spec": {"bands": {"weights": [1.0, 2.0]}}}
    with caplog.at_level("WARNING"):
        fit(model(), mse_loss, TRAIN, VAL, config(), tmp_path / "pipe", device=CPU, meta=META,
            identity=changed)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "spec.bands.weights: [1.0, 1.0] → [1.0, 2.0]); training from scratch" in line
    stored = json.loads((tmp_path / "pipe" / "done.json").read_text())
    assert stored["identity"] == changed and stored["run_id"] == run_id(changed)
    assert load_checkpoint(tmp_path / "pipe" / "best.pt")["run_id"] == run_id(changed)


def test_early_stopping(tmp_path):
    val_batches = [0]

    def rising(model, x, y):
        loss, terms = mse_loss(model, x, y)
        if not model.training:  # the validation loss gets worse every epoch
            val_batches[0] += 1
            loss = loss + val_batches[0]
        return loss, terms

    result = fit(model(), rising, TRAIN, VAL, config(epochs=10, patience=2), tmp_path,
                 device=CPU, meta=META)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert len(read_csv(tmp_path / "history.csv")) == 3
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["stopped_early"] is True and done["epochs_run"] == 3
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_nonfinite_loss_stops_without_writing_that_epoch(tmp_path):
    steps = [0]

    def poisoned(model, x, y):
        loss, terms = mse_loss(model, x, y)
        if model.training:
            steps[0] += 1
            if steps[0] == 4 + 2:  # epoch 2 (4 steps per epoch), step 2
                terms = {**terms, "mse": terms["mse"] * math.nan}
                loss = terms["mse"] + 0.0
        return loss, terms

    with pytest.raises(SdkdError) as info:
        fit(model(), poisoned, TRAIN, VAL, config(), tmp_path, device=CPU, meta=META)
    message = str(info.value)
    assert "non-finite at epoch 2, step 2" in message and "mse=nan" in message
    assert "mae" not in message  # only the offending terms are named
    assert f"{tmp_path / 'last.pt'} still holds epoch 1" in message
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and len(last["history"]) == 1
    best_before = load_checkpoint(tmp_path / "best.pt")
    assert best_before["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in best_before["model"].values())
    assert len(read_csv(tmp_path / "history.csv")) == 1
    assert not (tmp_path / "done.json").exists()


def test_bad_config_is_rejected():
    with pytest.raises(SdkdError, match=r"train\.epochs"):
        TrainConfig(epochs=0, batch_size=4)
    with pytest.raises(SdkdError, match=r"train\.min_lr"):
        TrainConfig(epochs=1, batch_size=4, lr=1e-3, min_lr=1e-2)


def test_warmup_cosine_schedule():
    factor = engine.warmup_cosine(10, TrainConfig(epochs=3, batch_size=1, lr=1.0, min_lr=0.1,
                                                  warmup_epochs=0.5))
    assert [factor(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factor(5) == pytest.approx(1.0)
    assert factor(29) == pytest.approx(0.1)
    values = [factor(s) for s in range(5, 30)]
    assert values == sorted(values, reverse=True)


def test_load_checkpoint_rejects_bad_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {
        "model": {"w": torch.ones(64, 64)}, "meta": {"dataset": "dr", "grid": [64, 64]},
    })
    loaded = load_checkpoint(good, expect={"dataset": "dr", "grid": (64, 64)})
    assert loaded["meta"]["grid"] == [64, 64]

    missing = tmp_path / "missing.pt"
    with pytest.raises(SdkdError, match=rf"{missing}: checkpoint not found"):
        load_checkpoint(missing)

    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SdkdError, match=rf"{truncated}: corrupt or unreadable checkpoint \("):
        load_checkpoint(truncated)

    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SdkdError, match=rf"{noise}: corrupt or unreadable checkpoint"):
        load_checkpoint(noise)

    old = tmp_path / "old.pt"
    torch.save({"format_version": 0, "model": {}}, old)
    with pytest.raises(SdkdError, match=rf"{old}: checkpoint format version 0, expected 1"):
        load_checkpoint(old)

    with pytest.raises(SdkdError, match=rf"teacher checkpoint {good} was trained on dataset "
                                        r"'dr', expected 'ns'"):
        load_checkpoint(good, expect={"dataset": "ns"}, what="teacher checkpoint")
    with pytest.raises(SdkdError, match=rf"{good} was trained with grid=\[64, 64\], "
                                        r"expected \[32, 32\]"):
        load_checkpoint(good, expect={"dataset": "dr", "grid": (32, 32)})
    with pytest.raises(SdkdError, match=rf"{good} has no meta key 'channels'"):
        load_checkpoint(good, expect={"channels": 2})


def test_sub_state_dict_extracts_a_submodule():
    both = nn.ModuleDict({"student": Tiny(), "projection": nn.Linear(2, 2)})
    student = Tiny()
    student.load_state_dict(sub_state_dict(both.state_dict(), "student"))
    assert torch.equal(student.net[0].weight, both["student"].net[0].weight)
    with pytest.raises(SdkdError, match="teacher"):
        sub_state_dict(both.state_dict(), "teacher")


def _gpu_flags(state: dict) -> dict:
    """``state`` (a Trainer.state()) as a GPU run would have saved it: fused AdamW, whose
    step counters are float32 tensors on the parameters' device."""
    optimizer = state["optimizer"]
    for group in optimizer["param_groups"]:
        group["fused"], group["foreach"] = True, None
    for entry in optimizer["state"].values():
        entry["step"] = entry["step"].to(torch.float32)
    return state


def test_resume_on_another_device_takes_that_devices_optimizer_flags(tmp_path):
    """``load_state_dict`` restores ``fused`` from the checkpoint: a GPU's last.pt resumed
    on the CPU must still run the CPU's (unfused) AdamW."""
    x = torch.randn(4, 2, 1, H, W)
    saved = engine.Trainer(model(), mse_loss, config(), CPU, steps_per_epoch=4)
    saved.step(x, x)
    fresh = engine.Trainer(model(), mse_loss, config(), CPU, steps_per_epoch=4)
    expected = [{k: g[k] for k in ("fused", "foreach", "capturable")}
                for g in fresh.optimizer.param_groups]
    fresh.load_state(_gpu_flags(saved.state()), tmp_path / "last.pt")
    assert [{k: g[k] for k in ("fused", "foreach", "capturable")}
            for g in fresh.optimizer.param_groups] == expected
    assert not any(g["fused"] for g in fresh.optimizer.param_groups)
    steps = [s["step"] for s in fresh.optimizer.state.values()]
    assert steps and all(s.device.type == "cpu" and float(s) == 1 for s in steps)
    fresh.step(x, x)
    assert all(float(s["step"]) == 2 for s in fresh.optimizer.state.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("first", "then"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_run_killed_on_one_device_resumes_on_the_other(tmp_path, monkeypatch, first, then):
    run = tmp_path / "run"
    cfg = config(amp=False)
    killed_after_the_first_epoch(
        monkeypatch, lambda: fit(model(), mse_loss, TRAIN, VAL, cfg, run,
                                 device=torch.device(first), meta=META))
    resumed = fit(model(), mse_loss, TRAIN, VAL, cfg, run, device=torch.device(then),
                  meta=META)
    assert resumed.epochs_run == cfg.epochs
    rows = read_csv(run / "history.csv")
    assert rows[0]["device"].startswith(first) and rows[-1]["device"].startswith(then)
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
