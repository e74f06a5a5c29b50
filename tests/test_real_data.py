"""Every real-data route from source to canonical file to forecasting windows.

Round trips: the canonical file holds the source's values, splits by time are
contiguous and disjoint, statistics come from the train split's data pixels only,
de-normalised windows equal the source frames, and the grid is fitted (crop, pad with a
mask) before any training.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from griddedfiles import write_netcdf3, write_netcdf4, write_npy
from helpers import assert_clean_failure, experiment, write_config
from taxibjfiles import write_taxibj
from wbstore import write_store

from sdkd.config import validate
from sdkd.data.dataset import ForecastWindows
from sdkd.data.preprocess import SPLITS, preprocess
from sdkd.data.weatherbench import fetch_weatherbench
from sdkd.errors import SdkdError


def _dataset(source: dict, split: dict, **extra) -> dict:
    """A validated dataset block (defaults filled) with 2 → 2 windows."""
    block = {**source, "split": split, "in_steps": 2, "out_steps": 2, **extra}
    return validate(experiment({"toy": block}), models=False)["datasets"]["toy"]


def _windows_equal_source(path: Path, split: str, frames: np.ndarray) -> None:
    """Every window of ``split``, de-normalised, equals ``frames[n, start : start + 4]``
    (frames: the split's source trajectories (N, T, C, H, W) on the canonical grid)."""
    data = ForecastWindows(path, split)
    for index in range(len(data)):
        trajectory, start = data.window(index)
        x, y = data[index]
        both = data.denormalize(torch.cat([x, y])).numpy()
        np.testing.assert_allclose(both, frames[trajectory, start : start + 4], rtol=1e-5,
                                   atol=1e-3)


# --- WeatherBench 2 -----------------------------------------------------------------


def test_weatherbench_slice_round_trip(tmp_path):
    values = write_store(tmp_path / "era5.zarr", start="2016-01-01T00", periods=40)
    download = {"name": "weatherbench2_era5_64x32", "url": f"file://{tmp_path / 'era5.zarr'}",
                "variables": ["2m_temperature"], "start": "2016-01-01", "stop": "2016-01-10",
                "step_hours": 12}
    split = {"train": ["2016-01-01", "2016-01-05"], "val": ["2016-01-06", "2016-01-07"],
             "test": ["2016-01-08", "2016-01-10"]}
    dataset = _dataset({"source": "download", "download": download}, split)
    raw = fetch_weatherbench(dataset["download"], tmp_path / "raw.h5", max_gib=1)
    out = preprocess(raw, tmp_path / "weather.h5", dataset, name="weather")
    # (time, lon, lat) every 12 h → (T, 1, lat, lon)
    source = values["2m_temperature"][::2].transpose(0, 2, 1)[:, None]
    with h5py.File(out) as f:
        stamps = {s: f[f"{s}/time_stamps"][()] for s in SPLITS}
        joined = np.concatenate([f[f"{s}/frames"][0] for s in SPLITS])
        np.testing.assert_array_equal(joined, source)
        train = f["train/frames"][()].astype(np.float64)
        np.testing.assert_allclose(f.attrs["mean"], [train.mean()], rtol=1e-10)
        np.testing.assert_allclose(f.attrs["std"], [train.std()], rtol=1e-10)
        assert list(f["coords/latitude"][()]) == sorted(f["coords/latitude"][()])
        assert f.attrs["dt"] == 12.0 and list(f.attrs["units"]) == ["K"]
    # contiguous, disjoint, in time order, each inside its range
    every = np.concatenate([stamps[s] for s in SPLITS])
    assert (np.diff(every) == 12 * 3600).all()
    assert len(stamps["train"]) == 10 and len(stamps["val"]) == 4 and len(stamps["test"]) == 6
    offset = 0
    for split in SPLITS:
        _windows_equal_source(out, split, source[None, offset:])
        offset += len(stamps[split])


# --- TaxiBJ ---------------------------------------------------------------------------


def test_taxibj_read_in_place_windows_skip_the_dropped_day(tmp_path):
    path = tmp_path / "BJ16_M32x32_T30_InOut.h5"
    frames, times = write_taxibj(path, days=6, grid=8, drop=[(1, 30)])
    split = {"train": ["2013-07-01", "2013-07-04"], "val": ["2013-07-05", "2013-07-05"],
             "test": ["2013-07-06", "2013-07-06"]}
    dataset = _dataset({"source": "file", "file": {"path": str(path), "layout": "taxibj"}},
                       split, window_stride=1)
    out = preprocess(None, tmp_path / "traffic.h5", dataset, name="traffic")
    data = ForecastWindows(out, "train")
    # days 0, 2 and 3 (day 1 dropped): 45 windows in day 0, 96 − 3 in days 2–3, none
    # across the gap
    assert data.n_frames == 3 * 48 and len(data) == 45 + 93
    _windows_equal_source(out, "train", frames[None, : 3 * 48])
    with h5py.File(out) as f:
        assert list(f.attrs["channels"]) == ["inflow", "outflow"]
        np.testing.assert_array_equal(f["train/time_stamps"][()],
                                      times[: 3 * 48].astype(np.int64))


# --- any gridded file -----------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_netcdf3, write_netcdf4], ids=["netcdf3", "netcdf4"])
def test_netcdf_glob_concatenated_in_time(tmp_path, writer):
    parts = [writer(tmp_path / f"t2m_{k}.nc", t=8, start=f"2020-01-0{2 * k + 1}T00",
                    seed=k) for k in range(3)]
    source = np.concatenate(parts, axis=1)[0]  # (T, C, H, W)
    split = {"train": 0.5, "val": 0.25, "test": 0.25}
    file = {"path": str(tmp_path / "t2m_*.nc"), "variable": "t2m", "axes": "T H W"}
    dataset = _dataset({"source": "file", "file": file}, split)
    out = preprocess(None, tmp_path / "t2m.h5", dataset, name="t2m")
    with h5py.File(out) as f:
        joined = np.concatenate([f[f"{s}/frames"][0] for s in SPLITS])
        assert f.attrs["raw_sha256"] and "coords/latitude" in f
    np.testing.assert_array_equal(joined, source)


def test_npy_trajectories(tmp_path):
    source = write_npy(tmp_path / "u.npy", axes="N T C H W", n=6, t=5, c=2, h=8, w=8)
    file = {"path": str(tmp_path / "u.npy"), "axes": "N T C H W"}
    dataset = _dataset({"source": "file", "file": file}, {"train": 4, "val": 1, "test": 1})
    out = preprocess(None, tmp_path / "u.h5", dataset, name="u")
    for split, first, count in (("train", 0, 4), ("val", 4, 1), ("test", 5, 1)):
        _windows_equal_source(out, split, source[first : first + count])


# --- fitting the grid -------------------------------------------------------------------


def _odd_grid(tmp_path: Path, policy: str) -> tuple[dict, np.ndarray]:
    """A 9 × 13 file dataset under ``policy`` and its frames (N, T, C, H, W)."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 5, 9, 13)).astype(np.float32)  # N T H W
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["u"] = data
    file = {"path": str(path), "variable": "u", "axes": "N T H W"}
    dataset = _dataset({"source": "file", "file": file}, {"train": 4, "val": 1, "test": 1},
                       grid={"policy": policy})
    return dataset, data[:, :, None]


def test_pad_keeps_the_data_and_masks_the_rest(tmp_path):
    dataset, source = _odd_grid(tmp_path, "pad")
    out = preprocess(None, tmp_path / "padded.h5", dataset, name="odd")
    with h5py.File(out) as f:
        mask = f["mask"][()].astype(bool)
        frames = f["train/frames"][()]
        assert frames.shape[-2:] == (12, 16) and mask.sum() == 9 * 13
        np.testing.assert_array_equal(frames[..., mask].reshape(source[:4].shape), source[:4])
        # statistics of the data's pixels, the edge copies left out
        np.testing.assert_allclose(f.attrs["mean"], [source[:4].mean(dtype=np.float64)],
                                   rtol=1e-9)
        assert list(f.attrs["source_grid"]) == [9, 13] and f.attrs["grid_policy"] == "pad"
    assert ForecastWindows(out, "test").mask.sum() == 9 * 13


def test_crop_keeps_the_centre(tmp_path):
    dataset, source = _odd_grid(tmp_path, "crop")
    out = preprocess(None, tmp_path / "cropped.h5", dataset, name="odd")
    with h5py.File(out) as f:
        assert "mask" not in f
        np.testing.assert_array_equal(f["train/frames"][()], source[:4, :, :, 0:8, 0:12])


def test_a_grid_that_does_not_fit_stops_preprocess(sdkd_cli, tmp_path):
    dataset, _ = _odd_grid(tmp_path, "exact")
    config = write_config(tmp_path, {"odd": dataset})
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "odd",
                           "--out", tmp_path / "out" / "odd.h5")
    assert_clean_failure(status, err, "datasets.odd", "9×13", "grid: {policy: crop}",
                         "12×16", out_dir=tmp_path / "out")


def test_a_grid_too_small_even_after_the_policy(sdkd_cli, tmp_path):
    dataset, _ = _odd_grid(tmp_path, "crop")
    dataset["spatial_stride"] = 4  # 9 × 13 → 3 × 4, cropped to 0 × 4
    config = write_config(tmp_path, {"odd": dataset})
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "odd",
                           "--out", tmp_path / "out" / "odd.h5")
    assert_clean_failure(status, err, "datasets.odd", "3×4 cropped is 0×4",
                         "grid: {policy: pad}", out_dir=tmp_path / "out")


def test_a_mask_that_leaves_nothing_valid(tmp_path):
    dataset, _ = _odd_grid(tmp_path, "pad")
    out = preprocess(None, tmp_path / "padded.h5", dataset, name="odd")
    with h5py.File(out, "r+") as f:
        f["mask"][...] = 0
    with pytest.raises(SdkdError, match=r"padded\.h5.*/mask leaves no valid pixel"):
        ForecastWindows(out, "train")


# --- config rules ---------------------------------------------------------------------


BAD_BLOCKS = {
    "mixed split": ({"split": {"train": ["2016", "2016"], "val": 0.1, "test": 0.1}},
                    "mixes time ranges"),
    "overlapping ranges": ({"split": {"train": ["2015", "2016"], "val": ["2016-06", "2016-07"],
                                      "test": ["2017", "2017"]}}, "overlap"),
    "range backwards": ({"split": {"train": ["2016", "2015"], "val": ["2017", "2017"],
                                   "test": ["2018", "2018"]}}, "starts after it ends"),
    "taxibj with axes": ({"file": {"path": "x.h5", "layout": "taxibj", "axes": "T H W"}},
                         "cannot be given with layout taxibj"),
    "no axes": ({"file": {"path": "x.nc", "variable": "t2m"}}, "missing axes"),
    "no variable": ({"file": {"path": "x.nc", "axes": "T H W"}}, "missing variable"),
    "list with C": ({"file": {"path": "x.nc", "variable": ["a", "b"], "axes": "T C H W"}},
                    "drop C"),
    "weatherbench without slice": (
        {"source": "download", "download": {"name": "weatherbench2_era5_64x32"}},
        "needs variables, start, stop"),
    "slice of another file": (
        {"source": "download", "download": {"name": "pdebench_diff_react", "start": "2016"}},
        "only apply to name weatherbench2_era5_64x32"),
    "bad policy": ({"grid": {"policy": "stretch"}}, "grid.policy"),
}


@pytest.mark.parametrize(("change", "fragment"), BAD_BLOCKS.values(), ids=list(BAD_BLOCKS))
def test_bad_real_data_config(tmp_path, sdkd_cli, change, fragment):
    block = {"source": "file", "file": {"path": "x.h5", "variable": "u", "axes": "T H W"},
             "split": {"train": 0.8, "val": 0.1, "test": 0.1}, "in_steps": 2, "out_steps": 2}
    block.update(change)
    if block["source"] == "download":
        del block["file"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(experiment({"real": block})))
    status, err = sdkd_cli("check-config", "--config", config)
    assert_clean_failure(status, err, "config.yaml", fragment)
    with pytest.raises(SdkdError, match=fragment.replace("(", r"\(")):
        validate(experiment({"real": block}), models=False)


def test_sources_lists_every_named_source(capsys):
    from sdkd.cli import main

    assert main(["sources"]) == 0
    listing = capsys.readouterr().out
    for name in ("pdebench_diff_react", "pdebench_shallow_water", "weatherbench2_era5_64x32",
                 "taxibj"):
        assert name in listing
    assert "licence" in listing and "zarr" in listing


def test_readme_examples_are_valid_config():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### One example per route"):]
    text = section[section.index("```yaml") + 7 :]
    datasets = yaml.safe_load(text[: text.index("```")])["datasets"]
    assert set(validate(experiment(datasets), models=False)["datasets"]) == {
        "turbulence", "weather", "traffic", "era5_own", "frames"}


def test_a_simulated_grid_is_fitted_at_check_config():
    block = {"source": "simulate",
             "simulate": {"equation": "diffusion_reaction", "n_trajectories": 6,
                          "resolution": 30},
             "split": {"train": 4, "val": 1, "test": 1}, "in_steps": 2, "out_steps": 2}
    with pytest.raises(SdkdError, match=r"30×30 .* grid: \{policy: crop\}"):
        validate(experiment({"dr": block}), models=False)
    for policy in ("crop", "pad"):
        validate(experiment({"dr": {**block, "grid": {"policy": policy}}}), models=False)


def test_years_as_a_time_split():
    from sdkd.data.calendar import time_range

    assert time_range([2015, 2016], "split.train") == (
        np.datetime64("2015-01-01T00:00:00"), np.datetime64("2017-01-01T00:00:00"))
    block = {"source": "file", "file": {"path": "x.nc", "variable": "t2m", "axes": "T H W"},
             "split": {"train": [1979, 2015], "val": [2016, 2016], "test": [2017, 2017]},
             "in_steps": 2, "out_steps": 2}
    validate(experiment({"era5": block}), models=False)
