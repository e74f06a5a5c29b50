"""sdkd.report.html: the report page is complete, self-contained and tells the truth.

One fake results tree (aggregate + figures + report, the slow part) serves all tests:
one student, both datasets, some runs missing and one invalid. navier_stokes lacks
unet-s/low and the second dual seed and has an unreadable `output` file;
diffusion_reaction lacks the plain student, so its verdict cannot measure a gain.
The page is parsed with the stdlib HTML parser; when /usr/bin/chromium exists it is also
opened headless (screenshot, DOM after load) to check that every image decodes and that
nothing is fetched.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import fake_results
import h5py
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from fake_results import (
    fake_sha256,
    make_fake_results,
    plant_identity,
    subset_config,
    tiny_config,
    write_data_file,
)
from helpers import leftovers
from htmlpage import CHROMIUM, Page, assert_summary_matches, chromium, console_problems

from sdkd.config import validate
from sdkd.errors import SdkdError
from sdkd.evaluate.format import band_labels
from sdkd.jsonfile import write_json
from sdkd.plan import run_identity, tuning_runs, tuning_spec
from sdkd.report.aggregate import aggregate, read_metrics
from sdkd.report.figures import MANIFEST, make_figures
from sdkd.report.fmt import fmt_metric, fmt_pct
from sdkd.report.html import render_report
from sdkd.report.powerlaw import spectral_slope
from sdkd.report.provenance import git_commit, package_versions
from sdkd.report.stats import paired_change
from sdkd.tuning import choose

NS, DR = "navier_stokes", "diffusion_reaction"
STUDENT = "unet-s"
CONFIG_TEXT = "# the config as the user wrote it\nseed: 0  # master seed\n"


def small_config() -> dict:
    """tiny_config with one student and four band settings (fewer figures: faster)."""
    config = copy.deepcopy(tiny_config())
    config["models"]["students"] = [STUDENT]
    settings = config["distill"]["settings"]
    config["distill"]["settings"] = {k: settings[k] for k in ("none", "low", "dual", "output")}
    return validate(config, source="small_config")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = small_config()
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    make_fake_results(results, config, missing=[
        f"{NS}/{STUDENT}/low/*",
        f"{NS}/{STUDENT}/dual/seed-1.json",
        f"{DR}/{STUDENT}/none/*",
    ])
    (results / "eval" / NS / STUDENT / "output" / "seed-0.json").write_text("{not json")
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    make_figures(config, tables / "metrics.csv", results / "eval", results, results / "figures")
    data = [write_data_file(root, config, name) for name in config["datasets"]]
    inputs = {"metrics_csv": tables / "metrics.csv", "summary_json": tables / "summary.json",
              "figures_dir": results / "figures", "data_files": data}
    out = render_report(config, **inputs, out=results / "report.html", config_text=CONFIG_TEXT,
                        project_dir=root)
    text = out.read_text(encoding="utf-8")
    return SimpleNamespace(
        config=config, root=root, results=results, inputs=inputs, out=out, text=text,
        page=Page(text), table=read_metrics(tables / "metrics.csv"), data=data,
        manifest=json.loads((results / "figures" / MANIFEST).read_text()),
    )


def test_page_parses_and_has_every_section(built):
    page = built.page
    assert page.errors == []
    assert built.text.startswith("<!DOCTYPE html>")
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    sections = [attrs.get("id") for tag, attrs in page.tags if tag == "section"]
    assert sections == ["summary", *[f"dataset-{d}" for d in built.config["datasets"]], "setup"]
    for tag, attrs in page.tags:
        if tag == "a" and attrs.get("href", "").startswith("#"):
            assert attrs["href"][1:] in page.ids, attrs["href"]
    assert leftovers(built.out.parent).count("report.html") == 1
    assert not [p for p in leftovers(built.out.parent) if p.endswith(".part")]


def test_every_figure_is_embedded_with_its_caption(built):
    page = built.page
    by_file = {img.get("data-file"): img for img in page.images}
    assert len(page.images) == len(built.manifest)
    for entry in built.manifest:
        img = by_file[entry["file"]]
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), entry["file"]
        data = base64.b64decode(img["src"][len(prefix):], validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data == (built.results / "figures" / entry["file"]).read_bytes()
        assert img["alt"] == entry["title"]
        section = "summary" if entry["dataset"] is None else f"dataset-{entry['dataset']}"
        assert img["section"] == section, entry["file"]
        assert any(where == section and entry["caption"] in caption and entry["title"] in caption
                   for where, caption in page.captions), entry["file"]


def test_nothing_external(built):
    page = built.page
    for tag, name, value in page.urls:
        assert "http://" not in value and "https://" not in value, (tag, name)
        assert not value.startswith("//"), (tag, name)
        if tag == "img":
            assert value.startswith("data:image/png;base64,")
        if tag == "a" and name == "href":  # in-page, or the compare page beside it
            assert value.startswith("#") or value == "compare.html", value
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"link", "iframe", "object", "embed", "base", "script"}
    css = "".join(page.styles)
    assert css.strip() and "@import" not in css
    assert "url(" not in css.replace("url(data:", "")
    assert "@font-face" not in css


def test_the_page_tells_how_to_compare_it(built):
    """Linked from the report: a static hint, the report rule's inputs stay as declared."""
    assert "compare" in built.page.ids
    assert ("a", {"href": "compare.html"}) in built.page.tags
    assert f"sdkd compare OTHER {built.results}" in " ".join(built.text.split())


def test_missing_and_invalid_runs_are_marked(built):
    page, table = built.page, built.table
    bad = table[table["status"] != "ok"]
    assert set(bad["status"]) == {"missing", "invalid"}
    for dataset in built.config["datasets"]:
        tid = f"T_metrics-{dataset}"
        assert page.tables[tid]["section"] == f"dataset-{dataset}"
        rows = page.rows(tid)
        assert len(rows) == int((table["dataset"] == dataset).sum())
        for run in bad[bad["dataset"] == dataset].to_dict("records"):
            bands = "teacher" if run["role"] == "teacher" else run["bands"]
            found = [(i, r) for i, r in enumerate(rows) if r["model"] == run["model"]
                     and r["bands"] == bands and r["seed"] == str(run["seed"])]
            assert len(found) == 1, run
            i, row = found[0]
            assert row["status"] == run["status"]
            assert row["MSE"] == "—"
            assert run["note"] and row["note"] == " ".join(run["note"].split())
            assert f"row-{run['status']}" in page.tables[tid]["classes"][i]
    counts = table["status"].value_counts()
    assert (f"{counts['ok']} of {len(table)} expected runs are ok: {counts['missing']} missing, "
            f"{counts['invalid']} invalid") in page.text_of("summary")


def _means(rows: pd.DataFrame) -> dict[str, float]:
    return {m: float(rows[m].mean()) for m in ("mse", "mae", "ssim")}


def test_headline_numbers_equal_the_metrics_table(built):
    page, table = built.page, built.table
    assert_summary_matches(page, table, built.config)
    ok = table[table["status"] == "ok"]
    for dataset in built.config["datasets"]:
        tid = f"T_summary-{dataset}"
        assert page.tables[tid]["section"] == "summary"
        rows = {(r["model"], r["trained as"]): r for r in page.rows(tid)}
        mine = ok[ok["dataset"] == dataset]
        teacher = _means(mine[mine["role"] == "teacher"])
        row = rows[("teacher-tiny", "teacher")]
        for metric, column in (("mse", "MSE"), ("mae", "MAE"), ("ssim", "SSIM")):
            assert row[column] == fmt_metric(metric, teacher[metric])
        students = mine[mine["model"] == STUDENT]
        plain_rows = students[students["bands"] == "none"]
        plain = _means(plain_rows) if len(plain_rows) else None
        row = rows[(STUDENT, "none (plain)")]
        if plain is None:
            assert row["MSE"] == "missing" and row["seeds ok"] == "0 of 2"
        else:
            assert row["MSE"].split(" ± ")[0] == fmt_metric("mse", plain["mse"])
            assert row["MAE"].split(" ± ")[0] == fmt_metric("mae", plain["mae"])
            assert row["SSIM"] == fmt_metric("ssim", plain["ssim"])
            if len(plain_rows) > 1:
                assert row["MSE"].split(" ± ")[1] == f"{plain_rows['mse'].std(ddof=1):.2g}"
        distilled = students[students["setting"] != "none"]
        means = distilled.groupby("bands")["mse"].mean()
        best = str(means.idxmin())
        stats = _means(distilled[distilled["bands"] == best])
        row = rows[(STUDENT, f"{best} (best)")]
        assert row["MSE"].split(" ± ")[0] == fmt_metric("mse", stats["mse"])
        assert row["MAE"].split(" ± ")[0] == fmt_metric("mae", stats["mae"])
        assert row["SSIM"] == fmt_metric("ssim", stats["ssim"])
        n_ok = int((distilled["bands"] == best).sum())
        expected = int(((table["dataset"] == dataset) & (table["bands"] == best)).sum())
        assert row["seeds ok"] == f"{n_ok} of {expected}"
        verdicts = dict((text.split(":")[0], (tone, text))
                        for tone, text in page.verdicts[dataset])
        tone, verdict = verdicts[STUDENT]
        if plain is None:
            assert row["MSE vs plain"] == "—"
            assert tone == "neutral" and "baseline (none) is missing" in verdict
            continue
        change = 100 * (stats["mse"] - plain["mse"]) / plain["mse"]
        assert row["MSE vs plain"].startswith(fmt_pct(change))
        mae_change = 100 * (stats["mae"] - plain["mae"]) / plain["mae"]
        assert row["MAE vs plain"].startswith(fmt_pct(mae_change))
        gap = (plain["mse"] - stats["mse"]) / (plain["mse"] - teacher["mse"])
        assert row["gap closed"] == f"{100 * gap:.0f} %"
        assert f"{best} lowers the test MSE by {-change:.1f} % vs the plain {STUDENT}" in verdict
        pairs = [students[students["bands"] == key].set_index("seed")["mse"]
                 for key in (best, "none")]
        change = paired_change(*(p[pairs[0].index.intersection(p.index)] for p in pairs))
        assert tone == ("good" if change.significant else "neutral")
        if change.has_interval:
            assert (f"95 % CI {fmt_pct(change.low_pct)} to {fmt_pct(change.high_pct)}"
                    in verdict)
        lead = 100 * (stats["mse"] - teacher["mse"]) / stats["mse"]
        assert f"the teacher's MSE is still {lead:.1f} % lower" in verdict
        assert "Cost:" in verdict and "Where in the spectrum" in verdict


def test_efficiency_and_band_tables(built):
    page = built.page
    for dataset in built.config["datasets"]:
        rows = page.rows(f"T_efficiency-{dataset}")
        keys = [(r["model"], r["bands"]) for r in rows]
        assert keys == [("teacher-tiny", "teacher")] + [
            (STUDENT, key) for key in built.config["distill"]["settings"]]
        for row in rows:
            if row["runs ok"].startswith("0 "):
                assert row["parameters"] == "—"
            else:
                assert row["device"] == "cpu (2 threads)" and row["parameters"] != "—"
        bands = page.rows(f"T_bands-{dataset}")
        cutoffs = built.config["evaluate"]["band_cutoffs"]
        assert [r["band (cycles / domain)"] for r in bands] == band_labels(cutoffs)
    # the fake puts most of the plain student's error at high k: the change there is largest
    rows = page.rows(f"T_bands-{NS}")
    changes = [float(r["change"].split()[0]) for r in rows]
    assert all(c < 0 for c in changes) and changes[-1] == min(changes)


def test_setup_lists_provenance_versions_and_config(built):
    page = built.page
    setup = page.text_of("setup")
    for path in built.data:
        with h5py.File(path) as f:
            assert f.attrs["raw_sha256"] in setup
            assert f.attrs["source"] in setup
    versions = package_versions()
    for name in ("sdkd", "torch", "snakemake", "dvc", "python"):
        assert versions[name] in setup
    assert "git commit unknown" in setup  # project_dir is not a git work tree
    n_ok = int((built.table["status"] == "ok").sum())
    assert f"cpu (2 threads): inference in {n_ok} runs, training in {n_ok} runs" in setup
    pres = [t for t in page.section_text["setup"] if "master seed" in t]
    assert pres and CONFIG_TEXT.strip() in pres[0]
    assert "raw file SHA-256" in setup
    assert package_versions(["surely-not-an-installed-package"])[
        "surely-not-an-installed-package"] == "not installed"


def test_git_commit(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    here = git_commit(Path(__file__).parent)
    assert here == "unknown" or len(here.split()[0]) == 40


def rerender(built, eval_root: Path, tmp_path: Path) -> Page:
    """The page of an edited copy ``eval_root`` of the built evaluation files (aggregated
    again; the built figures, no data files), checked to parse."""
    tables = tmp_path / "tables"
    aggregate(built.config, eval_root, tables / "metrics.csv", tables / "summary.json")
    out = render_report(built.config, metrics_csv=tables / "metrics.csv",
                        summary_json=tables / "summary.json",
                        figures_dir=built.inputs["figures_dir"], data_files=[],
                        out=tmp_path / "report.html")
    page = Page(out.read_text(encoding="utf-8"))
    assert page.errors == []
    return page


def test_runs_that_do_not_belong_together_are_warned_about(built, tmp_path):
    """Planted: a student of another config (with markup in the change, which must stay
    text), one distilled from another teacher, one trained on other data. The page gets
    a warning section before the summary listing exactly those; the consistent page has
    none (test_page_parses_and_has_every_section)."""
    eval_root = tmp_path / "eval"
    shutil.copytree(built.results / "eval", eval_root)
    plants = {  # run → (its evaluation file, a change of its identity)
        f"{NS}/{STUDENT}/none/seed-1": (
            f"{NS}/{STUDENT}/none/seed-1.json",
            lambda i: i["spec"].update(model="<b>unet-x</b>")),
        f"{NS}/{STUDENT}/dual/seed-0": (
            f"{NS}/{STUDENT}/dual/seed-0.json",
            lambda i: i["inputs"].update(teacher=fake_sha256("t2"))),
        f"{DR}/teacher-tiny": (
            f"{DR}/teacher/teacher-tiny.json",
            lambda i: i["inputs"].update(data=fake_sha256("data", "v2"))),
    }
    ids = {label: plant_identity(eval_root / name, change)
           for label, (name, change) in plants.items()}
    page = rerender(built, eval_root, tmp_path)
    sections = [attrs.get("id") for tag, attrs in page.tags if tag == "section"]
    assert sections[:2] == ["consistency", "summary"]
    assert ("a", {"href": "#consistency"}) in page.tags
    text = page.text_of("consistency")
    for label, run in ids.items():
        assert label in text and f"run id {run}" in text, label
    assert text.count("(run id ") == len(plants)
    assert ('trained with another config (run → this config): spec.model: "<b>unet-x</b>" '
            '→ "unet-s"') in text
    assert not [tag for tag, _ in page.tags if tag == "b"]  # escaped, not markup
    assert "distilled from another teacher" in text and "trained on other data" in text
    # the affected runs still count: the metrics tables list them as ok
    rows = page.rows(f"T_metrics-{NS}")
    assert all(r["status"] == "ok" for r in rows if r["bands"] == "none")


@pytest.mark.parametrize(("dual", "tone", "words"), [
    ((0.50, 0.51), "good", "dual lowers the test MSE by"),
    ((0.40, 1.30), "neutral", "so no significant difference"),
    ((2.00, 2.10), "bad", "distillation does not help: the best setting, dual, raises"),
])
def test_the_verdict_follows_the_interval(built, tmp_path, dual, tone, words):
    """A planted change of dual against the plain student (the best setting: every
    other is 3 × worse than the plain student) that holds for both seeds is a finding,
    a gain or an honest loss; one whose seeds disagree is no significant difference."""
    make_fake_results(tmp_path / "all", built.config)  # every run, dual's two seeds too
    eval_root = tmp_path / "all" / "eval"
    root = eval_root / NS / STUDENT
    for path in root.glob("*/seed-*.json"):
        doc = json.loads(path.read_text())
        seed = int(path.stem.removeprefix("seed-"))
        plain = 0.06 * (1 + 0.01 * seed)
        setting = path.parent.name
        doc["metrics"]["mse"] = plain * (dual[seed] if setting == "dual" else
                                         1.0 if setting == "none" else 3.0)
        path.write_text(json.dumps(doc))
    page = rerender(built, eval_root, tmp_path)
    (got, text), = [v for v in page.verdicts[NS] if v[1].startswith(STUDENT)]
    change = paired_change([0.06 * d * (1 + 0.01 * s) for s, d in enumerate(dual)],
                           [0.06 * (1 + 0.01 * s) for s in range(2)])
    assert got == tone and words in text
    assert f"95 % CI {fmt_pct(change.low_pct)} to {fmt_pct(change.high_pct)}" in text
    assert "No data file was given" in page.text_of("setup")
    # The study's question this config can ask: dual vs output (one seed of output).
    (row,) = page.rows(f"T_comparisons-{NS}")
    assert (row["treated"], row["vs"], row["seeds paired"]) == ("dual", "output", "1")
    assert row["MSE change (paired)"] == fmt_pct(100 * (dual[0] / 3.0 - 1))
    assert row["95 % CI"] == "—" and row["verdict"] == "one seed: suggestive at most"


def test_a_teacher_no_better_than_the_student_is_flagged(built, tmp_path):
    eval_root = tmp_path / "eval"
    shutil.copytree(built.results / "eval", eval_root)
    path = next((eval_root / NS / "teacher").glob("*.json"))
    doc = json.loads(path.read_text())
    doc["metrics"]["mse"] = 10.0
    path.write_text(json.dumps(doc))
    page = rerender(built, eval_root, tmp_path)
    (tone, text), = [v for v in page.verdicts[NS] if v[1].startswith(STUDENT)]
    assert tone == "neutral"
    assert "the teacher is no better than the plain student" in text
    assert "distillation cannot help here" in text


@pytest.fixture(scope="module")
def subset_built(tmp_path_factory):
    """Every run ok; navier_stokes runs unet-s and unet-m with none, low and dual;
    diffusion_reaction runs unet-m with none and dual only."""
    config = copy.deepcopy(tiny_config())
    settings = config["distill"]["settings"]
    config["distill"]["settings"] = {k: settings[k] for k in ("none", "low", "dual")}
    config = subset_config(config)
    results = tmp_path_factory.mktemp("subset") / "results"
    make_fake_results(results, config)
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    make_figures(config, tables / "metrics.csv", results / "eval", results, results / "figures")
    out = render_report(config, metrics_csv=tables / "metrics.csv",
                        summary_json=tables / "summary.json", figures_dir=results / "figures",
                        data_files=[], out=results / "report.html")
    return SimpleNamespace(config=config, page=Page(out.read_text(encoding="utf-8")),
                           table=read_metrics(tables / "metrics.csv"),
                           manifest=json.loads((results / "figures" / MANIFEST).read_text()))


def test_a_subset_lists_only_its_own_runs(subset_built):
    page, table = subset_built.page, subset_built.table
    assert page.errors == []
    dr = [(r["model"], r["bands"], r["seed"]) for r in page.rows(f"T_metrics-{DR}")]
    assert dr == [("teacher-tiny", "teacher", "0"), ("unet-m", "none", "0"),
                  ("unet-m", "none", "1"), ("unet-m", "dual", "0"), ("unet-m", "dual", "1")]
    assert len(page.rows(f"T_metrics-{NS}")) == int((table["dataset"] == NS).sum()) == 11
    summary = [(r["model"], r["trained as"]) for r in page.rows(f"T_summary-{DR}")]
    assert summary == [("teacher-tiny", "teacher"), ("unet-m", "none (plain)"),
                       ("unet-m", "dual (best)")]
    assert all(r["MSE"] not in ("missing", "—") for r in page.rows(f"T_summary-{DR}"))
    efficiency = [(r["model"], r["bands"]) for r in page.rows(f"T_efficiency-{DR}")]
    assert efficiency == [("teacher-tiny", "teacher"), ("unet-m", "none"), ("unet-m", "dual")]
    assert {c for c in page.tables[f"T_bands-{DR}"]["head"][0] if c} == {"teacher-tiny", "unet-m"}
    students = [text.split(":")[0] for _, text in page.verdicts[DR]]
    assert students == ["unet-m"]
    assert all(tone == "good" for tone, _ in page.verdicts[DR])
    assert "Students: unet-m; band settings: none, dual." in page.text_of(f"dataset-{DR}")
    assert "Students: unet-s, unet-m; band settings: none, low, dual." in page.text_of(
        f"dataset-{NS}")
    runs_it = {r["bands"]: r["datasets"] for r in page.rows("T_band-settings")}
    assert runs_it == {"none": f"{NS}, {DR}", "low": NS, "dual": f"{NS}, {DR}"}
    # the dataset's figures: one sample figure per student it runs, none a placeholder
    files = [e["file"] for e in subset_built.manifest if e["dataset"] == DR]
    assert [f for f in files if f.startswith("samples_")] == [f"samples_{DR}_unet-m.png"]
    assert not [e["file"] for e in subset_built.manifest if e["placeholder"]]
    shown = {img["data-file"] for img in page.images if img["section"] == f"dataset-{DR}"}
    assert shown == set(files)


@pytest.mark.parametrize("case", ["metrics", "summary", "manifest", "figure", "summary-json",
                                  "data"])
def test_bad_input_names_the_file(built, tmp_path, case):
    inputs = dict(built.inputs)
    figures = tmp_path / "figures"
    shutil.copytree(inputs["figures_dir"], figures)
    inputs["figures_dir"] = figures
    if case == "metrics":
        inputs["metrics_csv"] = bad = tmp_path / "metrics.csv"
    elif case == "summary":
        inputs["summary_json"] = bad = tmp_path / "summary.json"
    elif case == "summary-json":
        inputs["summary_json"] = bad = tmp_path / "summary.json"
        bad.write_text('{"schema_version": 1, "datasets": ')
    elif case == "manifest":
        bad = figures / MANIFEST
        bad.unlink()
    elif case == "figure":
        bad = figures / built.manifest[3]["file"]
        bad.unlink()
    else:
        inputs["data_files"] = [*inputs["data_files"], tmp_path / "absent.h5"]
        bad = tmp_path / "absent.h5"
    out = tmp_path / "report.html"
    out.write_text("the previous report")
    with pytest.raises(SdkdError) as info:
        render_report(built.config, **inputs, out=out)
    assert str(bad) in str(info.value)
    assert out.read_text() == "the previous report"
    assert not list(tmp_path.glob(".report.html.*"))


@pytest.mark.workflow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                                                   "chromium)")
def test_chromium_renders_the_page(built, tmp_path):
    out = render_report(built.config, **built.inputs, out=tmp_path / "report.html",
                        config_text=CONFIG_TEXT, debug_checks=True)
    url = out.resolve().as_uri()
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1280,2000",
                       url)
    assert console_problems(result.stderr) == []
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, 1280)
    assert shot.stat().st_size > 50_000
    assert float(image[..., :3].std()) > 0.05, "the screenshot is blank"
    n = len(built.manifest)
    for width in (1280, 420):  # wide: every image decodes; narrow: tables scroll, page does not
        result = chromium(tmp_path, f"dom-{width}", "--dump-dom",
                           f"--window-size={width},2000", url)
        assert console_problems(result.stderr) == []
        body = next(attrs for tag, attrs in Page(result.stdout).tags if tag == "body")
        assert body.get("data-images-ok") == f"{n}/{n}"
        assert body.get("data-external-loads") == "0"
        assert body.get("data-page-overflow") == "false", width


def test_the_tuning_search_is_shown_with_its_choice(built, tmp_path):
    """A config whose dual is tuned: the page shows each grid point's validation MSE and
    marks the lowest as chosen; the band-settings table names what was tuned; a tuned
    config cannot be aggregated without its tuning files."""
    config = copy.deepcopy(built.config)
    dual = config["distill"]["settings"]["dual"]
    del dual["weights"]
    dual["tune"] = {"weights": [[1.0, 1.0], [1.0, 10.0]]}
    config = validate(config, source="tuned")
    make_fake_results(tmp_path / "results", config)
    tables = tmp_path / "tables"
    with pytest.raises(SdkdError, match=r"dual.* is tuned: give the folder"):
        aggregate(config, tmp_path / "results/eval", tables / "metrics.csv",
                  tables / "summary.json")
    tuning = tmp_path / "tuning"
    scores = {NS: [0.5, 0.25], DR: [0.125, 0.75]}  # validation MSE of points 0 and 1
    for run in tuning_runs(config):
        spec = tuning_spec(config, run["dataset"], "dual", run["point"])
        write_json(tmp_path / run["run_dir"] / "done.json",
                   {"best_val": scores[run["dataset"]][run["point"]], "best_epoch": 3,
                    "identity": run_identity(spec, data="x")})
    for dataset in scores:
        choose(config, dataset, "dual", tmp_path, tuning / dataset / "dual.json")
    aggregate(config, tmp_path / "results/eval", tables / "metrics.csv",
              tables / "summary.json", tuning)
    out = render_report(config, metrics_csv=tables / "metrics.csv",
                        summary_json=tables / "summary.json",
                        figures_dir=built.inputs["figures_dir"], data_files=[],
                        out=tmp_path / "report.html")
    page = Page(out.read_text(encoding="utf-8"))
    assert page.errors == []
    for dataset, chosen in ((NS, "1"), (DR, "0")):
        rows = page.rows(f"T_tuning-{dataset}")
        assert [r["values"] for r in rows] == ["weights = 1, 1", "weights = 1, 10"]
        assert [r["point"] for r in rows if r["chosen"] == "chosen"] == [chosen]
        assert {r["trained as"] for r in rows} == {f"{STUDENT}, seed 1000"}
    assert "How the tuned settings were chosen" in page.text_of(f"dataset-{NS}")
    settings = {r["bands"]: r for r in page.rows("T_band-settings")}
    assert settings["dual"]["tuned on validation"] == "weights"
    assert settings["none"]["tuned on validation"] == "—"


@pytest.mark.parametrize(("energy", "holds"), [
    (lambda k: 3.0 * k**-4.5, True),           # a power law: the same slope in both halves
    (lambda k: np.exp(-1.5 * k), False),       # an exponential fall-off steepens
])
def test_the_spectrum_slope_tells_a_power_law_from_an_exponential(energy, holds):
    k = np.arange(46.0)
    with np.errstate(divide="ignore"):
        found = spectral_slope(k, np.where(k > 0, energy(k), 0.0), (64, 64))
    assert (found.k_min, found.k_max) == (3, 16)
    assert found.holds is holds
    if holds:
        assert found.slope == pytest.approx(-4.5) and found.lower == pytest.approx(-4.5)
    else:  # d log E / d log k = -1.5 k: steeper at larger k
        assert found.upper < found.lower - 5
    assert spectral_slope(k[:12], energy(k[:12] + 1), (20, 28)) is None  # too small a grid


def test_the_page_states_the_truths_spectrum_slope(built, tmp_path, monkeypatch):
    """On the built 8 × 8 fields there is no range to fit; on 64 × 64 ones the page gives
    the slope of the truth's spectrum (fake: 5 (1 + |k|)⁻³) and says it is a power law."""
    assert f"slope-{NS}" not in built.page.ids
    monkeypatch.setattr(fake_results, "GRID", 64)
    make_fake_results(tmp_path / "results", built.config)
    rerender(built, tmp_path / "results" / "eval", tmp_path)
    k = np.arange(46.0)
    found = spectral_slope(k, 5.0 * (1.0 + k) ** -3.0, (64, 64))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    paragraph = re.search(rf'<p class="spectrum-slope" id="slope-{NS}">(.*?)</p>', html, re.S)
    text = " ".join(re.sub(r"<[^>]+>", "", paragraph[1]).split())
    assert text.startswith(f"The truth's energy spectrum (test split) falls as "
                           f"|k|{found.slope:.2f} over 3 ≤ |k| ≤ 16")
    assert f"{found.lower:.2f} over the lower half" in text
    assert "a power-law (inertial) range" in text


def test_the_papers_figure_stands_beside_ours(built):
    """The paper's row first, then per dataset and student the best setting (small_config
    has no sdkd_latent), with the summary's paired change and its conditions."""
    rows = built.page.rows("T_paper")
    assert rows[0]["who"] == "the SDKD paper (its abstract)"
    assert rows[0]["MSE change"] == "up to −81.3 %" and rows[0]["MAE change"] == "−52.3 %"
    summary = json.loads((built.results / "tables" / "summary.json").read_text())
    block = summary["datasets"][NS]["students"][STUDENT]
    best = block["best"]["bands"]
    (ours,) = [r for r in rows[1:] if r["conditions"].startswith(f"{NS}; {STUDENT}")]
    assert (ours["who"], ours["setting"]) == ("ours: best setting", best)
    assert ours["MSE change"] == fmt_pct(block["settings"][best]["mse_paired_change_pct"])
    assert ours["conditions"].endswith(f"{block['settings'][best]['n_pairs']} paired seed"
                                       + ("s" if block["settings"][best]["n_pairs"] > 1
                                          else ""))
