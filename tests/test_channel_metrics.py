"""Metrics per channel: the accumulators, the evaluation file of a two-channel dataset on
a padded grid, and how metrics.csv and the report show them.

A weather-like dataset has channels of different units (kelvin, m² s⁻²): each channel's
numbers are in its own physical units, its PSNR and SSIM use its own data range.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from types import SimpleNamespace

import h5py
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from fake_results import (
    DATA_RANGE,
    PADDED_MASK,
    fake_evaluation,
    make_fake_results,
    tiny_config,
)
from helpers import experiment, file_dataset
from htmlpage import Page
from skimage.metrics import structural_similarity
from test_metrics import data_range_of, pair

from sdkd.config import validate
from sdkd.data.preprocess import preprocess
from sdkd.evaluate import format as evalfile
from sdkd.evaluate.metrics import ForecastMetrics, ssim_frames
from sdkd.evaluate.run import evaluate_run
from sdkd.models import build_from_spec
from sdkd.plan import MANIFEST, expected_runs, figure_plan
from sdkd.report import figures
from sdkd.report.aggregate import COLUMNS, aggregate, read_metrics
from sdkd.report.fmt import fmt_metric
from sdkd.report.html import render_report
from sdkd.report.results import Results, channel_column, column_channel
from sdkd.train.checkpoint import load_checkpoint
from sdkd.train.jobs import train_teacher

NS, DR = "navier_stokes", "diffusion_reaction"
HOSTILE = "<script>document.title='PWNED'</script>"
WEATHER = ["2m_temperature", "geopotential@500"]

# ---- the accumulators -------------------------------------------------------------------


def test_per_channel_against_numpy_and_scikit_image():
    prediction, truth = pair((3, 2, 2, 20, 16))
    prediction[:, :, 1] = prediction[:, :, 1] * 50 + 54000  # another unit, another range
    truth[:, :, 1] = truth[:, :, 1] * 50 + 54000
    p, t = prediction.numpy(), truth.numpy()
    ranges = [float(np.ptp(t[:, :, c])) for c in range(2)]
    dr = data_range_of(prediction, truth)
    plain, per_channel = ForecastMetrics(2, dr), ForecastMetrics(2, dr, channel_ranges=ranges)
    for metrics in (plain, per_channel):
        metrics.update(prediction, truth)
    out = per_channel.compute()
    assert out["metrics"] == plain.compute()["metrics"]  # the overall values do not change
    for c, values in enumerate(out["per_channel"]):
        err = p[:, :, c] - t[:, :, c]
        assert values["data_range"] == ranges[c]
        assert values["mse"] == pytest.approx(np.mean(err**2), rel=1e-12)
        assert values["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
        assert values["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        rel = [np.linalg.norm(err[i]) / np.linalg.norm(t[i, :, c]) for i in range(3)]
        assert values["rel_l2"] == pytest.approx(np.mean(rel), rel=1e-12)
        assert values["psnr"] == pytest.approx(10 * np.log10(ranges[c]**2 / np.mean(err**2)),
                                               rel=1e-12)
        ssim = [structural_similarity(t[i, j, c], p[i, j, c], gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False,
                                      data_range=ranges[c])
                for i in range(3) for j in range(2)]
        assert values["ssim"] == pytest.approx(np.mean(ssim), abs=1e-9)
    # the channels' MSEs average to the overall one
    assert np.mean([v["mse"] for v in out["per_channel"]]) == pytest.approx(
        out["metrics"]["mse"], rel=1e-12)
    # without ranges of their own every channel is scored with the overall range
    assert [v["data_range"] for v in plain.compute()["per_channel"]] == [dr, dr]


def test_one_channel_is_the_overall_metrics():
    prediction, truth = pair((2, 3, 1, 16, 16))
    dr = data_range_of(truth)
    metrics = ForecastMetrics(3, dr, channel_ranges=[dr])
    metrics.update(prediction, truth)
    out = metrics.compute()
    assert out["per_channel"] == [{"data_range": dr, **out["metrics"]}]


def test_a_constant_channel_has_no_ssim_or_psnr():
    prediction, truth = pair((2, 1, 2, 16, 16))
    truth[:, :, 1] = 3.0
    metrics = ForecastMetrics(1, data_range_of(truth), channel_ranges=[1.5, 0.0])
    metrics.update(prediction, truth)
    constant = metrics.compute()["per_channel"][1]
    assert math.isnan(constant["ssim"]) and math.isnan(constant["psnr"])
    assert constant["mse"] > 0 and math.isfinite(constant["rel_l2"])


def test_ssim_ranges_broadcast():
    """Several data ranges per frame in one pass = one call per range."""
    prediction, truth = pair((2, 2, 3, 16, 16))
    ranges = torch.tensor([[5.0, 10.0, 20.0], [7.0, 7.0, 7.0]])[:, None, None, :]
    both = ssim_frames(prediction, truth, ranges)
    assert both.shape == (2, 2, 2, 3)
    for c, r in enumerate((5.0, 10.0, 20.0)):
        torch.testing.assert_close(both[0, ..., c], ssim_frames(prediction[:, :, c],
                                                                truth[:, :, c], r))
    torch.testing.assert_close(both[1], ssim_frames(prediction, truth, 7.0))


# ---- the evaluation file of a two-channel dataset, padded -----------------------------


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    """A teacher trained on a two-channel 16 × 16 dataset (kelvin, m² s⁻²), evaluated on
    its test split as is and with a /mask that pads the last 3 rows and 2 columns."""
    tmp = tmp_path_factory.mktemp("weather")
    rng = np.random.default_rng(1)
    x = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    phase = rng.normal(size=(9, 1, 1, 1, 1))
    waves = np.sin(x[:, None] + 2 * x[None, :] + phase)  # N 1 1 H W
    time = 0.1 * np.arange(6)[None, :, None, None, None]
    data = np.concatenate([280 + 5 * (waves + time), 54000 + 300 * (waves.swapaxes(-1, -2)
                                                                    - time)], axis=2)
    data = np.broadcast_to(data, (9, 6, 2, 16, 16)).astype("f4")
    raw = tmp / "weather.raw.h5"
    with h5py.File(raw, "w") as f:
        f["u"] = data
    block = file_dataset(raw, axes="N T C H W", split={"train": 6, "val": 1, "test": 2})
    block["file"]["channels"] = WEATHER
    config = validate(experiment({"weather": block}, evaluate={"batch_size": 4}))
    plain = preprocess(raw, tmp / "weather.h5", config["datasets"]["weather"], name="weather")
    train_teacher(config, "weather", plain, tmp / "teacher", device="cpu")
    padded = tmp / "padded.h5"
    shutil.copy(plain, padded)
    mask = np.ones((16, 16), dtype=np.uint8)
    mask[13:, :] = mask[:, 14:] = 0
    with h5py.File(padded, "a") as f:
        f["mask"] = mask
    docs = {name: evaluate_run(config, "weather", path, tmp / "teacher", tmp / f"{name}.json",
                               device="cpu")
            for name, path in (("plain", plain), ("padded", padded))}
    return SimpleNamespace(tmp=tmp, plain=plain, docs=docs, valid=mask.astype(bool))


def _forecasts(data, checkpoint):
    """(predictions, truths) of every test window in physical units, (N, T, C, H, W)
    float64, computed without sdkd.evaluate."""
    ckpt = load_checkpoint(checkpoint)
    model = build_from_spec(ckpt["meta"]["model"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    with h5py.File(data) as f:
        frames = f["test/frames"][()].astype(np.float64)
        mean = np.asarray(f.attrs["mean"])[:, None, None]
        std = np.asarray(f.attrs["std"])[:, None, None]
        t_in, t_out = int(f.attrs["in_steps"]), int(f.attrs["out_steps"])
    predictions, truths = [], []
    for trajectory in frames:
        for start in range(trajectory.shape[0] - t_in - t_out + 1):
            x = (trajectory[start:start + t_in] - mean) / std
            with torch.no_grad():
                p = model(torch.tensor(x[None], dtype=torch.float32)).prediction[0].double()
            predictions.append(p.numpy() * std + mean)
            truths.append(trajectory[start + t_in:start + t_in + t_out])
    return np.stack(predictions), np.stack(truths)


def test_the_channels_of_the_evaluation_file(weather):
    p, t = _forecasts(weather.plain, weather.tmp / "teacher" / "best.pt")
    with h5py.File(weather.plain) as f:
        frames = f["test/frames"][()]  # the data range covers every frame of the split
    for name, doc in weather.docs.items():
        assert doc["schema_version"] == 3 and doc["channels"] == WEATHER
        read = evalfile.read_evaluation(weather.tmp / f"{name}.json")
        channels = evalfile.channel_metrics(read)
        assert list(channels) == WEATHER
        valid = weather.valid if name == "padded" else np.ones((16, 16), dtype=bool)
        assert (evalfile.mask(read) is None) == (name == "plain")
        pv, tv, fv = p[..., valid], t[..., valid], frames[..., valid]  # (…, C, valid pixels)
        assert doc["metrics"]["mse"] == pytest.approx(np.mean((pv - tv) ** 2), rel=1e-5)
        assert doc["data_range"] == float(fv.max()) - float(fv.min())
        for c, channel in enumerate(WEATHER):
            values, err = channels[channel], pv[:, :, c] - tv[:, :, c]
            value_range = float(fv[:, :, c].max()) - float(fv[:, :, c].min())
            assert values["data_range"] == value_range
            assert values["mse"] == pytest.approx(np.mean(err**2), rel=1e-5)
            assert values["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
            assert values["psnr"] == pytest.approx(
                10 * np.log10(value_range**2 / np.mean(err**2)), rel=1e-5)
            assert -1 <= values["ssim"] <= 1
        # the per-channel MSEs are in their own units: kelvin² ≪ (m² s⁻²)²
        assert channels[WEATHER[0]]["mse"] < channels[WEATHER[1]]["mse"]
        # Parseval on the (padded) grid: the error's shells and bands sum to the MSE
        assert sum(doc["spectrum"]["error"]) == pytest.approx(doc["metrics"]["mse"], rel=1e-9)
        assert sum(doc["band_errors"]["mse"]) == pytest.approx(doc["metrics"]["mse"], rel=1e-9)
    padded = weather.docs["padded"]
    assert np.array_equal(np.asarray(padded["mask"]), weather.valid.astype(int))
    sample = np.asarray(padded["sample"]["prediction"])
    assert (sample[:, ~weather.valid] == 0).all() and (sample[:, weather.valid] != 0).any()
    # SSIM on a rectangle of valid pixels: scikit-image's on the 13 × 14 sub-block
    c, rng = 0, padded["channel_metrics"][WEATHER[0]]["data_range"]
    ssim = [structural_similarity(t[i, j, c, :13, :14], p[i, j, c, :13, :14],
                                  gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=rng)
            for i in range(len(t)) for j in range(t.shape[1])]
    assert padded["channel_metrics"][WEATHER[0]]["ssim"] == pytest.approx(np.mean(ssim),
                                                                         abs=1e-5)


# ---- metrics.csv and the report ------------------------------------------------------


def stub_figures(config, out_dir):
    """Every figure of the config as a blank 2 × 2 PNG with its manifest entry: the page
    only embeds them, and drawing the real ones takes most of a report's time."""
    out_dir.mkdir(parents=True)
    manifest = []
    for figure in figure_plan(config):
        matplotlib.image.imsave(out_dir / figure.file, np.zeros((2, 2, 3)))
        manifest.append({"file": figure.file, "dataset": figure.dataset, "kind": figure.kind,
                         "title": figure.title, "caption": "a stub", "placeholder": True})
    (out_dir / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """navier_stokes with two channels (one named like a script) on a padded grid, one of
    its runs evaluated before version 3; diffusion_reaction with one channel."""
    config = copy.deepcopy(tiny_config())
    config["models"]["students"] = ["unet-s"]
    settings = config["distill"]["settings"]
    config["distill"]["settings"] = {k: settings[k] for k in ("none", "dual")}
    config = validate(config, source="channels")
    results = tmp_path_factory.mktemp("channels") / "results"
    channels = ["vorticity", HOSTILE]
    make_fake_results(results, config, channels={NS: channels}, padded=[NS])
    old = results / "eval" / NS / "unet-s" / "none" / "seed-1.json"
    doc = json.loads(old.read_text())
    for key in evalfile.ADDED_IN_3:
        doc.pop(key)
    old.write_text(json.dumps(doc | {"schema_version": 2}))
    tables = results / "tables"
    aggregate(config, results / "eval", tables / "metrics.csv", tables / "summary.json")
    stub_figures(config, results / "figures")
    out = render_report(config, metrics_csv=tables / "metrics.csv",
                        summary_json=tables / "summary.json", figures_dir=results / "figures",
                        data_files=[], out=results / "report.html")
    text = out.read_text(encoding="utf-8")
    return SimpleNamespace(config=config, results=results, channels=channels, text=text,
                           page=Page(text), table=read_metrics(tables / "metrics.csv"))


def test_metrics_csv_has_a_column_per_channel(report):
    table, channels = report.table, report.channels
    extra = [channel_column(m, c) for m in ("mse", "ssim") for c in channels]
    assert list(table.columns) == [*COLUMNS, *extra]
    assert [column_channel(c) for c in extra] == [(m, c) for m in ("mse", "ssim")
                                                  for c in channels]
    assert set(table["status"]) == {"ok"}
    for row in table.to_dict("records"):
        if row["dataset"] == DR or (row["bands"], row["seed"]) == ("none", 1):  # one channel; v2
            assert all(math.isnan(row[c]) for c in extra), row
            continue
        doc = json.loads((report.results / "eval" / row["eval_path"].split("/eval/")[1])
                         .read_text())
        for metric, channel in map(column_channel, extra):
            assert row[channel_column(metric, channel)] == doc["channel_metrics"][channel][metric]


def test_the_page_shows_each_channel_escaped(report):
    page, table = report.page, report.table
    assert page.errors == []
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert HOSTILE not in report.text  # escaped, never markup
    assert f"T_channels-{DR}" not in page.tables  # one channel: the page as before
    shown = page.tables[f"T_channels-{NS}"]
    assert shown["section"] == f"dataset-{NS}"
    assert shown["head"][0] == ["run", "MSE", "SSIM"]
    assert shown["head"][1] == ["model", "bands", "seed", "status", *report.channels,
                                *report.channels]
    rows = table[table["dataset"] == NS].to_dict("records")
    body = shown["body"]
    assert len(body) == len(rows)
    for run, cells in zip(rows, body, strict=True):
        expected = [fmt_metric(m, run[channel_column(m, c)])
                    for m in ("mse", "ssim") for c in report.channels]
        assert cells[4:] == expected
    assert "—" in body[[r["seed"] for r in rows].index(1)][4:]  # the version 2 run
    assert f"each channel on its own (vorticity, {HOSTILE})" in page.text_of(f"dataset-{NS}")


def test_the_sample_figure_of_a_padded_grid(report):
    """The padded pixels are blank (masked) and out of the colour scales."""
    results = Results(report.config, report.table)
    palette = figures.setting_palette(report.config)
    with plt.rc_context(figures._style()):
        fig, caption = figures._samples(results, palette, NS, "unet-s")
        images = [image for ax in fig.axes for image in ax.get_images()]
        plt.close(fig)
        other = figures._samples(results, palette, DR, "unet-s")
        plt.close(other[0])
    assert "padded pixels, which no metric counts, are left blank" in caption
    assert "padded" not in other[1]
    # every field and error map: a masked array, the padding masked (so the scales, set
    # from the arrays' min and max, and the rmse, their mean, skip it)
    assert images and all(np.array_equal(np.ma.getmaskarray(image.get_array()), ~PADDED_MASK)
                          for image in images)


def test_fake_channel_metrics_follow_the_format():
    """The fake's per-channel block reads back; one channel equals the overall metrics."""
    config = tiny_config()
    run = expected_runs(config)[0]
    doc = fake_evaluation(run, config, np.random.default_rng(0))
    assert evalfile.channel_metrics(doc) == {"u": {"data_range": DATA_RANGE, **doc["metrics"]}}
