"""Every kind of bad input: one clear line naming what and where, exit 2, nothing left."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import assert_clean_failure, file_dataset, leftovers, write_config
from rawfiles import serve_directory, write_pdebench


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f[name] = value
    return path


def _good(tmp_path, shape=(6, 6, 8, 8)):
    return _h5(tmp_path / "data.h5", u=np.random.default_rng(0).normal(size=shape).astype("f4"))


def _preprocess(sdkd_cli, tmp_path, dataset, raw=None):
    """Run acquire (a check) + preprocess on a `file` dataset; returns (status, stderr)."""
    config = write_config(tmp_path, {"toy": dataset})
    out = tmp_path / "out"
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "toy")
    if status == 0:
        status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "toy",
                               *(["--raw", raw] if raw else []),
                               "--out", out / "data" / "toy.h5")
    return status, err


def test_unknown_dataset(sdkd_cli, tmp_path):
    config = write_config(tmp_path, {"toy": file_dataset(_good(tmp_path))})
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "weather",
                           "--out", tmp_path / "x.h5")
    assert_clean_failure(status, err, "unknown dataset 'weather'", "toy")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_source(sdkd_cli, tmp_path):
    dataset = file_dataset(_good(tmp_path))
    dataset["source"] = "scrape"
    status, err = sdkd_cli("check-config", "--config", write_config(tmp_path, {"toy": dataset}))
    assert_clean_failure(status, err, "datasets.toy.source", "'scrape' is not one of")


def test_value_out_of_range(sdkd_cli, tmp_path):
    dataset = file_dataset(_good(tmp_path), out_steps=-3)
    status, err = _preprocess(sdkd_cli, tmp_path, dataset)
    assert_clean_failure(status, err, "config.yaml", "datasets.toy.out_steps", "minimum",
                          out_dir=tmp_path / "out")


def test_missing_file(sdkd_cli, tmp_path):
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(tmp_path / "nope.h5"))
    assert_clean_failure(status, err, "nope.h5", "file not found", out_dir=tmp_path / "out")


def test_not_hdf5(sdkd_cli, tmp_path):
    path = tmp_path / "data.h5"
    path.write_text("time,value\n0,1\n")
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(path))
    assert_clean_failure(status, err, "data.h5", "not a format sdkd reads",
                          out_dir=tmp_path / "out")


def test_truncated_hdf5(sdkd_cli, tmp_path):
    path = _good(tmp_path, shape=(6, 6, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(path))
    assert_clean_failure(status, err, "data.h5", out_dir=tmp_path / "out")


def test_missing_variable(sdkd_cli, tmp_path):
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(_good(tmp_path), variable="w"))
    assert_clean_failure(status, err, "data.h5", "no variable 'w'", "variables: u",
                          out_dir=tmp_path / "out")


def test_wrong_rank(sdkd_cli, tmp_path):
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(_good(tmp_path), axes="N T C H W"))
    assert_clean_failure(status, err, "data.h5", "'u'", "rank 4", "needs rank 5",
                          out_dir=tmp_path / "out")


def test_wrong_axis_order_channels_last(sdkd_cli, tmp_path):
    path = _h5(tmp_path / "data.h5", u=np.zeros((20, 16, 16, 2), "f4"))  # T H W C on disk
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(path, axes="T C H W"))
    assert_clean_failure(status, err, "axis W has only 2 points", "axis order",
                          out_dir=tmp_path / "out")


def test_wrong_axis_order_netcdf_time_dimension(sdkd_cli, tmp_path):
    h5netcdf = pytest.importorskip("h5netcdf")
    path = tmp_path / "data.nc"
    with h5netcdf.File(path, "w") as f:  # a real NetCDF-4 file: (y, x, time)
        f.dimensions = {"y": 8, "x": 8, "time": 30}
        f.create_variable("temp", ("y", "x", "time"), data=np.zeros((8, 8, 30), "f4"))
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(path, variable="temp",
                                                              axes="T H W"))
    assert_clean_failure(status, err, "time dimension 'time' at axis 2",
                          out_dir=tmp_path / "out")


def test_netcdf_file_is_read(sdkd_cli, tmp_path):
    h5netcdf = pytest.importorskip("h5netcdf")
    path = tmp_path / "data.nc"
    rng = np.random.default_rng(1)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": 30, "y": 8, "x": 8}
        f.create_variable("temp", ("time", "y", "x"), data=rng.normal(size=(30, 8, 8)))
    dataset = file_dataset(path, variable="temp", axes="T H W",
                           split={"train": 0.6, "val": 0.2, "test": 0.2})
    status, err = _preprocess(sdkd_cli, tmp_path, dataset)
    assert status == 0, err
    with h5py.File(tmp_path / "out/data/toy.h5") as f:
        assert f["train/frames"].shape == (1, 18, 1, 8, 8)


def test_too_few_frames(sdkd_cli, tmp_path):
    dataset = file_dataset(_good(tmp_path), in_steps=4, out_steps=3)
    status, err = _preprocess(sdkd_cli, tmp_path, dataset)
    assert_clean_failure(status, err, "6 frames", "in_steps + out_steps = 7",
                          out_dir=tmp_path / "out")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data(sdkd_cli, tmp_path, bad):
    data = np.random.default_rng(0).normal(size=(6, 6, 8, 8)).astype("f4")
    data[5, 3, 2, 2] = bad
    path = _h5(tmp_path / "data.h5", u=data)
    status, err = _preprocess(sdkd_cli, tmp_path, file_dataset(path))
    assert_clean_failure(status, err, "data.h5", "trajectory 5", "NaN or Inf", "frame 3",
                          out_dir=tmp_path / "out")


def test_checksum_mismatch(sdkd_cli, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_pdebench(served / "2D_diff-react_NA_NA.h5")
    wrong = hashlib.md5(b"something else").hexdigest()
    with serve_directory(served) as server:
        dataset = {
            "source": "download",
            "download": {"url": server.url("2D_diff-react_NA_NA.h5"),
                         "known_hash": f"md5:{wrong}", "layout": "pdebench"},
            "split": {"train": 1, "val": 1, "test": 1}, "in_steps": 2, "out_steps": 2,
        }
        config = write_config(tmp_path, {"dr": dataset})
        out = tmp_path / "out" / "2D_diff-react_NA_NA.h5"
        status, err = sdkd_cli("acquire", "--config", config, "--dataset", "dr", "--out", out)
    assert_clean_failure(status, err, wrong)
    assert leftovers(tmp_path / "out") == []


def test_existing_output_survives_a_failed_run(sdkd_cli, tmp_path):
    """A good canonical file is not replaced or deleted by a later failing run."""
    path = _good(tmp_path)
    config = write_config(tmp_path, {"toy": file_dataset(path)})
    out = tmp_path / "toy.h5"
    assert sdkd_cli("preprocess", "--config", config, "--dataset", "toy", "--raw", path,
                    "--out", out)[0] == 0
    before = out.read_bytes()
    broken = _h5(tmp_path / "broken.h5", u=np.full((6, 6, 8, 8), np.nan, "f4"))
    status, _ = sdkd_cli("preprocess", "--config", config, "--dataset", "toy", "--raw", broken,
                         "--out", out)
    assert status == 2 and out.read_bytes() == before
    assert leftovers(tmp_path) == sorted(["broken.h5", "config.yaml", "data.h5", "toy.h5"])


def test_console_script_exit_status(tmp_path):
    """The installed entry point, not just main(): one line on stderr, status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "sdkd", "check-config", "--config", tmp_path / "missing.yaml"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    expected = f"sdkd: error: {tmp_path / 'missing.yaml'}: config file not found"
    assert result.stderr.strip() == expected
