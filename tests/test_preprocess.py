"""Preprocess round trips: canonical HDF5 → Dataset windows → the raw frames again."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from helpers import experiment, file_dataset
from rawfiles import write_fno_mat, write_pdebench
from torch.utils.data import DataLoader

from sdkd.checksum import sha256sum
from sdkd.config import validate
from sdkd.data.dataset import ForecastWindows
from sdkd.data.limits import trajectory_chunks
from sdkd.data.preprocess import SPLITS, preprocess


def _config(dataset: dict) -> dict:
    return validate(experiment({"toy": dataset}))["datasets"]["toy"]


def _raw(tmp_path, shape, variable="u", seed=0):
    """An HDF5 file whose frames encode (trajectory, frame) so leaks are visible."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape).astype(np.float32)
    if len(shape) >= 4:  # N T ... : offset every trajectory and frame differently
        data += (1000 * np.arange(shape[0]))[(slice(None),) + (None,) * (len(shape) - 1)]
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as f:
        f[variable] = data
    return path, data


def _check_windows(ds: ForecastWindows, raw_trajectories: list[np.ndarray]) -> None:
    """Every window, de-normalised, equals the raw frames it claims to come from."""
    span = ds.in_steps + ds.out_steps
    for index in range(len(ds)):
        x, y = ds[index]
        assert x.shape == (ds.in_steps, *ds.frame_shape)
        assert y.shape == (ds.out_steps, *ds.frame_shape)
        trajectory, start = ds.window(index)
        assert start + span <= ds.n_frames  # never past the end of its trajectory
        expected = raw_trajectories[trajectory][start : start + span]
        got = ds.denormalize(torch.cat([x, y])).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_trajectories_round_trip(tmp_path):
    raw_path, data = _raw(tmp_path, (6, 7, 4, 8))  # N T H W
    dataset = _config(file_dataset(raw_path, window_stride=2))
    out = preprocess(raw_path, tmp_path / "toy.h5", dataset, name="toy")
    frames = data[:, :, None]  # add C
    offsets = {"train": 0, "val": 4, "test": 5}
    for split in SPLITS:
        ds = ForecastWindows(out, split)
        assert ds.starts_per_trajectory == 2  # starts 0 and 2 of 7 frames, span 4
        _check_windows(ds, list(frames[offsets[split] :]))
    with h5py.File(out) as f:
        train = frames[:4].astype(np.float64)
        np.testing.assert_allclose(f.attrs["mean"], [train.mean()], rtol=1e-10)
        np.testing.assert_allclose(f.attrs["std"], [train.std()], rtol=1e-10)
        assert f.attrs["raw_sha256"] == sha256sum(raw_path)
        assert list(f.attrs["channels"]) == ["c0"]
        assert f.attrs["dataset"] == "toy"
        assert f.attrs["created_with"].startswith("sdkd ")
        for key in ("in_steps", "out_steps", "window_stride", "dt", "dx", "source"):
            assert key in f.attrs
        assert f["train/frames"].chunks == (1, 7, 1, 4, 8)
        assert f["train/frames"].compression == "gzip"


def test_single_series_is_split_in_time(tmp_path):
    raw_path, data = _raw(tmp_path, (40, 2, 8, 8), variable="state")  # T C H W
    dataset = _config(
        file_dataset(raw_path, variable="state", axes="T C H W",
                     split={"train": 0.6, "val": 0.2, "test": 0.2})
    )
    out = preprocess(raw_path, tmp_path / "toy.h5", dataset, name="toy")
    bounds = {"train": (0, 24), "val": (24, 32), "test": (32, 40)}
    for split, (lo, hi) in bounds.items():
        ds = ForecastWindows(out, split)
        assert ds.n_trajectories == 1 and ds.n_frames == hi - lo
        _check_windows(ds, [data[lo:hi]])
    with h5py.File(out) as f:  # statistics from the train segment only
        np.testing.assert_allclose(f.attrs["mean"], data[:24].mean(axis=(0, 2, 3)), rtol=1e-5)


def test_strides_and_max_trajectories(tmp_path):
    raw_path, data = _raw(tmp_path, (9, 12, 8, 8))
    dataset = _config(
        file_dataset(raw_path, temporal_stride=3, spatial_stride=2, max_trajectories=6,
                     file={"path": str(raw_path), "variable": "u", "axes": "N T H W",
                           "dt": 0.5, "dx": 0.25})
    )
    out = preprocess(raw_path, tmp_path / "toy.h5", dataset, name="toy")
    with h5py.File(out) as f:
        assert f["train/frames"].shape == (4, 4, 1, 4, 4)
        assert sum(len(f[f"{s}/frames"]) for s in SPLITS) == 6
        np.testing.assert_allclose(f["test/frames"][0, :, 0], data[5, ::3, ::2, ::2])
        assert f.attrs["dt"] == pytest.approx(1.5) and f.attrs["dx"] == pytest.approx(0.5)


def test_pdebench_layout(tmp_path):
    raw_path = tmp_path / "2D_diff-react_NA_NA.h5"
    expected = write_pdebench(raw_path, n_seeds=6, t=6, n=8, channels=2)
    dataset = _config(
        {"source": "download", "download": {"name": "pdebench_diff_react"},
         "split": {"train": 4, "val": 1, "test": 1}, "in_steps": 3, "out_steps": 3}
    )
    out = preprocess(raw_path, tmp_path / "dr.h5", dataset, name="dr")
    with h5py.File(out) as f:
        assert list(f.attrs["channels"]) == ["u", "v"]
        np.testing.assert_array_equal(f["train/frames"][()], expected[:4])
        np.testing.assert_array_equal(f["test/frames"][()], expected[5:])
    _check_windows(ForecastWindows(out, "val"), list(expected[4:5]))


def test_fno_mat_layout(tmp_path):
    raw_path = tmp_path / "ns.mat"
    expected = write_fno_mat(raw_path, n=6, t=5, res=8)  # (N, T, H, W)
    dataset = _config(
        {"source": "download",
         "download": {"url": "http://127.0.0.1:9/ns.mat", "known_hash": "md5:" + "0" * 32,
                      "layout": "fno_mat"},
         "split": {"train": 4, "val": 1, "test": 1}, "in_steps": 2, "out_steps": 3}
    )
    out = preprocess(raw_path, tmp_path / "ns.h5", dataset, name="ns")
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["train/frames"][:, :, 0], expected[:4], rtol=1e-6)
        assert f.attrs["dx"] == pytest.approx(1 / 8)


def test_loader_workers_and_memory_mode_agree(tmp_path):
    raw_path, _ = _raw(tmp_path, (6, 7, 8, 8))
    out = preprocess(raw_path, tmp_path / "toy.h5", _config(file_dataset(raw_path)), name="toy")
    lazy = ForecastWindows(out, "train")
    memory = ForecastWindows(out, "train", in_memory=True)
    direct = torch.stack([torch.cat(lazy[i]) for i in range(len(lazy))])
    loader = DataLoader(lazy, batch_size=3, num_workers=2)
    batched = torch.cat([torch.cat([x, y], dim=1) for x, y in loader])
    torch.testing.assert_close(batched, direct)
    torch.testing.assert_close(torch.stack([torch.cat(memory[i]) for i in range(len(memory))]),
                               direct)
    # normalised with the train statistics: roughly zero mean and unit spread
    assert abs(direct.mean().item()) < 0.5 and 0.5 < direct.std().item() < 2


def test_window_overrides_and_out_of_range(tmp_path):
    raw_path, _ = _raw(tmp_path, (6, 7, 8, 8))
    out = preprocess(raw_path, tmp_path / "toy.h5", _config(file_dataset(raw_path)), name="toy")
    ds = ForecastWindows(out, "train", in_steps=3, out_steps=4, window_stride=1)
    assert len(ds) == 4 and ds[3][1].shape[0] == 4
    with pytest.raises(IndexError):
        ds.window(len(ds))


@pytest.mark.parametrize("shape, chunks", [
    ((4, 20, 1, 64, 64), (1, 20, 1, 64, 64)),  # a trajectory is one chunk
    ((4, 100, 2, 2048, 2048), (1, 7, 2, 2048, 2048)),  # 3.1 GiB: split along time
    ((1, 3, 1, 16384, 16384), (1, 1, 1, 4096, 16384)),  # 1 GiB frames: split along rows
])
def test_chunks_stay_small(shape, chunks):
    """HDF5 refuses chunks of 4 GiB; large trajectories are split, small ones are not."""
    assert trajectory_chunks(shape) == chunks
