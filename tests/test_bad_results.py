"""Hostile and faulty results: every input of `sdkd aggregate`, `figures`, `report` and
`readme-results`, broken in the ways files break (wrong types, wrong lengths, NaN, text
in number columns, missing columns, binary garbage, deep nesting, huge files).

The rule: a bad input ends the command with exit 2 and one `sdkd: error:` line naming the
file (and key) and what was expected; nothing partial is left and nothing good replaced.
Evaluation files are the one designed exception: `sdkd aggregate` records a broken one
as an `invalid` run with the reason (docs/evaluation-format.md), the other runs still
make a report, and `figures`/`report` list that run as invalid. A file that breaks after
`aggregate` (the metrics table says its run is ok) stops `figures` and `report`.

Text read from any file stays text on the page: hostile strings planted in every input
the report reads never become a script element or an event-handler attribute, and in
chromium never run.

Tables by category: SECTIONS (an evaluation file's sections), WHOLE_FILES (an evaluation
file as a whole), STALE (broken after aggregate), REPORT_INPUTS, FIGURE_INPUTS,
README_INPUTS; then HOSTILE text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from fake_results import make_fake_results, write_data_file
from helpers import assert_clean_failure, experiment, file_dataset, leftovers
from htmlpage import CHROMIUM, Page, chromium, console_problems

from sdkd.config import validate
from sdkd.plan import MANIFEST, expected_runs
from sdkd.report.aggregate import aggregate, read_metrics
from sdkd.report.figures import make_figures
from sdkd.report.html import render_report
from sdkd.report.readme import END, START
from sdkd.report.tables import html_table

NS = "navier_stokes"
DUAL = f"{NS}/unet-s/dual/seed-0.json"  # the evaluation file most cases break
PREVIOUS = "the previous report"
# One string for every context: element text, attribute values (both quotes), table
# structure, and a script that would rename the page.
HOSTILE = ("<script>document.title='PWNED'</script>\"onerror=\"document.title='PWNED'\""
           "'onmouseover='x'</table><img src=x onerror=alert(1)>")


def mini_config() -> dict:
    """One dataset (8 × 8 grid, 4 lead times), teacher-tiny, unet-s with none and dual."""
    config = experiment(
        {NS: file_dataset(Path("/nonexistent/ns.h5"), out_steps=4)},
        models={"teacher": "teacher-tiny", "students": ["unet-s"]},
        distill={"seeds": [0], "settings": {"none": {},
                                            "dual": {"cutoffs": [4], "weights": [1.0, 1.0]}}},
    )
    return validate(config, source="mini_config")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> SimpleNamespace:
    """A good results tree of mini_config (evaluation files, histories, tables, figures,
    benchmarks), its data file and config file; cases break a copy of it."""
    root = tmp_path_factory.mktemp("bad-results")
    config = mini_config()
    results = root / "results"
    make_fake_results(results, config)
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    make_figures(config, tables / "metrics.csv", results / "eval", results, results / "figures")
    for rule, seconds in (("preprocess", 5.0), ("distill/unet-s", 50.0), ("report", 2.0)):
        path = results / "benchmarks" / f"{rule}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t100\n")
    config_file = root / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return SimpleNamespace(config=config, config_file=config_file, results=results,
                           data=write_data_file(root, config, NS))


@pytest.fixture
def work(tree, tmp_path) -> Path:
    """A private copy of the tree's results folder."""
    results = tmp_path / "results"
    shutil.copytree(tree.results, results)
    return results


# ---- ways to break a file -------------------------------------------------------------


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _node(doc: Any, keys: list[str]) -> Any:
    for key in keys:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    return doc


def setting(dotted: str, value: Any) -> Callable[[Any], None]:
    """A change that sets the dotted key (list indices as numbers) to ``value``."""
    *parents, last = dotted.split(".")

    def change(doc: Any) -> None:
        node = _node(doc, parents)
        node[int(last) if isinstance(node, list) else last] = value

    return change


def dropping(dotted: str) -> Callable[[Any], None]:
    *parents, last = dotted.split(".")
    return lambda doc: _node(doc, parents).pop(last)


def nested(depth: int) -> Any:
    value: Any = 0.0
    for _ in range(depth):
        value = [value]
    return value


def huge(path: Path, size: int = 5 * 2**30) -> None:
    """A sparse file of ``size`` bytes (nothing is written to disk)."""
    path.unlink(missing_ok=True)
    with path.open("wb") as fh:
        fh.truncate(size)


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


GARBAGE = bytes(range(256)) * 8


# ---- evaluation files: a broken one is an invalid run, with the reason ------------------

SECTIONS = [  # id, change of the file, what the reason says
    ("per_lead_time-text", setting("per_lead_time", "fast"),
     "per_lead_time is 'fast', expected an object or null"),
    ("per_lead_time-short", setting("per_lead_time.mse", [0.1]),
     "per_lead_time.mse has 1 entries, expected 4 finite numbers (out_steps)"),
    ("per_lead_time-null-mse", setting("per_lead_time.mse.2", None),
     "per_lead_time.mse[2] is None, expected 4 finite numbers (out_steps)"),
    ("per_lead_time-string", setting("per_lead_time.rmse.0", "0.1"),
     "per_lead_time.rmse[0] is '0.1'"),
    ("per_lead_time-lacks", dropping("per_lead_time.mae"), "per_lead_time lacks `mae`"),
    ("spectrum-list", setting("spectrum", [1, 2]),
     "spectrum is [1, 2], expected an object or null"),
    ("spectrum-k", setting("spectrum.k.3", 7), "spectrum.k is [0, 1, 2, 7, ...], expected the "
                                               "shells 0, 1, …, 6"),
    ("spectrum-length", setting("spectrum.error", [0.1, 0.2]),
     "spectrum.error has 2 entries, expected 7 finite numbers ≥ 0 (shells of the grid)"),
    ("spectrum-negative", setting("spectrum.truth.0", -1.0), "spectrum.truth[0] is -1,"),
    ("spectrum-nested", setting("spectrum.prediction.1", [0.1]),
     "spectrum.prediction[1] is [0.1]"),
    ("band_errors-text", setting("band_errors.cutoffs", "4, 8"),
     "band_errors.cutoffs is '4, 8', expected increasing wavenumbers > 0"),
    ("band_errors-order", setting("band_errors.cutoffs", [8.0, 4.0]),
     "band_errors.cutoffs is [8.0, 4.0]"),
    ("band_errors-length", setting("band_errors.mse", [1.0, 2.0]),
     "band_errors.mse has 2 entries, expected 3 finite numbers ≥ 0 (one per band: "
     "len(cutoffs) + 1)"),
    ("band_errors-bool", setting("band_errors.mse.0", True), "band_errors.mse[0] is True"),
    ("band_errors-lacks", dropping("band_errors.truth_energy"),
     "band_errors lacks `truth_energy`"),
    ("sample-shape", setting("sample.truth", [[[1.0]]]),
     "sample.truth has 1 entries, expected a 2 × 8 × 8 array of finite numbers "
     "(lead_times × grid)"),
    ("sample-ragged", setting("sample.prediction.1.3", [0.0] * 7),
     "sample.prediction[1][3] has 7 entries"),
    ("sample-too-large", setting("sample.truth", [[[0.0] * 512] * 512] * 2),
     "sample.truth[0] has 512 entries, expected a 2 × 8 × 8 array"),
    ("sample-deep", setting("sample.truth", nested(40)),
     "nests lists or objects more than 32 levels deep"),
    ("sample-lead-times", setting("sample.lead_times", [1, 99]),
     "sample.lead_times is [1, 99], expected increasing lead times within 1 … out_steps (4)"),
    ("sample-channel", setting("sample.channel", "v"),
     "sample.channel is 'v', expected one of channels ['u']"),
    ("sample-window", setting("sample.window", -1), "sample.window is -1"),
    ("efficiency-text", setting("efficiency.inference.latency_ms", "fast"),
     "efficiency.inference.latency_ms is 'fast', expected a finite number ≥ 0 or null"),
    ("efficiency-block", setting("efficiency.training", 5),
     "efficiency.training is 5, expected an object or null"),
    ("efficiency-device", setting("efficiency.inference.device", ["cpu"]),
     "efficiency.inference.device is ['cpu'], expected text or null"),
    ("grid", setting("grid", "8x8"), "grid is '8x8', expected [H, W], two positive integers"),
    ("out_steps", setting("out_steps", True), "out_steps is True, expected a positive integer"),
    ("metrics-text", setting("metrics.mse", "0.1"),
     "metrics.mse is '0.1', expected a finite number"),
    ("channel_metrics-name", setting("channel_metrics", {HOSTILE: {}}),
     "channel_metrics has the keys ['<script>"),
    ("channel_metrics-text", setting("channel_metrics.u.mse", "0.1"),
     "channel_metrics.u.mse is '0.1', expected a finite number ≥ 0"),
    ("mask-values", setting("mask", [[2] * 8] * 8), "mask holds other values than 0 and 1"),
    ("another-run", setting("model", HOSTILE), "model is '<script>"),
]


def _text_with(token: str) -> Callable[[Path], None]:
    """The good file's text with its first metric value replaced by ``token``."""
    def write(path: Path) -> None:
        doc = json.loads(path.read_text())
        text = json.dumps(doc).replace(json.dumps(doc["metrics"]["mse"]), token, 1)
        path.write_text(text)
    return write


WHOLE_FILES = [  # id, how the file is broken, what the reason says
    ("garbage", lambda p: p.write_bytes(GARBAGE), "the evaluation file is not UTF-8 text"),
    ("empty", lambda p: p.write_text(""), "is not valid JSON (line 1 column 1"),
    ("list", lambda p: p.write_text("[1]"), "expected a JSON object, got list"),
    ("nan-token", _text_with("NaN"), "not strict JSON (NaN is not a JSON number)"),
    ("overflow", _text_with("1e999"), "not strict JSON (the number 1e999 is out of range)"),
    ("huge-int", _text_with("1" * 5000), "not strict JSON (the number 111"),
    ("deep", lambda p: p.write_text("[" * 100_000), "more than 32 levels deep"),
    ("huge", huge, "the evaluation file is 5 GiB; sdkd reads at most 64 MiB"),
    ("directory", directory, "the evaluation file is not a regular file"),
]


def _aggregate(sdkd_cli, tree, results: Path) -> pd.DataFrame:
    tables = results / "tables"
    status, err = sdkd_cli("aggregate", "--config", tree.config_file, "--eval-root",
                           results / "eval", "--out", tables / "metrics.csv", "--summary",
                           tables / "summary.json")
    assert status == 0, err
    return read_metrics(tables / "metrics.csv")


def _row(table: pd.DataFrame, eval_file: str) -> dict[str, Any]:
    run = next(r for r in expected_runs(mini_config()) if r["eval_file"] == eval_file)
    rows = table[(table["model"] == run["model"]) & (table["bands"] == run["bands"])
                 & (table["seed"] == run["seed"])]
    return rows.iloc[0].to_dict()


@pytest.mark.parametrize("change, reason", [c[1:] for c in SECTIONS],
                         ids=[c[0] for c in SECTIONS])
def test_a_malformed_section_makes_the_run_invalid(tree, work, sdkd_cli, change, reason):
    path = work / "eval" / DUAL
    edit_json(path, change)
    row = _row(_aggregate(sdkd_cli, tree, work), DUAL)
    assert row["status"] == "invalid", row
    assert row["note"].startswith(f"{path}: ") and reason in row["note"], row["note"]
    assert "\n" not in row["note"] and len(row["note"]) < 400


@pytest.mark.parametrize("write, reason", [c[1:] for c in WHOLE_FILES],
                         ids=[c[0] for c in WHOLE_FILES])
def test_a_broken_file_makes_the_run_invalid(tree, work, sdkd_cli, write, reason):
    path = work / "eval" / DUAL
    write(path)
    row = _row(_aggregate(sdkd_cli, tree, work), DUAL)
    assert row["status"] == "invalid", row
    assert row["note"].startswith(f"{path}: ") and reason in row["note"], row["note"]


@pytest.mark.slow
def test_an_invalid_run_is_shown_as_such(tree, work, sdkd_cli):
    """Figures and report still work and say which run is left out and why; a section
    that is null (legitimately absent) leaves its run out of what needs it, and says so."""
    edit_json(work / "eval" / DUAL, setting("sample.truth", [[[1.0]]]))
    edit_json(work / "eval" / f"{NS}/unet-s/none/seed-0.json", setting("band_errors", None))
    _aggregate(sdkd_cli, tree, work)
    tables = work / "tables"
    status, err = sdkd_cli("figures", "--config", tree.config_file, "--metrics",
                           tables / "metrics.csv", "--eval-root", work / "eval", "--runs-root",
                           work, "--out-dir", work / "figures")
    assert status == 0, err
    manifest = json.loads((work / "figures" / MANIFEST).read_text())
    for entry in manifest:  # every figure names the run it leaves out
        assert f"{NS}/unet-s/dual/seed-0 (invalid)" in entry["caption"], entry["file"]
    status, err = _report(sdkd_cli, tree, work)
    assert status == 0, err
    page = Page((work / "report.html").read_text())
    row = next(r for r in page.rows(f"T_metrics-{NS}") if r["bands"] == "dual")
    assert row["status"] == "invalid" and "sample.truth has 1 entries" in row["note"]
    assert f"Left out (no band errors in the evaluation file): {NS}/unet-s/none/seed-0" in (
        page.text_of(f"dataset-{NS}"))


# ---- broken after aggregate: figures and report stop -------------------------------------

STALE = [  # id, how the file breaks after aggregate, what the error says
    ("section", lambda p: edit_json(p, setting("per_lead_time.mse", [0.1])),
     "per_lead_time.mse has 1 entries"),
    ("sample", lambda p: edit_json(p, setting("sample.truth", [[[1.0]]])),
     "sample.truth has 1 entries"),
    ("bands", lambda p: edit_json(p, dropping("band_errors.truth_energy")),
     "band_errors lacks `truth_energy`"),
    ("garbage", lambda p: p.write_bytes(GARBAGE), "not UTF-8 text"),
    ("gone", lambda p: p.unlink(), "evaluation file not found"),
]


@pytest.mark.parametrize("command", ["figures", "report"])
@pytest.mark.parametrize("write, reason", [c[1:] for c in STALE], ids=[c[0] for c in STALE])
def test_a_file_broken_after_aggregate_stops_figures_and_report(tree, work, sdkd_cli, command,
                                                               write, reason):
    _aggregate(sdkd_cli, tree, work)  # the table names the copy's files
    path = work / "eval" / DUAL
    write(path)
    figures = {p: p.read_bytes() for p in (work / "figures").iterdir()}
    if command == "figures":
        tables = work / "tables"
        status, err = sdkd_cli("figures", "--config", tree.config_file, "--metrics",
                               tables / "metrics.csv", "--eval-root", work / "eval",
                               "--runs-root", work, "--out-dir", work / "figures")
    else:
        status, err = _report(sdkd_cli, tree, work)
    assert_clean_failure(status, err, str(path), reason, f"{NS}/unet-s/dual/seed-0 as ok",
                         "run `sdkd aggregate` again")
    assert {p: p.read_bytes() for p in (work / "figures").iterdir()} == figures
    if command == "report":
        assert (work / "report.html").read_text() == PREVIOUS


# ---- the report's other inputs -----------------------------------------------------------


def _report(sdkd_cli, tree, results: Path, data: Path | None = None) -> tuple[int, str]:
    out = results / "report.html"
    if not out.exists():
        out.write_text(PREVIOUS)
    tables = results / "tables"
    return sdkd_cli("report", "--config", tree.config_file, "--metrics", tables / "metrics.csv",
                    "--summary", tables / "summary.json", "--figures", results / "figures",
                    "--data", data or tree.data, "--out", out)


def edit_csv(change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        changed = change(frame)
        (frame if changed is None else changed).to_csv(path, index=False)
    return write


def cell(column: str, value: str, row: int = 0) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[row, column] = value
    return change


def json_change(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    return lambda path: edit_json(path, change)


def first_entry(key: str, value: Any) -> Callable[[Path], None]:
    return json_change(setting(f"0.{key}", value))


def png_header(width: int, height: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        path.write_bytes(bytes(data))
    return write


METRICS_CSV = "tables/metrics.csv"
SUMMARY = "tables/summary.json"
MANIFEST_FILE = f"figures/{MANIFEST}"
GAIN = "figures/gain_mse.png"
SUMMARY_BLOCK = f"datasets.{NS}.students.unet-s"

REPORT_INPUTS = [  # id, file (under results/), how it breaks, what the error says
    ("metrics-garbage", METRICS_CSV, lambda p: p.write_bytes(GARBAGE),
     "cannot read the metrics table ("),
    ("metrics-empty", METRICS_CSV, lambda p: p.write_text(""), "cannot read the metrics table"),
    ("metrics-header-only", METRICS_CSV, edit_csv(lambda f: f.iloc[:0]),
     "the metrics table has no rows"),
    ("metrics-lacks-column", METRICS_CSV, edit_csv(lambda f: f.drop(columns="mse")),
     "not a metrics table (no column mse)"),
    ("metrics-status", METRICS_CSV, edit_csv(cell("status", "great", 1)),
     "line 3: unknown status 'great' (expected ok, missing, invalid)"),
    ("metrics-role", METRICS_CSV, edit_csv(cell("role", HOSTILE, 2)), "line 4: unknown role"),
    ("metrics-text-number", METRICS_CSV, edit_csv(cell("mse", "abc")),
     "line 2, column mse: 'abc' is not a finite number"),
    ("metrics-infinite", METRICS_CSV, edit_csv(cell("latency_ms", "inf", 1)),
     "line 3, column latency_ms: inf is not a finite number"),
    ("metrics-seed", METRICS_CSV, edit_csv(cell("seed", "1.5", 1)),
     "line 3: seed is not an integer ≥ 0"),
    ("metrics-ok-without-mse", METRICS_CSV, edit_csv(cell("mse", "", 1)),
     "line 3: an ok run without all its metrics and its eval_path"),
    ("metrics-ok-without-file", METRICS_CSV, edit_csv(cell("eval_path", "", 2)),
     "line 4: an ok run without all its metrics and its eval_path"),
    ("metrics-twice", METRICS_CSV, edit_csv(lambda f: pd.concat([f, f.iloc[[1]]])),
     "line 5: a run listed twice"),
    ("metrics-huge", METRICS_CSV, huge, "sdkd reads at most 64 MiB"),
    ("summary-garbage", SUMMARY, lambda p: p.write_bytes(GARBAGE), "not UTF-8 text"),
    ("summary-version", SUMMARY, json_change(setting("schema_version", 1)),
     "schema_version is 1, expected 4"),
    ("summary-datasets", SUMMARY, json_change(setting("datasets", [NS])),
     "datasets is ['navier_stokes'], not as `sdkd aggregate` writes it"),
    ("summary-text-number", SUMMARY, json_change(setting(f"{SUMMARY_BLOCK}.none.mse", "x")),
     f"{SUMMARY_BLOCK}.none.mse is 'x', not as `sdkd aggregate` writes it"),
    ("summary-seeds", SUMMARY, json_change(setting(f"{SUMMARY_BLOCK}.best.n_seeds", 0)),
     f"{SUMMARY_BLOCK}.best.n_seeds is 0"),
    ("summary-finding", SUMMARY, json_change(setting("consistency", [{"dataset": NS}])),
     "consistency.0 is {'dataset': 'navier_stokes'}"),
    ("summary-band-key", SUMMARY, json_change(setting(f"{SUMMARY_BLOCK}.best.bands", HOSTILE)),
     f"{SUMMARY_BLOCK} names band setting '<script>"),
    ("summary-nan", SUMMARY, lambda p: p.write_text('{"schema_version": NaN}'),
     "not strict JSON"),
    ("manifest-object", MANIFEST_FILE, lambda p: p.write_text("{}"),
     "expected a JSON list of figures, got dict"),
    ("manifest-entry", MANIFEST_FILE, json_change(setting("0", 5)),
     "entry 0 is 5, expected an object"),
    ("manifest-title", MANIFEST_FILE, first_entry("title", 5),
     "entry 0: `title` is 5, expected str"),
    ("manifest-placeholder", MANIFEST_FILE, first_entry("placeholder", "no"),
     "entry 0: `placeholder` is 'no', expected bool"),
    ("manifest-lacks-key", MANIFEST_FILE, json_change(dropping("0.caption")),
     "entry 0 lacks `caption`"),
    ("manifest-path", MANIFEST_FILE, first_entry("file", "../../config.yaml"),
     "entry 0: file '../../config.yaml' is not a figure of this config"),
    ("manifest-twice", MANIFEST_FILE, json_change(lambda m: m.append(m[0])),
     "file 'gain_mse.png' is listed twice"),
    ("manifest-lacks-figure", MANIFEST_FILE, json_change(lambda m: m.pop()),
     f"lacks cost_{NS}.png of this config's figures"),
    ("manifest-kind", MANIFEST_FILE, first_entry("dataset", NS),
     "entry 0: gain_mse.png is of dataset 'navier_stokes', kind 'gain', expected None, "
     "'gain'"),
    ("png-text", GAIN, lambda p: p.write_text(HOSTILE), "gain_mse.png: not a PNG image"),
    ("png-huge", GAIN, lambda p: huge(p, 2**30), "the figure is 1 GiB; sdkd reads at most "
                                                  "16 MiB"),
    ("png-size", GAIN, png_header(0, 100), "not a PNG image of 1 … 16384 pixels a side"),
    ("png-gone", GAIN, lambda p: p.unlink(), "figure not found; listed in"),
]


@pytest.mark.parametrize("name, write, reason", [c[1:] for c in REPORT_INPUTS],
                         ids=[c[0] for c in REPORT_INPUTS])
def test_report_inputs(tree, work, sdkd_cli, name, write, reason):
    write(work / name)
    status, err = _report(sdkd_cli, tree, work)
    assert_clean_failure(status, err, str(work / name), reason)
    assert (work / "report.html").read_text() == PREVIOUS
    assert not [p for p in leftovers(work) if ".report.html." in p]


@pytest.mark.parametrize("case", ["garbage", "attribute"])
def test_report_data_file(tree, work, sdkd_cli, tmp_path, case):
    data = tmp_path / "ns.h5"
    if case == "garbage":
        data.write_bytes(GARBAGE)
        status, err = _report(sdkd_cli, tree, work, data)
        assert_clean_failure(status, err, str(data), "not a readable HDF5 file")
        assert (work / "report.html").read_text() == PREVIOUS
        return
    # an attribute too large to show is named, not read; a long one is cut
    shutil.copy(tree.data, data)
    with h5py.File(data, "a") as f:
        f.attrs["mean"] = np.full(10_000, 0.5, dtype=np.float32)
        f.attrs["source"] = "x" * 20_000
    status, err = _report(sdkd_cli, tree, work, data)
    assert status == 0, err
    rows = {r["attribute"]: r for r in Page((work / "report.html").read_text()).rows(
        "T_provenance")}
    assert rows["mean (train)"][NS] == "(10000 values, not shown)"
    assert rows["source"][NS] == "x" * 2000 + "… (20000 characters)"


# ---- the figures' other inputs ---------------------------------------------------------

HISTORY = f"students/{NS}/unet-s/dual/seed-0/history.csv"

FIGURE_INPUTS = [  # id, file (under results/), how it breaks, what the error says
    ("history-garbage", HISTORY, lambda p: p.write_bytes(GARBAGE),
     "cannot read the training history"),
    ("history-text-number", HISTORY, edit_csv(cell("val_loss", "abc", 1)),
     "line 3, column val_loss: 'abc' is not a finite number"),
    ("history-lacks-epoch", HISTORY, edit_csv(lambda f: f.drop(columns="epoch")),
     "not a training history (no column epoch)"),
    ("history-header-only", HISTORY, edit_csv(lambda f: f.iloc[:0]),
     "the training history has no rows"),
    ("history-huge", HISTORY, huge, "the training history is 5 GiB; sdkd reads at most 64 MiB"),
    ("history-directory", HISTORY, directory, "the training history is not a regular file"),
    ("metrics-garbage", METRICS_CSV, lambda p: p.write_bytes(GARBAGE),
     "cannot read the metrics table"),
]


@pytest.mark.parametrize("name, write, reason", [c[1:] for c in FIGURE_INPUTS],
                         ids=[c[0] for c in FIGURE_INPUTS])
def test_figure_inputs(tree, work, sdkd_cli, name, write, reason):
    write(work / name)
    figures = {p: p.read_bytes() for p in (work / "figures").iterdir()}
    tables = work / "tables"
    status, err = sdkd_cli("figures", "--config", tree.config_file, "--metrics",
                           tables / "metrics.csv", "--eval-root", work / "eval", "--runs-root",
                           work, "--out-dir", work / "figures")
    assert_clean_failure(status, err, str(work / name), reason)
    assert {p: p.read_bytes() for p in (work / "figures").iterdir()} == figures


# ---- the README's results block ----------------------------------------------------------

BENCHMARK = "benchmarks/preprocess.tsv"

README_INPUTS = [  # id, file (under results/), how it breaks, what the error says
    ("benchmark-lacks-s", BENCHMARK, lambda p: p.write_text("t\tmax_rss\n5\t1\n"),
     "not a Snakemake benchmark file (no column s)"),
    ("benchmark-text", BENCHMARK, lambda p: p.write_text("s\tmax_rss\nabc\t1\n"),
     "line 2, column s: 'abc' is not a finite number"),
    ("benchmark-negative", BENCHMARK, lambda p: p.write_text("s\tmax_rss\n-5\t1\n"),
     "expected the job's seconds (≥ 0)"),
    ("benchmark-garbage", BENCHMARK, lambda p: p.write_bytes(GARBAGE),
     "cannot read the Snakemake benchmark file"),
    ("summary", SUMMARY, json_change(setting("datasets", 5)), "datasets is 5"),
    ("manifest", MANIFEST_FILE, first_entry("kind", 5), "entry 0: `kind` is 5"),
]


@pytest.mark.parametrize("name, write, reason", [c[1:] for c in README_INPUTS],
                         ids=[c[0] for c in README_INPUTS])
def test_readme_inputs(tree, work, sdkd_cli, tmp_path, name, write, reason):
    write(work / name)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\nold numbers\n{END}\n")
    status, err = sdkd_cli("readme-results", "--config", tree.config_file, "--results", work,
                           "--readme", readme)
    assert_clean_failure(status, err, str(work / name), reason)
    assert readme.read_text() == f"# Title\n\n{START}\nold numbers\n{END}\n"
    assert not (tmp_path / "docs").exists()


def test_readme_text_stays_text(tree, work, sdkd_cli, tmp_path):
    """A device read from the metrics table is literal markdown text: no tag, no table
    cell border, one line."""
    edit_csv(cell("train_device", f"{HOSTILE}|\n|"))(work / METRICS_CSV)
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    status, err = sdkd_cli("readme-results", "--config", tree.config_file, "--results", work,
                           "--readme", readme)
    assert status == 0, err
    line = next(line for line in readme.read_text().splitlines() if "training on" in line)
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in line
    assert "<" not in line and "|" not in line


def test_readme_figure_argument(tree, work, sdkd_cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    status, err = sdkd_cli("readme-results", "--config", tree.config_file, "--results", work,
                           "--readme", readme, "--figure", "../tables/metrics.csv")
    assert_clean_failure(status, err, "--figure '../tables/metrics.csv'",
                         "expected the file name of a PNG")


# ---- hostile text: escaped on the page, never run ---------------------------------------


def test_tables_escape_every_part():
    """Headers of each level, cells, the id and the classes made from cells (names
    from configs, files and HDF5 attributes all end up in one of these)."""
    frame = pd.DataFrame({(HOSTILE, HOSTILE): [HOSTILE], ("run", "status"): [HOSTILE]})
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    table = html_table(frame, HOSTILE, numeric=[(HOSTILE, HOSTILE)], row_status=["invalid"],
                       status_column=("run", "status"), extra={("run", "status"): HOSTILE})
    page = Page(f"<html><body>{table}</body></html>")
    assert page.errors == []
    assert [tag for tag, _ in page.tags] == ["html", "body", "div", "table", "thead", "tr",
                                             "th", "th", "tr", "th", "th", "tbody", "tr", "td",
                                             "td"]
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    (table_id, parsed), = page.tables.items()
    assert table_id == f"T_{HOSTILE}"
    assert parsed["head"] == [[HOSTILE, "run"], [HOSTILE, "status"]]
    assert parsed["body"] == [[HOSTILE, HOSTILE]]


@pytest.fixture(scope="module")
def hostile(tree, tmp_path_factory) -> SimpleNamespace:
    """The page of a tree with HOSTILE planted in every input the report reads: the
    evaluation files (devices, a field of another run's file, which its note quotes), the
    metrics table (a device), the summary's findings, the figure manifest (a title and a
    caption), the data file's attributes (dataset, source, created_with), the config text,
    and the git and package strings."""
    root = tmp_path_factory.mktemp("hostile")
    results = root / "results"
    shutil.copytree(tree.results, results)
    for run in expected_runs(tree.config):
        path = results / "eval" / run["eval_file"]
        edit_json(path, setting("efficiency.inference.device", HOSTILE))
    edit_json(results / "eval" / f"{NS}/unet-s/none/seed-0.json", setting("model", HOSTILE))
    tables = results / "tables"
    aggregate(tree.config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    edit_csv(cell("train_device", HOSTILE))(tables / "metrics.csv")
    edit_json(tables / "summary.json", setting("consistency", [
        {"dataset": NS, "run": HOSTILE, "run_id": HOSTILE, "check": "config",
         "message": HOSTILE}]))
    edit_json(results / "figures" / MANIFEST, setting("0.title", HOSTILE))
    edit_json(results / "figures" / MANIFEST, setting("1.caption", HOSTILE))
    data = root / "ns.h5"
    shutil.copy(tree.data, data)
    with h5py.File(data, "a") as f:
        for key in ("dataset", "source", "created_with"):
            f.attrs[key] = HOSTILE
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sdkd.report.setup.git_commit", lambda _: HOSTILE)
        patch.setattr("sdkd.report.setup.package_versions",
                      lambda: {"sdkd": HOSTILE, "python": HOSTILE})
        out = render_report(tree.config, metrics_csv=tables / "metrics.csv",
                            summary_json=tables / "summary.json",
                            figures_dir=results / "figures", data_files=[data],
                            out=root / "report.html",
                            config_text=f"# {HOSTILE}\n{tree.config_file.read_text()}")
    return SimpleNamespace(out=out, text=out.read_text(encoding="utf-8"), root=root)


def test_hostile_text_stays_text(hostile):
    page = Page(hostile.text)
    assert page.errors == []  # a planted </table> closed nothing
    assert not [tag for tag, _ in page.tags if tag in ("script", "iframe", "object", "embed")]
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs
                if name.startswith("on")]
    assert handlers == []
    shown = {  # where each input's text shows, as text
        "data file (table header)": page.tables["T_provenance"]["head"][-1],
        "data file (cells)": [c for row in page.tables["T_provenance"]["body"] for c in row],
        "metrics table, evaluation files (devices)": [
            r["device"] for r in page.rows(f"T_efficiency-{NS}")],
        "figure manifest": [caption for _, caption in page.captions],
        "findings": [page.text_of("consistency")],
        "git, versions": [page.text_of("setup")],
    }
    for where, texts in shown.items():
        assert any(HOSTILE in text for text in texts), where
    invalid = next(r for r in page.rows(f"T_metrics-{NS}") if r["status"] == "invalid")
    assert "model is '<script>document." in invalid["note"]
    assert f"# {HOSTILE}" in page.text_of("setup")
    generator = next(attrs for tag, attrs in page.tags if attrs.get("name") == "generator")
    assert generator["content"] == f"sdkd {HOSTILE}"


@pytest.mark.workflow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                                                   "chromium)")
def test_hostile_text_never_runs_in_a_browser(hostile, tmp_path):
    """The DOM after load: the title is the page's (a planted script would rename it), no
    script element, nothing logged (a planted image would fail to load)."""
    result = chromium(tmp_path, "hostile", "--dump-dom", "--window-size=1280,2000",
                      hostile.out.resolve().as_uri())
    assert console_problems(result.stderr) == []
    title = result.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == "Frequency-aligned knowledge distillation: results"
    dom = Page(result.stdout)
    assert not [tag for tag, _ in dom.tags if tag == "script"]
    assert not [name for _, attrs in dom.tags for name in attrs if name.startswith("on")]
