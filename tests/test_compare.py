"""`sdkd compare A B` (sdkd/report/compare.py): two planted results trees with known MSEs
give the right changes, intervals (checked against scipy) and verdicts; rows one side
lacks are listed; labels and folder names stay text on the page; bad input is one line.

Most trees are planted as a metrics.csv alone (all `compare` reads), so every MSE is
known; one test compares two trees made the real way (fake evaluation files →
`aggregate`)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from fake_results import make_fake_results, tiny_config
from helpers import assert_clean_failure
from htmlpage import CHROMIUM, Page, chromium, console_problems
from scipy import stats

from sdkd.cli import build_parser, main
from sdkd.errors import SdkdError
from sdkd.report.aggregate import COLUMNS, aggregate
from sdkd.report.compare import (
    INTERVAL_METRICS,
    NO_DIFFERENCE,
    ONE_SEED,
    ONLY_A,
    ONLY_B,
    PAGE,
    Interval,
    compare,
    compare_folders,
    printable,
    read_side,
    terminal_text,
)
from sdkd.report.fmt import DASH, fmt_metric, fmt_pct
from sdkd.report.stats import interval_text, welch_change

NS = "navier_stokes"
HOSTILE = ("<script>document.title='PWNED'</script>\"onerror=\"document.title='PWNED'\""
           "'onmouseover='x'</table><img src=x onerror=alert(1)>")
HOSTILE_FOLDER = "<img src=x onerror=alert(1)>\"'&#results"  # no slash: a folder name

# Planted test MSEs per (band setting, seed), A and B. A run absent from a side is not
# in its table; NaN is a run of the table that is not ok (its status in STATUS).
TEACHER = {"A": 0.01, "B": 0.011}
MSE = {
    "A": {"none": {0: 1.0, 1: 1.2, 2: 0.9},      # same seeds both sides: paired
          "dual": {0: 0.5, 1: 0.6, 2: 0.55},     # B lacks seed 2: Welch
          "multi": {0: 1.0, 1: 1.1},             # paired, clearly higher in B
          "low": {0: 0.7},                       # one seed a side
          "fitnet": {0: 0.75, 1: math.nan},      # A's seed 1 missing
          "high": {0: 0.8, 1: 0.85}},            # only in A
    "B": {"none": {0: 0.8, 1: 1.0, 2: 0.75},
          "dual": {0: 0.52, 1: 0.62},
          "multi": {0: 1.5, 1: 1.6},
          "low": {0: 0.6},
          "fitnet": {0: 0.7, 1: 0.72},
          "output": {0: 0.6, 1: math.nan}},      # only in B, seed 1 invalid
}
STATUS = {("A", "fitnet"): "missing", ("B", "output"): "invalid"}
RETRAINED = {"none"}  # B's runs of these settings have other run ids


def _row(side: str, bands: str | None, seed: int, mse: float) -> dict:
    teacher = bands is None
    model = "teacher-tiny" if teacher else "unet-s"
    ok = math.isfinite(mse)
    run_id = f"{side if bands in RETRAINED else ''}{model}-{bands}-{seed}"
    row = {c: "" for c in COLUMNS} | {
        "dataset": NS, "role": "teacher" if teacher else "student", "model": model,
        "family": model.rsplit("-", 1)[0], "size": model.rsplit("-", 1)[1],
        "bands": bands or "", "setting": bands or "", "seed": seed,
        "run_id": run_id if ok else "", "status": "ok" if ok else STATUS[side, bands],
        "note": "" if ok else "planted", "eval_path": f"eval/{bands}/{seed}.json",
    }
    metrics = ({"mse": mse, "mae": 0.8 * math.sqrt(mse), "rmse": math.sqrt(mse),
                "rel_l2": math.sqrt(mse), "ssim": 1 - 0.1 * mse, "psnr": -10 * math.log10(mse)}
               if ok else {})
    return row | {c: metrics.get(c, math.nan) for c in ("mse", "mae", "rmse", "rel_l2",
                                                         "ssim", "psnr")}


def plant(folder: Path, side: str) -> Path:
    """A results folder holding only tables/metrics.csv, with the MSEs of ``side``."""
    rows = [_row(side, None, 0 if side == "A" else 5, TEACHER[side])]
    rows += [_row(side, bands, seed, mse) for bands, seeds in MSE[side].items()
             for seed, mse in seeds.items()]
    table = folder / "tables" / "metrics.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(table, index=False)
    return folder


@pytest.fixture
def trees(tmp_path) -> tuple[Path, Path]:
    return plant(tmp_path / "old", "A"), plant(tmp_path / "new", "B")


def _groups(trees, metric="mse"):
    comparison = compare(read_side(trees[0]), read_side(trees[1]), metric)
    return comparison, {g.key[3] or "teacher": g for g in comparison.groups}


def _rows(comparison) -> dict[str, dict[str, str]]:
    return {row["bands"]: row for row in comparison.frame().to_dict("records")}


def _ok(side: str, bands: str) -> list[float]:
    return [v for v in MSE[side][bands].values() if math.isfinite(v)]


def _pct(log_ratio: float) -> float:
    return 100.0 * math.expm1(log_ratio)


def test_changes_of_the_means(trees):
    comparison, _ = _groups(trees)
    rows = _rows(comparison)
    for bands in ("none", "dual", "multi", "low", "fitnet"):
        a, b = np.mean(_ok("A", bands)), np.mean(_ok("B", bands))
        assert rows[bands]["MSE change"] == fmt_pct(100 * (b - a) / a), bands
        assert rows[bands]["MSE A"].split(" ± ")[0] == fmt_metric("mse", a)
        assert rows[bands]["MSE B"].split(" ± ")[0] == fmt_metric("mse", b)
        ssim = np.mean([1 - 0.1 * v for v in _ok("B", bands)]) - np.mean(
            [1 - 0.1 * v for v in _ok("A", bands)])
        assert rows[bands]["SSIM change"] == f"{ssim:+.4f}"
    sd = np.std([1.0, 1.2, 0.9], ddof=1)
    assert rows["none"]["MSE A"] == f"{fmt_metric('mse', 31 / 30)} ± {sd:.2g}"
    assert rows["teacher"]["MSE change"] == fmt_pct(10.0)
    assert rows["teacher"]["seeds A/B"] == "1/1"
    assert rows["fitnet"]["seeds A/B"] == "1/2"


def test_the_paired_interval_is_scipys(trees):
    """Same ok seeds on both sides: the paired t-interval of the mean log ratio B/A."""
    comparison, groups = _groups(trees)
    for bands, verdict in (("none", "lower MSE"), ("multi", "higher MSE")):
        a, b = np.log(_ok("A", bands)), np.log(_ok("B", bands))
        expected = stats.ttest_rel(b, a).confidence_interval(0.95)
        interval = groups[bands].interval("mse")
        assert isinstance(interval, Interval) and interval.paired
        assert interval.low_pct == pytest.approx(_pct(expected.low), rel=1e-9)
        assert interval.high_pct == pytest.approx(_pct(expected.high), rel=1e-9)
        assert groups[bands].verdict("mse") == verdict
        row = _rows(comparison)[bands]
        assert row["MSE 95 % interval"] == interval_text(_pct(expected.low), _pct(expected.high))
        assert row["test"] == f"paired t, {len(a)} seeds"


def test_other_seeds_take_welchs_interval(trees):
    """B lacks one of A's seeds: Welch's unpaired interval on the log values, all runs."""
    comparison, groups = _groups(trees)
    a, b = np.log(_ok("A", "dual")), np.log(_ok("B", "dual"))
    expected = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    interval = groups["dual"].interval("mse")
    assert isinstance(interval, Interval) and not interval.paired
    assert (interval.low_pct, interval.high_pct) == pytest.approx(
        (_pct(expected.low), _pct(expected.high)), rel=1e-9)
    assert expected.low < 0 < expected.high
    row = _rows(comparison)["dual"]
    assert (row["test"], row["verdict"]) == ("Welch t, 3 + 2 seeds", NO_DIFFERENCE)
    assert row["note"] == "seed 2 only in A"


def test_welch_without_spread_is_the_point():
    assert welch_change([1.0, 1.0], [2.0, 2.0]) == pytest.approx((-50.0, -50.0, -50.0))
    with pytest.raises(ValueError, match="two values a side"):
        welch_change([1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        welch_change([1.0, 0.0], [2.0, 2.0])


def test_one_seed_and_one_side(trees):
    comparison, _ = _groups(trees)
    rows = _rows(comparison)
    for bands in ("teacher", "low", "fitnet"):
        assert rows[bands]["verdict"] == ONE_SEED, bands
        assert rows[bands]["MSE 95 % interval"] == rows[bands]["test"] == DASH
    assert rows["fitnet"]["note"] == "A: seed 1 missing"
    assert (rows["high"]["verdict"], rows["high"]["seeds A/B"]) == (ONLY_A, f"2/{DASH}")
    assert rows["high"]["MSE B"] == rows["high"]["MSE change"] == DASH
    assert (rows["output"]["verdict"], rows["output"]["note"]) == (ONLY_B, "B: seed 1 invalid")
    # every group of either table is a row, A's order first, B's own after
    assert list(rows) == ["teacher", "none", "dual", "multi", "low", "fitnet", "high", "output"]
    statuses = {g.key[3] or "teacher": g.status() for g in comparison.groups}
    assert statuses == {"teacher": "ok", "none": "ok", "dual": "ok", "multi": "ok", "low": "ok",
                        "fitnet": "partial", "high": "partial", "output": "partial"}
    assert comparison.summary() == (
        f"6 groups of runs in both: lower MSE (1), higher MSE (1), {NO_DIFFERENCE} (1), "
        f"{ONE_SEED} (3); 1 {ONLY_A}, 1 {ONLY_B}.")


def test_identity_tells_a_retrained_run(trees):
    _, groups = _groups(trees)
    assert groups["none"].identity() == "changed"
    assert groups["dual"].identity() == "same"
    # matched although its seed changed, which makes it another run
    assert groups["teacher"].identity() == "changed"
    assert groups["high"].identity() == DASH


def test_another_metric(trees):
    comparison, groups = _groups(trees, "mae")
    a, b = np.log(0.8 * np.sqrt(_ok("A", "none"))), np.log(0.8 * np.sqrt(_ok("B", "none")))
    expected = stats.ttest_rel(b, a).confidence_interval(0.95)
    interval = groups["none"].interval("mae")
    assert (interval.low_pct, interval.high_pct) == pytest.approx(
        (_pct(expected.low), _pct(expected.high)), rel=1e-9)
    assert list(comparison.frame().columns)[4:7] == ["MAE A", "MAE B", "MAE change"]
    assert "MAE 95 % interval" in comparison.frame().columns
    assert groups["multi"].verdict("mae") == "higher MAE"
    with pytest.raises(SdkdError, match="cannot compare on 'ssim'"):
        _groups(trees, "ssim")
    choices = next(a for a in build_parser()._subparsers._group_actions[0].choices["compare"]
                   ._actions if a.dest == "metric").choices
    assert tuple(choices) == INTERVAL_METRICS


def test_terminal_table_is_aligned(trees):
    text = terminal_text(compare(read_side(trees[0], "old"), read_side(trees[1]), "mse"))
    lines = text.splitlines()
    assert lines[0] == f"A: old ({trees[0] / 'tables' / 'metrics.csv'}: 14 runs, 13 ok)"
    assert lines[1].startswith(f"B: {trees[1]} (")
    header, rule, *body = lines[3:3 + 2 + 8]
    assert set(rule) == {"-", " "}
    at = header.index("verdict")
    expected = [ONE_SEED, "lower MSE", NO_DIFFERENCE, "higher MSE", ONE_SEED,
                ONE_SEED, ONLY_A, ONLY_B]
    assert [line[at:].split("  ")[0] for line in body] == expected
    assert "MAE A" not in header and "MAE change" in header  # the terminal's narrower
    right = header.index("MSE change") + len("MSE change")  # numbers right-aligned
    assert all(line[right - 1] != " " for line in body)
    assert "Welch" in lines[-1] and "paired" in lines[-1]


def test_control_characters_are_escaped_in_the_terminal(trees):
    text = terminal_text(compare(read_side(trees[0], "\x1b[31mred\u202e"), read_side(trees[1])))
    assert "\x1b" not in text and "\u202e" not in text
    assert text.splitlines()[0].startswith("A: \\x1b[31mred\\u202e (")
    assert printable("dual  ±−") == "dual  ±−"


def test_the_page_escapes_labels_and_folders(trees, tmp_path):
    old = tmp_path / HOSTILE_FOLDER
    shutil.copytree(trees[0], old)
    (old / "report.html").write_text("<p>A's report</p>")
    text, page_path = compare_folders(old, trees[1], label_a=HOSTILE,
                                      out=tmp_path / "cmp" / "c.html")
    assert page_path == tmp_path / "cmp" / "c.html" and HOSTILE in text
    html = page_path.read_text(encoding="utf-8")
    page = Page(html)
    assert page.errors == []
    assert {tag for tag, _ in page.tags}.isdisjoint({"script", "img", "iframe", "link", "object"})
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    sides = page.rows("T_sides")
    assert sides[0]["label"] == HOSTILE and sides[0]["folder"] == str(old)
    assert HOSTILE not in html and HOSTILE_FOLDER not in html and "<script" not in html
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert len(links) == 1 and sides[1]["report"] == DASH  # B has no report.html
    assert not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", links[0])  # relative, no scheme
    assert (page_path.parent / unquote(links[0])).resolve() == (old / "report.html").resolve()
    rows = page.rows("T_compare")
    assert [r["verdict"] for r in rows][:4] == [ONE_SEED, "lower MSE", NO_DIFFERENCE,
                                                "higher MSE"]
    assert "MAE A" in rows[0] and "SSIM B" in rows[0]
    assert not list(page_path.parent.glob("*.part"))


@pytest.mark.workflow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_the_page_runs_nothing_in_a_browser(trees, tmp_path):
    """The DOM after load: the title is the page's (a planted script would rename it), no
    script element, nothing logged (a planted image would fail to load)."""
    old = tmp_path / HOSTILE_FOLDER
    shutil.copytree(trees[0], old)
    _, page = compare_folders(old, trees[1], label_a=HOSTILE, label_b=HOSTILE)
    result = chromium(tmp_path, "compare", "--dump-dom", "--window-size=1280,1000",
                      page.resolve().as_uri())
    assert console_problems(result.stderr) == []
    title = result.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith("Comparison: &lt;script&gt;")
    dom = Page(result.stdout)
    assert not [tag for tag, _ in dom.tags if tag in ("script", "img")]


def test_real_trees(tmp_path):
    """Two trees made the real way (evaluation files → aggregate), other noise per seed."""
    config = tiny_config()
    tables = []
    for name, seed in (("a", 0), ("b", 1)):
        results = tmp_path / name
        make_fake_results(results, config, seed=seed, missing=[f"{NS}/unet-m/low/*"])
        tables.append(aggregate(config, results / "eval", results / "tables" / "metrics.csv",
                                results / "tables" / "summary.json"))
    comparison = compare(read_side(tmp_path / "a"), read_side(tmp_path / "b"))
    n_groups = len(tables[0].assign(bands=tables[0]["bands"].fillna("")).groupby(
        ["dataset", "model", "bands"]))
    assert len(comparison.groups) == n_groups
    rows = comparison.frame().to_dict("records")
    assert {r["identity"] for r in rows} == {"same", DASH}  # the same config: the same runs
    assert all(r["verdict"] not in (ONLY_A, ONLY_B) for r in rows)
    low = next(r for r in rows if (r["dataset"], r["model"], r["bands"]) == (NS, "unet-m", "low"))
    assert (low["verdict"], low["note"]) == ("no ok run in A",
                                             "A: seed 0 missing; B: seed 0 missing")
    paired = [r for r in rows if r["test"].startswith("paired t, 2 seeds")]
    assert len(paired) == 2 * 2 * 2  # none and dual, 2 students, 2 datasets


# ---- the command line -------------------------------------------------------------------


def test_cli_writes_the_page_beside_bs_report(trees, capsys):
    assert main(["compare", str(trees[0]), str(trees[1]), "--label-b", "new"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("B: new (")
    assert "lower MSE" in out
    page = trees[1] / PAGE
    assert page.is_file() and "Comparison:" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("case, fragments", [
    ("no folder", ["does-not-exist: no such folder", "tables/metrics.csv"]),
    ("a file", ["not a folder"]),
    ("no table", ["metrics table not found", "run `sdkd aggregate` first"]),
    ("bad table", ["line 2: unknown status 'finished'"]),
    ("nothing in common", ["have no run in common", "nothing to compare"]),
])
def test_bad_input_is_one_line(trees, tmp_path, sdkd_cli, case, fragments):
    a, b = trees
    (b / PAGE).write_text("the previous page")
    if case == "no folder":
        a = tmp_path / "does-not-exist"
    elif case == "a file":
        a = tmp_path / "file"
        a.write_text("x")
    elif case == "no table":
        (a / "tables" / "metrics.csv").unlink()
    elif case == "bad table":
        table = pd.read_csv(a / "tables" / "metrics.csv")
        table.loc[0, "status"] = "finished"
        table.to_csv(a / "tables" / "metrics.csv", index=False)
    else:
        table = pd.read_csv(a / "tables" / "metrics.csv")
        table["dataset"] = "other"
        table.to_csv(a / "tables" / "metrics.csv", index=False)
    status, err = sdkd_cli("compare", a, b)
    assert_clean_failure(status, err, *fragments)
    assert (b / PAGE).read_text() == "the previous page"


def test_a_bad_metric_is_a_usage_error(trees, sdkd_cli):
    status, err = sdkd_cli("compare", *trees, "--metric", "ssim")
    assert_clean_failure(status, err, "compare: argument --metric: invalid choice: 'ssim'")
