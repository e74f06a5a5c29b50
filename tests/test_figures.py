"""sdkd.report.figures: every figure is a decodable PNG listed in the manifest.

One render of the fake tree (the slow part, ~10 s on a laptop CPU) serves all tests:
navier_stokes has most runs (a few missing, one invalid); diffusion_reaction has none,
so its figures must be placeholders rather than crashes.
"""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from fake_results import make_fake_results, subset_config, tiny_config
from helpers import leftovers

from sdkd.errors import SdkdError
from sdkd.report.aggregate import aggregate
from sdkd.report.figures import (
    MANIFEST,
    figure_files,
    make_figures,
    pareto_front,
    setting_palette,
)

NS, DR = "navier_stokes", "diffusion_reaction"
KINDS = {"gain", "lead_time", "spectrum", "band_error", "samples", "training", "cost"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    config = tiny_config()
    results = tmp_path_factory.mktemp("results")
    make_fake_results(results, config, missing=[
        f"{DR}/*",
        f"{NS}/unet-m/dual/seed-1.json",
        {"dataset": NS, "bands": "high"},
    ])
    (results / "eval" / NS / "unet-s" / "low" / "seed-0.json").write_text("{not json")
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    out = results / "figures"
    figures = make_figures(config, tables / "metrics.csv", results / "eval", results, out,
                           curves_dir=results / "plots/training")
    return config, results, out, figures


def test_training_curves_are_written_per_run_for_dvc(rendered):
    """One CSV per run with a history, at its evaluation file's path: the curves the
    training figure draws, under the same column names for every setting."""
    _, results, _, _ = rendered
    curves = results / "plots/training"
    histories = sorted((results / "students").rglob("history.csv"))
    assert histories
    for history_path in histories:
        dataset, model, bands, seed = history_path.parent.relative_to(
            results / "students").parts
        curve = pd.read_csv(curves / dataset / model / bands / f"{seed}.csv")
        history = pd.read_csv(history_path)
        assert list(curve.columns) == ["epoch", "train", "validation"]
        pd.testing.assert_series_equal(curve["validation"], history["val_gt"],
                                       check_names=False)
        pd.testing.assert_series_equal(curve["train"], history["train_gt"], check_names=False)
    assert leftovers(curves) == sorted(
        str(p.relative_to(curves)) for p in curves.rglob("*.csv"))


def test_every_figure_is_a_png_in_the_manifest(rendered):
    config, _, out, figures = rendered
    names = figure_files(config)
    assert names[-1] == MANIFEST
    assert [f.file for f in figures] == names[:-1]
    assert leftovers(out) == sorted(names)  # nothing else, no temporary files
    for figure in figures:
        image = matplotlib.image.imread(figure.path)
        assert image.ndim == 3 and min(image.shape[:2]) > 100, figure.file
        assert float(np.ptp(image[..., :3])) > 0, f"{figure.file} is blank"
    manifest = json.loads((out / MANIFEST).read_text())
    assert [entry["file"] for entry in manifest] == names[:-1]
    for entry in manifest:
        assert set(entry) >= {"file", "dataset", "kind", "title", "caption"}
        assert entry["title"].strip() and len(entry["caption"]) > 80, entry["file"]
        assert entry["dataset"] in (None, NS, DR)
    assert {entry["kind"] for entry in manifest} == KINDS
    per_dataset = [e["kind"] for e in manifest if e["dataset"] == NS]
    assert per_dataset.count("samples") == len(config["models"]["students"])
    assert [e["file"] for e in manifest if e["dataset"] is None] == ["gain_mse.png",
                                                                     "gain_mae.png"]


def test_missing_runs_give_placeholders_not_crashes(rendered):
    _, _, _, figures = rendered
    for figure in figures:
        if figure.dataset == DR:
            assert figure.placeholder, figure.file
            assert figure.caption.startswith("Placeholder") and "missing" in figure.caption
        else:
            assert not figure.placeholder, figure.file
    gain = next(f for f in figures if f.file == "gain_mse.png")
    assert "−81.3 %" in gain.caption and f"{NS} unet-s dual" in gain.caption


@pytest.fixture(scope="module")
def subset_rendered(tmp_path_factory):
    """Every run ok; diffusion_reaction runs unet-m with none and dual only."""
    config = subset_config()
    results = tmp_path_factory.mktemp("subset")
    make_fake_results(results, config)
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    out = results / "figures"
    figures = make_figures(config, tables / "metrics.csv", results / "eval", results, out)
    return config, out, figures


def test_a_subset_gets_its_own_figures_none_empty(subset_rendered):
    config, out, figures = subset_rendered
    names = figure_files(config)
    assert [f.file for f in figures] == names[:-1]
    assert leftovers(out) == sorted(names)
    # one sample figure per student the dataset runs
    assert f"samples_{DR}_unet-m.png" in names and f"samples_{DR}_unet-s.png" not in names
    assert {f"samples_{NS}_unet-s.png", f"samples_{NS}_unet-m.png"} <= set(names)
    for figure in figures:
        assert not figure.placeholder, f"{figure.file}: {figure.caption}"
        image = matplotlib.image.imread(figure.path)
        assert float(np.ptp(image[..., :3])) > 0, f"{figure.file} is blank"
    # a panel per student the dataset runs: diffusion_reaction's one-panel figures are
    # narrower than navier_stokes' two-panel ones (no empty unet-s panel)
    for kind in ("lead_time", "spectrum", "band_error", "training"):
        ns = matplotlib.image.imread(out / f"{kind}_{NS}.png")
        dr = matplotlib.image.imread(out / f"{kind}_{DR}.png")
        assert dr.shape[1] < ns.shape[1], kind
    gain = next(f for f in figures if f.file == "gain_mse.png")
    assert f"{DR} unet-m dual" in gain.caption and f"{DR} unet-s" not in gain.caption
    assert "not run" in gain.caption


def test_palette_is_one_colour_per_setting():
    config = tiny_config()
    palette = setting_palette(config)
    keys = list(config["distill"]["settings"])
    assert set(keys) | {"teacher", "truth"} == set(palette)
    colours = [tuple(np.round(matplotlib.colors.to_rgb(palette[k]), 4)) for k in keys]
    assert len(set(colours)) == len(keys)


def test_pareto_front():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 0.5])
    error = np.array([5.0, 3.0, 4.0, 3.5, 1.0, 9.0])
    # 0.5/9 and 1/5 and 2/3 and 4/1 are not dominated; 2/4 and 3/3.5 are
    assert pareto_front(cost, error).tolist() == [5, 0, 1, 4]


def test_unreadable_metrics_table(tmp_path):
    config = tiny_config()
    with pytest.raises(SdkdError, match="metrics table not found"):
        make_figures(config, tmp_path / "metrics.csv", tmp_path, tmp_path, tmp_path / "figs")
    assert leftovers(tmp_path / "figs") == []
