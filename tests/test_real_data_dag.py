"""The whole DAG on real-data layouts: a WeatherBench 2 slice fetched over HTTP from a
local store in the public store's layout, and TaxiBJ read in place from a DeepST file.

One Snakemake run covers both routes (each job is tiny), then an edit of the TaxiBJ
file reruns that dataset's preprocess and everything downstream, and nothing of the
weather dataset.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml
from snakerun import copy_workflow, digests, job_counts, snakemake
from taxibjfiles import write_taxibj
from wbstore import serve_tree, write_store

from sdkd.data.dataset import ForecastWindows
from sdkd.data.preprocess import SPLITS

pytestmark = pytest.mark.workflow

WEATHER_SPLIT = {"train": ["2016-01-01", "2016-01-12"], "val": ["2016-01-13", "2016-01-16"],
                 "test": ["2016-01-17", "2016-01-20"]}
TRAFFIC_SPLIT = {"train": ["2013-07-01", "2013-07-06"], "val": ["2013-07-07", "2013-07-08"],
                 "test": ["2013-07-09", "2013-07-10"]}


def _config(store_url: str, taxibj: str) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "weather": {
                "source": "download",
                "download": {
                    "name": "weatherbench2_era5_64x32", "url": store_url,
                    "variables": ["2m_temperature", "geopotential@500"],
                    "start": "2016-01-01", "stop": "2016-01-20", "step_hours": 6,
                },
                # 32 × 64 kept every 3rd point is 11 × 22: padded to 12 × 24 with a mask.
                "spatial_stride": 3,
                "grid": {"policy": "pad"},
                "split": WEATHER_SPLIT,
                "in_steps": 2,
                "out_steps": 2,
                "settings": ["dual"],
            },
            "traffic": {
                "source": "file",
                "file": {"path": taxibj, "layout": "taxibj"},
                "split": TRAFFIC_SPLIT,
                "in_steps": 4,
                "out_steps": 4,
                "window_stride": 2,
                "settings": ["none"],
            },
        },
        "models": {"teacher": "teacher-tiny", "students": ["unet-s"],
                   "student_overrides": {"width_mult": 0.25}},
        "training": {"teacher": {"epochs": 1, "batch_size": 8},
                     "student": {"epochs": 1, "batch_size": 8}},
        "distill": {"settings": {"none": {}, "dual": {"cutoffs": [2], "weights": [1.0, 1.0]}}},
    }


def test_weatherbench_and_taxibj_through_the_dag(tmp_path):
    work = copy_workflow(tmp_path / "work")
    write_store(tmp_path / "store" / "era5.zarr", start="2015-12-31T00", periods=100)
    taxibj = tmp_path / "BJ13_M32x32_T30_InOut.h5"
    # Day 3 misses a slot: the reader drops the day, leaving a gap no window may cross.
    write_taxibj(taxibj, days=10, grid=16, drop=[(3, 17)])
    with serve_tree(tmp_path / "store") as server:
        config = _config(server.url("era5.zarr"), str(taxibj))
        (work / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        result = snakemake(work, "--configfile", "run.yaml", "--resources", "gpu=2", cores=2)
        assert result.returncode == 0, result.stderr[-3000:]
        _check_outputs(work)
        # An edit of the user's file reruns its dataset's jobs and leaves the other's
        # alone: the traffic teacher is really rebuilt, the rest of the plan is listed.
        before, requests = digests(work / "results"), len(server.paths)
        write_taxibj(taxibj, days=10, grid=16, drop=[(3, 17)], seed=1)
        teacher = "results/teachers/traffic/teacher-tiny/best.pt"
        result = snakemake(work, teacher, "--configfile", "run.yaml", "--resources", "gpu=1")
        assert result.returncode == 0, result.stderr[-3000:]
        after = digests(work / "results")
        plan = snakemake(work, "-n", "--quiet", "rules", "--configfile", "run.yaml")
        assert len(server.paths) == requests  # the cached slice is not fetched again
    changed = {path for path in before if before[path] != after.get(path)}
    assert {"data/traffic.h5", "teachers/traffic/teacher-tiny/best.pt"} <= changed
    assert not any("weather" in path for path in changed)
    assert job_counts(plan.stdout) == {"all": 1, "distill": 1, "evaluate_student": 1,
                                       "evaluate_teacher": 1, "aggregate": 1, "figures": 1,
                                       "report": 1}


def _check_outputs(work):
    report = (work / "results/report.html").read_text()
    assert "geopotential@500" in report and "outflow" in report  # per-channel tables
    evaluation = json.loads((work / "results/eval/weather/teacher/teacher-tiny.json").read_text())
    assert list(evaluation["channel_metrics"]) == ["2m_temperature", "geopotential@500"]
    assert len(evaluation["mask"]) == 12 and sum(map(sum, evaluation["mask"])) == 11 * 22

    weather = work / "results/data/weather.h5"
    with h5py.File(weather) as f:
        assert list(f.attrs["channels"]) == ["2m_temperature", "geopotential@500"]
        assert list(f.attrs["units"]) == ["K", "m**2 s**-2"]
        assert f.attrs["grid_policy"] == "pad" and list(f.attrs["source_grid"]) == [11, 22]
        assert f["mask"].shape == (12, 24) and f["mask"][()].sum() == 11 * 22
        stamps = {s: f[f"{s}/time_stamps"][()].astype("datetime64[s]") for s in SPLITS}
    for split, (first, last) in WEATHER_SPLIT.items():
        times = stamps[split]
        assert times[0] == np.datetime64(first) and times[-1] == np.datetime64(f"{last}T18")
        assert (np.diff(times) == np.timedelta64(6, "h")).all()
    assert ForecastWindows(weather, "test").mask.sum() == 11 * 22

    test = ForecastWindows(work / "results/data/traffic.h5", "train")
    with h5py.File(test.path) as f:
        times = f["train/time_stamps"][()].astype("datetime64[s]")
    assert np.datetime64("2013-07-04") not in times.astype("datetime64[D]")  # day 3 dropped
    for start in test.starts:  # no window crosses the gap
        window = times[start : start + 8]
        assert (np.diff(window) == np.timedelta64(30, "m")).all()

