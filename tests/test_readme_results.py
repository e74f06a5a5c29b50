"""`sdkd readme-results`: the README's Results block equals the data it is written from."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import yaml
from fake_results import make_fake_results, tiny_config

from sdkd.errors import SdkdError
from sdkd.report.aggregate import aggregate, read_metrics
from sdkd.report.figures import make_figures
from sdkd.report.fmt import fmt_metric, fmt_pct
from sdkd.report.readme import END, PAPER_CLAIM, START, stage_times, update_readme
from sdkd.report.stats import paired_change

BENCHMARKS = {  # rule path → (job seconds, end time in seconds after t0)
    "acquire/navier_stokes/simulation.h5.tsv": (30.0, 30.0),
    "preprocess/navier_stokes.tsv": (5.0, 40.0),
    "train_teacher/navier_stokes/teacher-tiny.tsv": (100.0, 140.0),
    "distill/navier_stokes/unet-s/none/seed-0.tsv": (50.0, 190.0),
    "distill/navier_stokes/unet-s/dual/seed-0.tsv": (60.0, 200.0),
    "evaluate/navier_stokes/unet-s/dual/seed-0.tsv": (10.0, 210.0),
    "report.tsv": (5.0, 220.0),
}


def _write_benchmarks(root, t0=1.7e9):
    for name, (seconds, end) in BENCHMARKS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t100\n")
        os.utime(path, (t0 + end, t0 + end))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    config = tiny_config()
    results = tmp_path_factory.mktemp("readme") / "results"
    make_fake_results(results, config, missing=["navier_stokes/unet-m/low/*"])
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    make_figures(config, tables / "metrics.csv", results / "eval", results, results / "figures")
    _write_benchmarks(results / "benchmarks")
    return config, results


def _config_file(config, directory):
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _readme(path):
    path.write_text(f"# Title\n\n## Results\n\n{START}\nold numbers\n{END}\n\n## After\ntext\n")
    return path


def _parse_tables(text, which=0):
    """{dataset: DataFrame} of the ``which``-th markdown table under each **dataset**
    heading (0: the headline table, 1: the study's questions)."""
    tables, dataset, lines, seen = {}, None, [], 0
    for line in [*text.splitlines(), ""]:
        if line.startswith("**") and line.endswith("**"):
            dataset, seen = line.strip("*"), 0
        elif line.startswith("|"):
            lines.append([c.strip() for c in line.strip("|").split("|")])
        elif lines:
            if seen == which:
                columns = [c.lower().replace(" ", "_") for c in lines[0]]
                tables[dataset] = pd.DataFrame(lines[2:], columns=columns)
            lines, seen = [], seen + 1
    return tables


def test_headline_table_equals_the_metrics_table(tree, tmp_path, sdkd_cli):
    config, results = tree
    readme = _readme(tmp_path / "README.md")
    args = ("readme-results", "--config", _config_file(config, tmp_path), "--results", results,
            "--readme", readme, "--date", "2026-11-28")
    assert sdkd_cli(*args) == (0, "")
    text = readme.read_text()
    tables = _parse_tables(text)
    metrics = read_metrics(results / "tables" / "metrics.csv")
    ok = metrics[metrics["status"] == "ok"]
    assert set(tables) == set(config["datasets"])
    for dataset, table in tables.items():
        mine = ok[ok["dataset"] == dataset]
        teacher = table[table["bands"] == "teacher"].iloc[0]
        assert teacher["mse"] == fmt_metric("mse", mine[mine["role"] == "teacher"]["mse"].iloc[0])
        assert len(table) == 1 + 2 * 6  # teacher + 2 students × 6 settings
        for row in table[table["bands"] != "teacher"].itertuples():
            runs = mine[(mine["model"] == row.model) & (mine["bands"] == row.bands)]
            if runs.empty:
                assert row.mse == "—" and row.seeds == "0"
                continue
            assert row.seeds == str(len(runs))
            mse = row.mse.split(" ± ")
            assert mse[0] == fmt_metric("mse", runs["mse"].mean())
            assert (len(mse) == 2) == (len(runs) > 1)
            if len(runs) > 1:
                assert mse[1] == f"{runs['mse'].std(ddof=1):.2g}"
            assert row.ssim == fmt_metric("ssim", runs["ssim"].mean())
            plain = mine[(mine["model"] == row.model) & (mine["setting"] == "none")]
            if row.bands == "none":
                assert row.mse_vs_none == "—"
                continue
            pairs = runs.merge(plain, on="seed", suffixes=("", "_none"))
            change = paired_change(pairs["mse"], pairs["mse_none"])
            expected = fmt_pct(change.change_pct)
            if change.has_interval:
                expected += f" [{fmt_pct(change.low_pct)}, {fmt_pct(change.high_pct)}]"
            assert row.mse_vs_none == expected
    # the study's questions tiny_config can ask (dual vs output), under the headline table
    summary = json.loads((results / "tables" / "summary.json").read_text())
    questions = _parse_tables(text, which=1)
    assert set(questions) == set(config["datasets"])
    for dataset, table in questions.items():
        asked = [c for block in summary["datasets"][dataset]["students"].values()
                 for c in block.get("comparisons", ())]
        assert list(table["question"]) == [f"{c['treated']} vs {c['baseline']}" for c in asked]
        assert list(table["mse_change"]) == [fmt_pct(c["change_pct"]) for c in asked]
    assert f"For comparison, {PAPER_CLAIM}." in text
    assert "2026-11-28" in text and "no GPU" in text
    assert text.startswith("# Title\n\n## Results\n\n" + START)
    assert text.endswith(END + "\n\n## After\ntext\n")
    figure = next(line for line in text.splitlines() if line.startswith("!["))
    shown = tmp_path / figure.split("(")[1].rstrip(")")
    assert shown.read_bytes() == (results / "figures" / shown.name).read_bytes()
    # the fake benchmark files: 260 s of jobs between t0 and t0 + 220 s
    assert "Pipeline wall time 3.7 min" in text
    assert "data 13 %, teacher 38 %, distillation 42 %, evaluation 4 %, report 2 %" in text
    before = text
    assert sdkd_cli(*args)[0] == 0
    assert readme.read_text() == before  # idempotent


def test_stage_times(tmp_path):
    _write_benchmarks(tmp_path)
    stages, wall = stage_times(tmp_path)
    assert list(stages["stage"]) == ["data", "teacher", "distillation", "evaluation", "report"]
    assert list(stages["jobs"]) == [2, 1, 2, 1, 1]
    assert stages["seconds"].sum() == pytest.approx(260.0)
    assert stages["share"].sum() == pytest.approx(1.0)
    assert wall == pytest.approx(220.0)


def test_bad_input(tree, tmp_path, sdkd_cli):
    config, results = tree
    with pytest.raises(SdkdError, match="no results block"):
        update_readme(_write(tmp_path / "R.md", "# no markers\n"), "x")
    with pytest.raises(SdkdError, match="no Snakemake benchmark files"):
        stage_times(tmp_path)
    readme = _readme(tmp_path / "README.md")
    before = readme.read_text()
    for args, message in (
        (["--results", str(tmp_path / "nowhere")], "summary not found"),
        (["--results", str(results), "--figure", "nope.png"], "nope.png: figure not found"),
    ):
        status, err = sdkd_cli("readme-results", "--config", _config_file(config, tmp_path),
                               "--readme", readme, *args)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert readme.read_text() == before


def _write(path, text):
    path.write_text(text)
    return path
