"""Raw data → the canonical HDF5 of a dataset (``results/data/{dataset}.h5``).

Layout written::

    /train/frames, /val/frames, /test/frames   float32 (N, T, C, H, W), one chunk per
                                               trajectory, gzip + shuffle
    /{split}/time_stamps   int64 (T,), seconds since 1970-01-01 UTC (data on a
                           calendar only); windows never cross a gap in them
    /mask                  uint8 (H, W), 1 on the data's pixels (padded grids only)
    /coords/{name}         1-D grid coordinates of the data's pixels (e.g. latitude,
                           longitude in degrees), when the source has them
    attrs: dataset, source, raw_sha256, channels, units, mean, std, in_steps, out_steps,
           window_stride, dt, dx, grid_policy, source_grid, grid_before, created_with

Splits are by trajectory, in file order (train first). A single long series is cut in
time into three contiguous segments instead, so no window can straddle two splits; a
series with time stamps can also be split by time ranges (train years, a validation
year, a test year, as the weather benchmarks do). Mean and std are per channel over the
train split's data pixels only (never padding), accumulated in float64 with Chan's
pairwise update so that long runs do not lose precision.

The grid is fitted to the models here (:mod:`sdkd.data.grid`), before any training:
exactly, by cropping, or by padding with a mask.

Before anything is read, each split's array is checked against ``limits.max_array_gib``
(training may read a split whole) and the output directory's free space against the
splits' uncompressed size (see :mod:`sdkd.data.limits`).
"""

from __future__ import annotations

import hashlib
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
from sdkd.data.calendar import time_range, window_starts
from sdkd.data.grid import GridFit, fit_grid
from sdkd.data.limits import DEFAULT_MAX_GIB, FLOAT32, check_array, h5_output, trajectory_chunks
from sdkd.data.paths import file_pattern, input_files
from sdkd.data.raw import RawSeries
from sdkd.data.sources import open_source
from sdkd.errors import SdkdError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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


def is_time_split(split: Mapping[str, Any]) -> bool:
    """Whether a split names time ranges rather than counts or fractions."""
    return all(isinstance(split[name], list) for name in SPLITS)


def plan_splits(
    n: int, t: int, dataset: Mapping[str, Any], times: np.ndarray | None = None
) -> dict[str, _Split]:
    """Assign raw trajectories (or time segments of a series) to splits.

    Args:
        n: trajectories after ``max_trajectories``.
        t: frames per trajectory after ``temporal_stride``.
        times: the frames' time stamps (T,) after ``temporal_stride``, if any; a time
            range split needs them.
    """
    need = dataset["in_steps"] + dataset["out_steps"]
    if is_time_split(dataset["split"]):
        return _plan_time_split(n, t, dataset, times)
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


def _plan_time_split(
    n: int, t: int, dataset: Mapping[str, Any], times: np.ndarray | None
) -> dict[str, _Split]:
    """Each split: every trajectory's frames whose time stamp lies in its range."""
    if times is None:
        raise SdkdError(
            "split: time ranges need time stamps, and this data has none; split by counts "
            "or fractions"
        )
    span = dataset["in_steps"] + dataset["out_steps"]
    plan = {}
    for name in SPLITS:
        start, end = time_range(dataset["split"][name], f"split.{name}")
        first, stop = np.searchsorted(times, [start, end])
        windows = window_starts(times[first:stop], int(stop - first), span,
                                dataset["window_stride"])
        if len(windows) == 0:
            have = (f"{times[0]} … {times[-1]}" if len(times) else "none")
            raise SdkdError(
                f"split.{name}: {dataset['split'][name]} holds {stop - first} frames "
                f"and no gap-free run of in_steps + out_steps = {span} (the data's times: "
                f"{have})"
            )
        plan[name] = _Split(0, n, int(first), int(stop))
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


def _inputs(dataset: Mapping[str, Any], raw_path: Path | None) -> list[Path]:
    """The files the canonical file is made from: the acquired raw file, or the user's."""
    if dataset["source"] == "file":
        files = input_files(file_pattern(dataset["file"]))
        if raw_path is not None and not (len(files) == 1 and _same_file(raw_path, files[0])):
            raise SdkdError(
                f"--raw {raw_path}: a file source is read where the config says "
                f"({dataset['file']['path']}); leave --raw out"
            )
        return files
    if raw_path is None:
        raise SdkdError(f"a {dataset['source']} source needs --raw, the file acquire wrote")
    return [raw_path]


def _sha256(files: list[Path]) -> str:
    """One file's sha256, or for several (a glob, a Zarr store) the sha256 of their
    names and sha256s, one per line in sorted order."""
    if len(files) == 1:
        return sha256sum(files[0])
    lines = "".join(f"{path.name}:{sha256sum(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def preprocess(
    raw_path: str | Path | None,
    out: str | Path,
    dataset: Mapping[str, Any],
    *,
    name: str,
    max_gib: float = DEFAULT_MAX_GIB,
) -> Path:
    """Convert a dataset's raw data into the canonical HDF5 at ``out`` (atomically).

    Args:
        raw_path: the file ``sdkd acquire`` wrote; None for a ``file`` source, which
            is read where the config says.
        out: the canonical file to write.
        dataset: the validated config block of the dataset.
        name: the dataset's name (stored as provenance, and in messages).
        max_gib: the largest array (GiB as float32) to read or build: one raw
            trajectory, one split; ``limits.max_array_gib``.
    """
    out = Path(out)
    files = _inputs(dataset, None if raw_path is None else Path(raw_path))
    for path in files:
        if _same_file(path, out):
            raise SdkdError(
                f"{out}: is the raw file itself; write the canonical file elsewhere"
            )
    acquired = None if dataset["source"] == "file" else raw_path
    with open_source(dataset, acquired, max_gib=max_gib) as raw:
        n_raw, t_raw, c, h, w = raw.shape
        n = min(n_raw, dataset["max_trajectories"] or n_raw)
        ts, xs = dataset["temporal_stride"], dataset["spatial_stride"]
        t = len(range(0, t_raw, ts))
        times = None if raw.times is None else raw.times[::ts]
        fit = fit_grid(len(range(0, h, xs)), len(range(0, w, xs)), dataset["grid"]["policy"],
                       f"datasets.{name} ({raw.path})")
        plan = plan_splits(n, t, dataset, times)
        shapes = {
            split: (part.count, part.stop - part.start, c, *fit.shape)
            for split, part in plan.items()
        }
        for split, shape in shapes.items():
            check_array(
                shape, max_gib, f"{raw.path}: the {split} split",
                "lower max_trajectories or raise temporal_stride or spatial_stride",
            )
        log.info("preprocess %s: %s → %s, %s, splits %s", name, raw.path, out,
                 fit.describe(), {k: f"{v.count}×{v.stop - v.start}" for k, v in plan.items()})
        if fit.shape != fit.source:
            print(f"sdkd: {name}: {fit.describe()}", flush=True)
        nbytes = sum(math.prod(shape) * FLOAT32 for shape in shapes.values())
        with h5_output(out, nbytes) as f:
            stats = _write_splits(f, raw, plan, shapes, fit, dataset, name)
            _write_grid(f, raw, fit, xs)
            if times is not None:
                for split, part in plan.items():
                    f[f"{split}/time_stamps"] = (
                        times[part.start : part.stop].astype("datetime64[s]").astype(np.int64)
                    )
            f.attrs.update(
                {
                    "dataset": name,
                    "source": f"{dataset['source']}:{raw.source}",
                    "raw_sha256": _sha256(files),
                    "channels": raw.channels,
                    "units": raw.units or [""] * c,
                    "mean": stats.mean.astype(np.float64),
                    "std": stats.std.astype(np.float64),
                    "in_steps": dataset["in_steps"],
                    "out_steps": dataset["out_steps"],
                    "window_stride": dataset["window_stride"],
                    "dt": raw.dt * ts,
                    "dx": raw.dx * xs,
                    "grid_policy": fit.policy,
                    "source_grid": list(fit.source),
                    "grid_before": list(fit.before),
                    "created_with": f"sdkd {sdkd.__version__}",
                }
            )
    return out


def _write_splits(
    f: Any,
    raw: RawSeries,
    plan: dict[str, _Split],
    shapes: dict[str, tuple[int, ...]],
    fit: GridFit,
    dataset: Mapping[str, Any],
    name: str,
) -> _ChannelStats:
    """Write every split's frames, fitted to the grid; return the train statistics,
    taken over the data's pixels only (a padded edge would bias them)."""
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
    stats = _ChannelStats(raw.shape[2])
    total = sum(v.count for v in plan.values())
    for split, position, index, part in tqdm(
        _iter_plan(plan), total=total, desc=f"preprocess {name}", unit="traj"
    ):
        frames = _frames(raw, index, part, dataset)
        fitted = fit.apply(frames)
        f[f"{split}/frames"][position] = fitted
        if split == "train":
            stats.update(frames if fit.padded else fitted)
    if not (stats.std > 0).all():
        flat = [raw.channels[i] for i in np.flatnonzero(stats.std <= 0)]
        raise SdkdError(
            f"{raw.path}: channel(s) {', '.join(flat)} are constant over the train "
            "split; they cannot be normalised"
        )
    return stats


def _write_grid(f: Any, raw: RawSeries, fit: GridFit, stride: int) -> None:
    """The validity mask of a padded grid and the coordinates of the data's pixels."""
    mask = fit.mask()
    if mask is not None:
        f["mask"] = mask
    for axis, (coord, values) in enumerate(raw.coords.items()):
        kept = values[::stride]
        if fit.policy == "crop":
            kept = kept[fit.before[axis] : fit.before[axis] + fit.shape[axis]]
        f[f"coords/{coord}"] = kept
