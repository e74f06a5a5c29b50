"""`sdkd acquire` for each source, end to end through the command line."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
from helpers import experiment, file_dataset, write_config
from rawfiles import serve_directory, write_fno_mat, write_pdebench

import sdkd.data.acquire as acquire_module
from sdkd.checksum import sha256sum
from sdkd.config import validate
from sdkd.data.acquire import acquire
from sdkd.data.dataset import ForecastWindows
from sdkd.data.download import resolve
from sdkd.errors import SdkdError
from sdkd.train.lease import gpu_lease


def _ns(**simulate) -> dict:
    block = {
        "source": "simulate",
        "simulate": {"equation": "navier_stokes", "n_trajectories": 5, "resolution": 16,
                     "viscosity": 1e-3, "t_end": 2.0, "n_records": 4, **simulate},
        "split": {"train": 3, "val": 1, "test": 1},
        "in_steps": 2,
        "out_steps": 2,
    }
    return validate(experiment({"ns": block}, seed=3))["datasets"]["ns"]


def test_simulation_is_deterministic_and_batch_independent(tmp_path):
    a = acquire(_ns(batch_size=5), tmp_path / "a.h5", name="ns", seed=3)
    b = acquire(_ns(batch_size=2), tmp_path / "b.h5", name="ns", seed=3)
    c = acquire(_ns(batch_size=5), tmp_path / "c.h5", name="ns", seed=4)
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        assert fa["frames"].shape == (5, 4, 1, 16, 16)
        np.testing.assert_allclose(fa["frames"][()], fb["frames"][()], rtol=1e-5, atol=1e-6)
        assert not np.allclose(fa["frames"][()], fc["frames"][()])
        np.testing.assert_allclose(fa["times"][()], [0.5, 1.0, 1.5, 2.0])
        assert list(fa["frames"].attrs["channels"]) == ["vorticity"]
        assert fa.attrs["equation"] == "navier_stokes"


def test_simulation_leases_a_gpu_unless_told_cpu(tmp_path, monkeypatch):
    """A simulation on a GPU machine holds the lease of its GPU, so no training or
    evaluation job runs on that GPU meanwhile; ``device: cpu`` locks nothing."""
    monkeypatch.setenv("SDKD_FAKE_GPUS", "0")
    monkeypatch.setenv("SDKD_GPU_LOCK_DIR", str(tmp_path / "locks"))
    busy = []
    real = acquire_module._simulate

    def simulate_and_probe(*args, **kwargs):
        try:
            with gpu_lease(timeout=0):
                busy.append(False)
        except SdkdError:
            busy.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(acquire_module, "_simulate", simulate_and_probe)
    acquire(_ns(), tmp_path / "auto.h5", name="ns", seed=3)
    acquire(_ns(device="cpu"), tmp_path / "cpu.h5", name="ns", seed=3)
    assert busy == [True, False]
    with pytest.raises(SdkdError, match="no CUDA device"):
        acquire(_ns(device="cuda"), tmp_path / "cuda.h5", name="ns", seed=3)


def test_solver_grid_is_downsampled(tmp_path):
    path = acquire(_ns(solver_resolution=32), tmp_path / "a.h5", name="ns", seed=3)
    with h5py.File(path) as f:
        assert f["frames"].shape[-2:] == (16, 16)
        assert f.attrs["created_with"].startswith("sdkd")


def test_download_then_preprocess(sdkd_cli, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    expected = write_pdebench(served / "2D_rdb_NA_NA.h5", n_seeds=5, t=6, n=8, channels=1)
    md5 = f"md5:{hashlib.md5((served / '2D_rdb_NA_NA.h5').read_bytes()).hexdigest()}"
    with serve_directory(served) as server:
        dataset = {
            "source": "download",
            "download": {"url": server.url("2D_rdb_NA_NA.h5"), "known_hash": md5,
                         "layout": "pdebench"},
            "split": {"train": 3, "val": 1, "test": 1}, "in_steps": 3, "out_steps": 3,
        }
        config = write_config(tmp_path, {"swe": dataset})
        raw = tmp_path / "resources/raw/swe" / resolve(dataset["download"]).filename
        assert raw.name == "2D_rdb_NA_NA.h5"
        assert sdkd_cli("acquire", "--config", config, "--dataset", "swe", "--out", raw)[0] == 0
        requests = server.requests
        mtime = raw.stat().st_mtime_ns
        # a re-run finds the file present: no request, file untouched
        assert sdkd_cli("acquire", "--config", config, "--dataset", "swe", "--out", raw)[0] == 0
        assert server.requests == requests and raw.stat().st_mtime_ns == mtime
    out = tmp_path / "results/data/swe.h5"
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "swe", "--raw", raw,
                           "--out", out)
    assert status == 0, err
    with h5py.File(out) as f:
        assert f.attrs["raw_sha256"] == sha256sum(served / "2D_rdb_NA_NA.h5")
        assert list(f.attrs["channels"]) == ["h"]
        np.testing.assert_array_equal(f["val/frames"][()], expected[3:4])
    assert len(ForecastWindows(out, "train")) == 3


def test_fno_mat_download(sdkd_cli, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_fno_mat(served / "NavierStokes_V1e-5_N1200_T20.mat", n=5, t=6, res=8)
    sha = sha256sum(served / "NavierStokes_V1e-5_N1200_T20.mat")
    with serve_directory(served) as server:
        dataset = {
            "source": "download",
            "download": {"url": server.url("NavierStokes_V1e-5_N1200_T20.mat"),
                         "known_hash": f"sha256:{sha}", "layout": "fno_mat"},
            "split": {"train": 3, "val": 1, "test": 1}, "in_steps": 3, "out_steps": 3,
        }
        config = write_config(tmp_path, {"ns": dataset})
        raw = tmp_path / "raw.mat"
        assert sdkd_cli("acquire", "--config", config, "--dataset", "ns", "--out", raw)[0] == 0
    assert sha256sum(raw) == sha


def test_file_source_is_checked_and_read_in_place(sdkd_cli, tmp_path):
    data = tmp_path / "mine.h5"
    with h5py.File(data, "w") as f:
        f["u"] = np.zeros((6, 6, 8, 8), "f4")
    config = write_config(tmp_path, {"mine": file_dataset(data)})
    assert sdkd_cli("acquire", "--config", config, "--dataset", "mine")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "mine.h5"]
    # Checked as declared: a wrong axis order fails at acquire, not at training.
    config = write_config(tmp_path, {"mine": file_dataset(data, variable="v")})
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "mine")
    assert status == 2 and "no variable 'v'" in err
