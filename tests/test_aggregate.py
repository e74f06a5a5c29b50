"""sdkd.report.aggregate: one row per expected run, statuses, the summary's numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fake_results import make_fake_results, subset_config, tiny_config
from helpers import leftovers
from scipy.stats import ttest_rel

from sdkd.errors import SdkdError
from sdkd.plan import expected_runs
from sdkd.report.aggregate import COLUMNS, aggregate, read_metrics

NS, DR = "navier_stokes", "diffusion_reaction"


@pytest.fixture(scope="module")
def config():
    return tiny_config()


def run_aggregate(config, results):
    tables = results / "tables"
    frame = aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    summary = json.loads((tables / "summary.json").read_text())
    return frame, summary


def edit(path, **changes):
    """Rewrite top-level keys or, with ``metrics=``, metric values of an evaluation file."""
    doc = json.loads(path.read_text())
    metrics = changes.pop("metrics", {})
    doc.update(changes)
    doc["metrics"].update(metrics)
    path.write_text(json.dumps(doc))


def test_expected_runs(config):
    runs = expected_runs(config)
    # per dataset: teacher + 2 students × (none 2 + low + high + dual 2 + output + fitnet)
    assert len(runs) == 2 * (1 + 2 * 8)
    teacher = runs[0]
    assert (teacher["role"], teacher["model"], teacher["bands"], teacher["seed"]) == (
        "teacher", "teacher-tiny", None, config["seed"])
    assert teacher["eval_file"] == f"{NS}/teacher/teacher-tiny.json"
    keys = {(r["dataset"], r["model"], r["bands"], r["seed"]) for r in runs}
    assert len(keys) == len(runs)
    assert (DR, "unet-m", "dual", 1) in keys and (DR, "unet-m", "low", 1) not in keys
    dual = next(r for r in runs if r["bands"] == "dual")
    assert dual["run_dir"] == f"students/{NS}/unet-s/dual/seed-0"
    assert (dual["family"], dual["size"], dual["setting"]) == ("unet", "s", "dual")


def test_expected_runs_of_a_subset():
    config = subset_config()
    runs = expected_runs(config)
    # navier_stokes: the whole grid; diffusion_reaction: teacher + unet-m × (none 2 + dual 2)
    assert len(runs) == (1 + 2 * 8) + (1 + 1 * 4)
    dr = [(r["model"], r["bands"], r["seed"]) for r in runs if r["dataset"] == DR]
    assert dr == [("teacher-tiny", None, 0), ("unet-m", "none", 0), ("unet-m", "none", 1),
                  ("unet-m", "dual", 0), ("unet-m", "dual", 1)]


def test_table_and_summary_of_a_subset(tmp_path):
    """Each dataset's rows and summary hold its own students and settings only, and its
    baseline is its own plain-student key (here a variant, `plain`, on one dataset)."""
    config = tiny_config()
    config["distill"]["settings"]["plain"] = {"setting": "none"}
    config = subset_config(config, settings=["plain", "dual"])
    make_fake_results(tmp_path, config)
    frame, summary = run_aggregate(config, tmp_path)
    assert len(frame) == len(expected_runs(config)) and set(frame["status"]) == {"ok"}
    dr = frame[frame["dataset"] == DR]
    assert set(dr["model"]) == {"teacher-tiny", "unet-m"}
    assert set(dr["bands"].dropna()) == {"plain", "dual"}
    ns = frame[frame["dataset"] == NS]
    assert set(ns["bands"].dropna()) == set(config["distill"]["settings"])
    block = summary["datasets"][DR]["students"]
    assert list(block) == ["unet-m"]
    assert block["unet-m"]["none"]["n_seeds"] == 1  # `plain`, DR's only baseline
    assert list(block["unet-m"]["settings"]) == ["dual"]
    assert block["unet-m"]["best"]["mse_change_pct"] < 0
    # navier_stokes keeps `none` as its baseline; `plain` is not a distilled setting
    ns_block = summary["datasets"][NS]["students"]["unet-s"]
    assert ns_block["none"]["n_seeds"] == 2 and "plain" not in ns_block["settings"]


def test_rows_are_expected_runs(config, tmp_path):
    make_fake_results(tmp_path, config)
    frame, summary = run_aggregate(config, tmp_path)
    runs = expected_runs(config)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(runs)
    assert [(r.dataset, r.model, r.bands, r.seed) for r in frame.itertuples()] == [
        (r["dataset"], r["model"], r["bands"], r["seed"]) for r in runs]
    assert set(frame["status"]) == {"ok"}
    numbers = COLUMNS[COLUMNS.index("mse"):COLUMNS.index("inference_device")]
    assert frame[list(numbers)].notna().all().all()  # metrics and efficiency
    assert frame["run_id"].str.fullmatch("[0-9a-f]{12}").all()
    assert summary["runs"] == {"expected": len(runs), "ok": len(runs), "missing": 0,
                               "invalid": 0}
    assert summary["consistency"] == []
    # the csv round-trips
    table = read_metrics(tmp_path / "tables" / "metrics.csv")
    assert len(table) == len(frame)
    assert table["mse"].tolist() == pytest.approx(frame["mse"].tolist(), rel=1e-12)
    assert table["run_id"].tolist() == frame["run_id"].tolist()
    assert table.loc[0, "bands"] is None and table.loc[1, "bands"] == "none"
    assert leftovers(tmp_path / "tables") == ["metrics.csv", "summary.json"]
    # the fake's ordering holds: teacher best, every distilled setting beats none
    for dataset in (NS, DR):
        entry = summary["datasets"][dataset]
        for model in ("unet-s", "unet-m"):
            block = entry["students"][model]
            assert block["best"]["bands"] == "dual"
            assert block["none"]["n_seeds"] == 2 and "mse_std" in block["none"]
            assert "mse_std" not in block["settings"]["low"]
            for stats in block["settings"].values():
                assert entry["teacher"]["mse"] < stats["mse"] < block["none"]["mse"]
                assert stats["mse_change_pct"] < 0 and 0 < stats["gap_closed"] < 1


def test_statuses(config, tmp_path):
    make_fake_results(tmp_path, config, missing=[f"{NS}/unet-m/dual/seed-1.json",
                                                 {"dataset": DR, "bands": "fitnet"}])
    root = tmp_path / "eval" / NS
    (root / "unet-s/low/seed-0.json").write_text('{"schema_version": 1, "metrics": ')
    edit(root / "unet-s/high/seed-0.json", schema_version=1)
    edit(root / "unet-m/low/seed-0.json", dataset=DR)
    edit(root / "unet-m/high/seed-0.json", metrics={"ssim": None})
    edit(root / "unet-m/output/seed-0.json", efficiency={"parameters": 5})
    frame, summary = run_aggregate(config, tmp_path)
    by_key = {(r.dataset, r.model, r.bands, r.seed): r for r in frame.itertuples()}

    def row(model, bands, seed=0, dataset=NS):
        return by_key[(dataset, model, bands, seed)]

    assert row("unet-m", "dual", 1).status == "missing"
    assert "does not exist" in row("unet-m", "dual", 1).note
    assert all(row(m, "fitnet", dataset=DR).status == "missing" for m in ("unet-s", "unet-m"))
    cases = {
        ("unet-s", "low"): "not valid JSON",
        ("unet-s", "high"): "evaluation schema_version 1, expected 2 or 3; rerun sdkd evaluate",
        ("unet-m", "low"): "dataset is 'diffusion_reaction', expected 'navier_stokes'",
        ("unet-m", "high"): "metrics.ssim is None",
    }
    for (model, bands), message in cases.items():
        r = row(model, bands)
        assert r.status == "invalid" and message in r.note, r.note
        assert math.isnan(r.mse) and r.run_id == ""
    # an ok run that lacks efficiency values keeps its metrics and says what is lacking
    out = row("unet-m", "output")
    assert out.status == "ok" and out.parameters == 5 and math.isnan(out.latency_ms)
    assert "efficiency.inference.latency_ms" in out.note
    assert summary["runs"] == {"expected": 34, "ok": 27, "missing": 3, "invalid": 4}
    # the missing/invalid runs are left out of the summary
    settings = summary["datasets"][NS]["students"]["unet-m"]["settings"]
    assert "low" not in settings and "high" not in settings
    assert settings["dual"]["n_seeds"] == 1 and "mse_std" not in settings["dual"]


def test_change_and_gap_on_hand_made_numbers(config, tmp_path):
    make_fake_results(tmp_path, config)
    root = tmp_path / "eval" / NS
    edit(root / "teacher/teacher-tiny.json", metrics={"mse": 1.0, "mae": 0.5, "ssim": 0.9})
    numbers = {  # (bands, seed): (mse, mae, ssim)
        ("none", 0): (5.0, 2.0, 0.5), ("none", 1): (7.0, 2.0, 0.7),
        ("dual", 0): (2.0, 1.0, 0.8), ("dual", 1): (4.0, 2.0, 0.6),
        ("low", 0): (4.5, 1.5, 0.6), ("high", 0): (5.5, 1.9, 0.6),
        ("output", 0): (3.5, 1.2, 0.6), ("fitnet", 0): (8.0, 3.0, 0.4),
    }
    for (bands, seed), (mse, mae, ssim) in numbers.items():
        edit(root / f"unet-s/{bands}/seed-{seed}.json",
             metrics={"mse": mse, "mae": mae, "ssim": ssim})
    _, summary = run_aggregate(config, tmp_path)
    entry = summary["datasets"][NS]
    assert entry["teacher"] == {"mse": 1.0, "mae": 0.5, "ssim": 0.9}
    block = entry["students"]["unet-s"]
    none = block["none"]
    assert none["mse"] == pytest.approx(6.0) and none["mae"] == pytest.approx(2.0)
    assert none["mse_std"] == pytest.approx(math.sqrt(2.0))  # sample std of 5, 7
    assert none["mae_std"] == pytest.approx(0.0) and none["n_seeds"] == 2
    best = block["best"]
    assert best["bands"] == "dual"
    assert best["mse"] == pytest.approx(3.0) and best["mae"] == pytest.approx(1.5)
    assert best["mse_change_pct"] == pytest.approx(-50.0)  # 100 (3 − 6) / 6
    assert best["mae_change_pct"] == pytest.approx(-25.0)  # 100 (1.5 − 2) / 2
    assert best["ssim_change"] == pytest.approx(0.1)       # 0.7 − 0.6
    assert best["gap_closed"] == pytest.approx(0.6)        # (6 − 3) / (6 − 1)
    fitnet = block["settings"]["fitnet"]
    assert fitnet["mse_change_pct"] == pytest.approx(100 * 2 / 6)
    assert fitnet["gap_closed"] == pytest.approx(-0.4)     # worse than the plain student
    assert block["settings"]["output"]["gap_closed"] == pytest.approx(0.5)
    # Paired by seed: dual/none log ratios ln(2/5), ln(4/7); their mean is the change.
    ratios = [math.log(2 / 5), math.log(4 / 7)]
    interval = ttest_rel(*map(np.log, ([2.0, 4.0], [5.0, 7.0]))).confidence_interval()
    assert best["n_pairs"] == 2
    assert best["mse_paired_change_pct"] == pytest.approx(100 * math.expm1(np.mean(ratios)))
    assert best["mse_paired_low_pct"] == pytest.approx(100 * math.expm1(interval.low))
    assert best["mse_paired_high_pct"] == pytest.approx(100 * math.expm1(interval.high))
    assert fitnet["n_pairs"] == 1 and "mse_paired_low_pct" not in fitnet  # one seed
    assert fitnet["mse_paired_change_pct"] == pytest.approx(100 * (8 / 5 - 1))
    # dual vs output is one of the study's questions; output ran seed 0 alone.
    assert block["comparisons"] == [{"treated": "dual", "baseline": "output", "n_pairs": 1,
                                     "change_pct": pytest.approx(100 * (2 / 3.5 - 1))}]


def test_summary_numbers_equal_the_csv(config, tmp_path):
    make_fake_results(tmp_path, config, missing=[f"{DR}/unet-s/dual/seed-0.json"], seed=3)
    _, summary = run_aggregate(config, tmp_path)
    table = pd.read_csv(tmp_path / "tables" / "metrics.csv")
    ok = table[table["status"] == "ok"]
    for dataset in (NS, DR):
        entry = summary["datasets"][dataset]
        teacher = ok[(ok["dataset"] == dataset) & (ok["role"] == "teacher")].iloc[0]
        assert entry["teacher"]["mse"] == pytest.approx(teacher["mse"], rel=1e-12)
        for model in ("unet-s", "unet-m"):
            rows = ok[(ok["dataset"] == dataset) & (ok["model"] == model)]
            means = rows.groupby("bands")[["mse", "mae", "ssim"]].mean()
            stds = rows.groupby("bands")["mse"].std()
            block = entry["students"][model]
            none = means.loc["none"]
            assert block["none"]["mse"] == pytest.approx(none["mse"], rel=1e-12)
            best = means.drop("none")["mse"].idxmin()
            assert block["best"]["bands"] == best
            for key, stats in block["settings"].items():
                mean = means.loc[key]
                assert stats["mse"] == pytest.approx(mean["mse"], rel=1e-12)
                assert stats["mae"] == pytest.approx(mean["mae"], rel=1e-12)
                assert stats["ssim"] == pytest.approx(mean["ssim"], rel=1e-12)
                assert stats["n_seeds"] == int((rows["bands"] == key).sum())
                if stats["n_seeds"] > 1:
                    assert stats["mse_std"] == pytest.approx(stds[key], rel=1e-9)
                change = 100 * (mean["mse"] - none["mse"]) / none["mse"]
                assert stats["mse_change_pct"] == pytest.approx(change, rel=1e-9)
                gap = (none["mse"] - mean["mse"]) / (none["mse"] - teacher["mse"])
                assert stats["gap_closed"] == pytest.approx(gap, rel=1e-9)
    assert summary["datasets"][DR]["students"]["unet-s"]["settings"]["dual"]["n_seeds"] == 1


def test_missing_teacher_leaves_out_the_gap(config, tmp_path):
    make_fake_results(tmp_path, config, missing=[f"{NS}/teacher/*"])
    _, summary = run_aggregate(config, tmp_path)
    entry = summary["datasets"][NS]
    assert "teacher" not in entry
    best = entry["students"]["unet-s"]["best"]
    assert "gap_closed" not in best and best["mse_change_pct"] < 0
    assert "gap_closed" in summary["datasets"][DR]["students"]["unet-s"]["best"]


def test_bands_key_as_string(config, tmp_path):
    """The format's `bands` may be the {bands} key (a string); it must then match."""
    make_fake_results(tmp_path, config)
    root = tmp_path / "eval" / NS / "unet-s"
    doc = json.loads((root / "dual/seed-0.json").read_text())
    (root / "dual/seed-0.json").write_text(json.dumps(doc | {"bands": "dual"}))
    (root / "dual/seed-1.json").write_text(json.dumps(doc | {"bands": "low", "seed": 1}))
    frame, _ = run_aggregate(config, tmp_path)
    rows = frame[(frame["dataset"] == NS) & (frame["model"] == "unet-s")
                 & (frame["bands"] == "dual")]
    assert rows["status"].tolist() == ["ok", "invalid"]
    assert "bands is 'low', expected 'dual'" in rows["note"].iloc[1]


@pytest.mark.parametrize("tree", ["empty", "absent", "unrelated"])
def test_empty_tree_is_a_clear_error(config, tmp_path, tree):
    eval_root = tmp_path / "results" / "eval"
    if tree != "absent":
        eval_root.mkdir(parents=True)
    if tree == "unrelated":
        (eval_root / "other" / "teacher").mkdir(parents=True)
        (eval_root / "other" / "teacher" / "x.json").write_text("{}")
    tables = tmp_path / "results" / "tables"
    with pytest.raises(SdkdError, match=r"no evaluation files under .*run the pipeline first"):
        aggregate(config, eval_root, tables / "metrics.csv", tables / "summary.json")
    assert leftovers(tables) == []


def test_read_metrics_rejects_other_files(tmp_path):
    with pytest.raises(SdkdError, match="run `sdkd aggregate` first"):
        read_metrics(tmp_path / "nope.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SdkdError, match="not a metrics table"):
        read_metrics(tmp_path / "other.csv")
