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

Before anything is read, each split's array is checked against ``limits.max_array_gib``
(training may read a split whole) and the output directory's free space against the
splits' uncompressed size (see :mod:`sdkd.data.limits`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import sdkd
from sdkd.checksum import sha256sum
from sdkd.data.limits import DEFAULT_MAX_GIB, FLOAT32, check_array, h5_output, trajectory_chunks
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


@dataclass(frozen=True)
class _Split:
    """Where one split comes from: raw trajectories ``first`` … ``first + count - 1``,
    each cut to frames ``start:stop`` (counted after ``temporal_stride``).

    A range, not a list per trajectory: the trajectory count comes from the file, and a
    file claiming 10⁹ trajectories must reach the size check, not build a list first.
    """

    first: int
    count: int
    start: int
    stop: int


def plan_splits(n: int, t: int, dataset: Mapping[str, Any]) -> dict[str, _Split]:
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
            plan[name] = _Split(0, 1, start, start + sizes[name])
            start += sizes[name]
        return plan
    if t < need:
        raise SdkdError(
            f"trajectories have {t} frames, too few for in_steps + out_steps = {need}"
        )
    sizes = split_sizes(dataset["split"], n, "trajectories")
    plan, first = {}, 0
    for name in SPLITS:
        plan[name] = _Split(first, sizes[name], 0, t)
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
    raw: RawSeries, index: int, part: _Split, dataset: Mapping[str, Any]
) -> np.ndarray:
    ts, xs = dataset["temporal_stride"], dataset["spatial_stride"]
    frames = raw.trajectory(index)[::ts][part.start : part.stop, :, ::xs, ::xs]
    if not np.isfinite(frames).all():
        bad = int(np.argmax(~np.isfinite(frames).reshape(frames.shape[0], -1).all(axis=1)))
        raise SdkdError(
            f"{raw.path}: trajectory {index} contains NaN or Inf, or a value beyond "
            f"float32's range (first at frame {(part.start + bad) * ts} of the raw data)"
        )
    return np.ascontiguousarray(frames)


def _iter_plan(plan: dict[str, _Split]) -> Iterator[tuple[str, int, int, _Split]]:
    """(split name, position in the split, raw trajectory, split) in writing order."""
    for split in SPLITS:
        part = plan[split]
        for position in range(part.count):
            yield split, position, part.first + position, part


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def preprocess(
    raw_path: str | Path,
    out: str | Path,
    dataset: Mapping[str, Any],
    *,
    name: str,
    max_gib: float = DEFAULT_MAX_GIB,
) -> Path:
    """Convert a raw file into the canonical HDF5 at ``out`` (atomically).

    Args:
        raw_path: the acquired raw file.
        out: the canonical file to write.
        dataset: the validated config block of the dataset.
        name: the dataset's name (stored as provenance).
        max_gib: the largest array (GiB as float32) to read or build: one raw
            trajectory, one split; ``limits.max_array_gib``.
    """
    raw_path, out = Path(raw_path), Path(out)
    if _same_file(raw_path, out):
        raise SdkdError(f"{out}: is the raw file itself; write the canonical file elsewhere")
    layout, options = raw_layout(dataset)
    with open_raw(raw_path, layout, max_gib=max_gib, **options) as raw:
        n_raw, t_raw, c, h, w = raw.shape
        n = min(n_raw, dataset["max_trajectories"] or n_raw)
        ts, xs = dataset["temporal_stride"], dataset["spatial_stride"]
        t = len(range(0, t_raw, ts))
        h, w = len(range(0, h, xs)), len(range(0, w, xs))
        plan = plan_splits(n, t, dataset)
        shapes = {
            split: (part.count, part.stop - part.start, c, h, w) for split, part in plan.items()
        }
        for split, shape in shapes.items():
            check_array(
                shape, max_gib, f"{raw_path}: the {split} split",
                "lower max_trajectories or raise temporal_stride or spatial_stride",
            )
        log.info("preprocess %s: %s → %s, splits %s", name, raw_path, out,
                 {k: v.count for k, v in plan.items()})
        stats = _ChannelStats(c)
        nbytes = sum(math.prod(shape) * FLOAT32 for shape in shapes.values())
        with h5_output(out, nbytes) as f:
            for split, shape in shapes.items():
                f.create_dataset(
                    f"{split}/frames",
                    shape=shape,
                    dtype=np.float32,
                    chunks=trajectory_chunks(shape),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
            total = sum(v.count for v in plan.values())
            for split, position, index, part in tqdm(
                _iter_plan(plan), total=total, desc=f"preprocess {name}", unit="traj"
            ):
                frames = _frames(raw, index, part, dataset)
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
