"""Raw data → the canonical HDF5 of a dataset (``results/data/{dataset}.h5``).

Layout written::

    /train/frames, /val/frames, /test/frames   float32 (N, T, C, H, W), one chunk per
                                               trajectory, gzip + shuffle
    attrs: dataset, source, raw_sha256, channels, mean, std, in_steps, out_steps,
           window_stride, dt, dx, created_with

Splits are by trajectory, in file order (train first). A single long series is cut in
time into three contiguous segments instead, so no window can straddle two splits.
Mean and std are per channel over the train split only, accumulated in float64 with
Chan's pairwise update so that long runs do not lose precision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

import sdkd
from sdkd.atomic import atomic_path
from sdkd.checksum import sha256sum
from sdkd.data.raw import RawSeries, open_raw
from sdkd.errors import SdkdError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def raw_layout(dataset: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The raw layout of a dataset's source and the reader options it needs."""
    source = dataset["source"]
    if source == "simulate":
        return "sdkd", {}
    if source == "download":
        from sdkd.data.download import resolve

        remote = resolve(dataset["download"])
        if remote.layout == "fno_mat":
            return remote.layout, {"variable": dataset["download"]["variable"]}
        return remote.layout, {}
    spec = dataset["file"]
    options = {key: spec[key] for key in ("variable", "axes", "dt", "dx")}
    options["channels"] = spec.get("channels")
    return "array", options


def split_sizes(split: Mapping[str, float], total: int, what: str) -> dict[str, int]:
    """Counts per split from integer counts or fractions of ``total`` items."""
    values = [split[name] for name in SPLITS]
    if all(isinstance(v, int) for v in values):
        if sum(values) > total:
            raise SdkdError(
                f"split asks for {sum(values)} {what} ({', '.join(map(str, values))}), "
                f"but the data has {total}"
            )
        return dict(zip(SPLITS, values, strict=True))
    val, test = (round(split[name] * total) for name in ("val", "test"))
    sizes = {"train": total - val - test, "val": val, "test": test}
    empty = [name for name, size in sizes.items() if size < 1]
    if empty:
        raise SdkdError(
            f"split {dict(split)} of {total} {what} leaves {', '.join(empty)} empty"
        )
    return sizes


class _Segment:
    """Where one output trajectory comes from: raw trajectory and frame range."""

    def __init__(self, index: int, start: int, stop: int) -> None:
        self.index, self.start, self.stop = index, start, stop


def plan_splits(
    n: int, t: int, dataset: Mapping[str, Any]
) -> dict[str, list[_Segment]]:
    """Assign raw trajectories (or time segments of a single series) to splits.

    Args:
        n: trajectories after ``max_trajectories``.
        t: frames per trajectory after ``temporal_stride``.
    """
    need = dataset["in_steps"] + dataset["out_steps"]
    if n == 1:
        sizes = split_sizes(dataset["split"], t, "frames of the single series")
        plan, start = {}, 0
        for name in SPLITS:
            if sizes[name] < need:
                raise SdkdError(
                    f"the {name} part of the single series has {sizes[name]} frames, too few "
                    f"for in_steps + out_steps = {need}"
                )
            plan[name] = [_Segment(0, start, start + sizes[name])]
            start += sizes[name]
        return plan
    if t < need:
        raise SdkdError(
            f"trajectories have {t} frames, too few for in_steps + out_steps = {need}"
        )
    sizes = split_sizes(dataset["split"], n, "trajectories")
    plan, first = {}, 0
    for name in SPLITS:
        plan[name] = [_Segment(i, 0, t) for i in range(first, first + sizes[name])]
        first += sizes[name]
    return plan


class _ChannelStats:
    """Per-channel mean and variance, merged trajectory by trajectory (Chan et al.)."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def update(self, frames: np.ndarray) -> None:
        x = np.moveaxis(frames, 1, 0).reshape(frames.shape[1], -1).astype(np.float64)
        n_b = x.shape[1]
        mean_b = x.mean(axis=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(axis=1)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / n
        self.count = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))


def _frames(
    raw: RawSeries, segment: _Segment, dataset: Mapping[str, Any]
) -> np.ndarray:
    ts, xs = dataset["temporal_stride"], dataset["spatial_stride"]
    frames = raw.trajectory(segment.index)[::ts][segment.start : segment.stop, :, ::xs, ::xs]
    if not np.isfinite(frames).all():
        bad = int(np.argmax(~np.isfinite(frames).reshape(frames.shape[0], -1).all(axis=1)))
        raise SdkdError(
            f"{raw.path}: trajectory {segment.index} contains NaN or Inf "
            f"(first at frame {bad * ts} of the raw data)"
        )
    return np.ascontiguousarray(frames)


def _iter_plan(plan: dict[str, list[_Segment]]) -> Iterator[tuple[str, int, _Segment]]:
    for name in SPLITS:
        for position, segment in enumerate(plan[name]):
            yield name, position, segment


def preprocess(
    raw_path: str | Path, out: str | Path, dataset: Mapping[str, Any], *, name: str
) -> Path:
    """Convert a raw file into the canonical HDF5 at ``out`` (atomically).

    Args:
        raw_path: the acquired raw file.
        out: the canonical file to write.
        dataset: the validated config block of the dataset.
        name: the dataset's name (stored as provenance).
    """
    raw_path, out = Path(raw_path), Path(out)
    layout, options = raw_layout(dataset)
    with open_raw(raw_path, layout, **options) as raw:
        n_raw, t_raw, c, h, w = raw.shape
        n = min(n_raw, dataset["max_trajectories"] or n_raw)
        ts, xs = dataset["temporal_stride"], dataset["spatial_stride"]
        t = len(range(0, t_raw, ts))
        h, w = len(range(0, h, xs)), len(range(0, w, xs))
        plan = plan_splits(n, t, dataset)
        log.info("preprocess %s: %s → %s, splits %s", name, raw_path, out,
                 {k: len(v) for k, v in plan.items()})
        stats = _ChannelStats(c)
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            for split in SPLITS:
                seg_t = plan[split][0].stop - plan[split][0].start
                f.create_dataset(
                    f"{split}/frames",
                    shape=(len(plan[split]), seg_t, c, h, w),
                    dtype=np.float32,
                    chunks=(1, seg_t, c, h, w),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
            total = sum(len(v) for v in plan.values())
            for split, position, segment in tqdm(
                _iter_plan(plan), total=total, desc=f"preprocess {name}", unit="traj"
            ):
                frames = _frames(raw, segment, dataset)
                f[f"{split}/frames"][position] = frames
                if split == "train":
                    stats.update(frames)
            std = stats.std
            if not (std > 0).all():
                flat = [raw.channels[i] for i in np.flatnonzero(std <= 0)]
                raise SdkdError(
                    f"{raw_path}: channel(s) {', '.join(flat)} are constant over the train "
                    "split; they cannot be normalised"
                )
            f.attrs.update(
                {
                    "dataset": name,
                    "source": f"{dataset['source']}:{raw.source}",
                    "raw_sha256": sha256sum(raw_path),
                    "channels": raw.channels,
                    "mean": stats.mean.astype(np.float64),
                    "std": std.astype(np.float64),
                    "in_steps": dataset["in_steps"],
                    "out_steps": dataset["out_steps"],
                    "window_stride": dataset["window_stride"],
                    "dt": raw.dt * ts,
                    "dx": raw.dx * xs,
                    "created_with": f"sdkd {sdkd.__version__}",
                }
            )
    return out
