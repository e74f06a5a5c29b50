"""Readers for the raw layouts, each exposing trajectories as (T, C, H, W) arrays.

Layouts:

``sdkd``
    What ``sdkd acquire`` writes for simulated data: dataset ``frames`` of shape
    (N, T, C, H, W) with attributes ``channels``, ``dt`` and ``dx``.
``pdebench``
    PDEBench's 2-D files (e.g. ``2D_diff-react_NA_NA.h5``, ``2D_rdb_NA_NA.h5``): one
    group per seed ("0000", "0001", ...) holding ``data`` [T, X, Y, C] and ``grid/x``,
    ``grid/y``, ``grid/t``. X becomes H and Y becomes W.
``fno_mat``
    FNO's MATLAB v7.3 files (HDF5 inside): MATLAB stores column-major, so an array
    that MATLAB calls (N, H, W, T) appears in HDF5 as (T, W, H, N); the reader
    reverses the axes back, as FNO's own ``MatReader`` does.
``array``
    The user's HDF5 or NetCDF-4 file (NetCDF-4 is HDF5 underneath): one variable with
    a declared axis order ``T H W``, ``T C H W``, ``N T H W`` or ``N T C H W``. A
    single series (no N axis) is one trajectory.

Every reader checks what it can up front (file exists and is HDF5, variable present,
rank and axis order plausible) and raises :class:`~sdkd.errors.SdkdError` naming the
file and variable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sdkd.errors import SdkdError

AXIS_ORDERS = ("T H W", "T C H W", "N T H W", "N T C H W")
# NetCDF dimension names that can only mean time; used to catch a wrong axis order.
_TIME_NAMES = {"t", "time", "times", "frame", "frames", "step", "steps"}
# A model needs a few grid points to downsample; fewer almost always means the
# declared axis order put a channel or time axis where a spatial one belongs.
_MIN_GRID = 4


@dataclass
class RawSeries:
    """Trajectories of one raw file, read lazily one at a time.

    Attributes:
        shape: (N, T, C, H, W) of the whole collection.
        channels: channel names, length C.
        dt: time between frames (data units).
        dx: grid spacing (data units).
        source: a short description for provenance ("fno_mat:u", ...).
    """

    path: Path
    shape: tuple[int, int, int, int, int]
    channels: list[str]
    dt: float
    dx: float
    source: str
    _read: Callable[[int], np.ndarray]

    def __len__(self) -> int:
        return self.shape[0]

    def trajectory(self, i: int) -> np.ndarray:
        """Trajectory ``i`` as float32 (T, C, H, W)."""
        try:
            frames = np.asarray(self._read(i), dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise SdkdError(f"{self.path}: cannot read trajectory {i} ({exc})") from None
        if frames.shape != self.shape[1:]:
            raise SdkdError(
                f"{self.path}: trajectory {i} has shape {frames.shape}, "
                f"expected {self.shape[1:]} like the first one"
            )
        return frames


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise SdkdError(f"{path}: file not found")
    if not path.is_file():
        raise SdkdError(f"{path}: not a regular file")
    if not h5py.is_hdf5(path):
        raise SdkdError(f"{path}: not an HDF5 or NetCDF-4 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise SdkdError(f"{path}: corrupt or truncated HDF5 file ({exc})") from None


def _variable(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        found = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
        listing = ", ".join(found) if found else "none at the top level"
        raise SdkdError(f"{path}: no variable {name!r} (variables: {listing})")
    return obj


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def open_raw(path: str | Path, layout: str, **options: Any) -> Iterator[RawSeries]:
    """Open a raw file of the given layout; the file stays open inside the block.

    Args:
        path: the raw file.
        layout: ``sdkd``, ``pdebench``, ``fno_mat`` or ``array``.
        **options: ``variable`` (fno_mat, array), ``axes``, ``channels``, ``dt``, ``dx``
            (array).
    """
    readers = {"sdkd": _sdkd, "pdebench": _pdebench, "fno_mat": _fno_mat, "array": _array}
    if layout not in readers:
        raise SdkdError(f"unknown raw layout {layout!r}: expected one of {', '.join(readers)}")
    path = Path(path)
    with _open_h5(path) as f:
        yield readers[layout](f, path, **options)


def _sdkd(f: h5py.File, path: Path) -> RawSeries:
    frames = _variable(f, path, "frames")
    if frames.ndim != 5:
        raise SdkdError(f"{path}: 'frames' has rank {frames.ndim}, expected (N, T, C, H, W)")
    channels = [_attr_str(c) for c in frames.attrs.get("channels", [])]
    return RawSeries(
        path=path,
        shape=tuple(frames.shape),
        channels=channels or [f"c{i}" for i in range(frames.shape[2])],
        dt=float(frames.attrs.get("dt", 1.0)),
        dx=float(frames.attrs.get("dx", 1.0)),
        source=f"sdkd:{_attr_str(f.attrs.get('equation', 'frames'))}",
        _read=lambda i: frames[i],
    )


def _pdebench(f: h5py.File, path: Path) -> RawSeries:
    seeds = sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v)
    if not seeds:
        raise SdkdError(f"{path}: no PDEBench seed groups with a 'data' array found")
    first = f[seeds[0]]["data"]
    if first.ndim != 4:
        raise SdkdError(
            f"{path}: {seeds[0]}/data has rank {first.ndim}, expected PDEBench's [T, X, Y, C]"
        )
    t, x, y, c = first.shape
    grid = f[seeds[0]].get("grid")
    dt = dx = 1.0
    if grid is not None and "t" in grid and len(grid["t"]) > 1:
        dt = float(np.diff(grid["t"][:2])[0])
    if grid is not None and "x" in grid and len(grid["x"]) > 1:
        dx = float(np.diff(grid["x"][:2])[0])
    names = {1: ["h"], 2: ["u", "v"]}.get(c, [f"c{i}" for i in range(c)])
    return RawSeries(
        path=path,
        shape=(len(seeds), t, c, x, y),
        channels=names,
        dt=dt,
        dx=dx,
        source="pdebench",
        _read=lambda i: np.moveaxis(f[seeds[i]]["data"][()], -1, 1),
    )


def _fno_mat(f: h5py.File, path: Path, variable: str = "u") -> RawSeries:
    data = _variable(f, path, variable)
    if data.ndim != 4:
        raise SdkdError(
            f"{path}: variable {variable!r} has rank {data.ndim}; FNO's 2-D time series are "
            "MATLAB (N, H, W, T), stored reversed as (T, W, H, N)"
        )
    t, w, h, n = data.shape
    return RawSeries(
        path=path,
        shape=(n, t, 1, h, w),
        channels=[variable],
        dt=1.0,
        dx=1.0 / h,
        source=f"fno_mat:{variable}",
        # (T, W, H) of trajectory i → (T, 1, H, W)
        _read=lambda i: np.swapaxes(data[..., i], 1, 2)[:, None],
    )


def _dimension_names(data: h5py.Dataset) -> list[str | None]:
    """NetCDF-4 / HDF5 dimension-scale names per axis, None where absent."""
    names: list[str | None] = []
    for dim in data.dims:
        label = dim.label or (Path(dim[0].name).name if len(dim) else "")
        names.append(label.lower() or None)
    return names


def _array(
    f: h5py.File,
    path: Path,
    variable: str,
    axes: str,
    channels: list[str] | None = None,
    dt: float = 1.0,
    dx: float = 1.0,
) -> RawSeries:
    if axes not in AXIS_ORDERS:
        raise SdkdError(f"axes {axes!r} for {path}: expected one of {', '.join(AXIS_ORDERS)}")
    data = _variable(f, path, variable)
    labels = axes.split()
    if data.ndim != len(labels):
        raise SdkdError(
            f"{path}: variable {variable!r} has shape {data.shape} (rank {data.ndim}), "
            f"but axes {axes!r} needs rank {len(labels)}"
        )
    for position, name in enumerate(_dimension_names(data)):
        if name in _TIME_NAMES and labels[position] != "T":
            raise SdkdError(
                f"{path}: variable {variable!r} has its time dimension {name!r} at axis "
                f"{position}, but axes {axes!r} puts {labels[position]} there"
            )
    size = dict(zip(labels, data.shape, strict=True))
    for axis in ("H", "W"):
        if size[axis] < _MIN_GRID:
            raise SdkdError(
                f"{path}: variable {variable!r} axis {axis} has only {size[axis]} points "
                f"(shape {data.shape}, axes {axes!r}): is the axis order right?"
            )
    n, c = size.get("N", 1), size.get("C", 1)
    if channels is not None and len(channels) != c:
        raise SdkdError(
            f"{path}: {len(channels)} channel names given for {c} channels of {variable!r}"
        )

    def read(i: int) -> np.ndarray:
        frames = data[i] if "N" in size else data[()]
        return frames if "C" in size else frames[:, None]

    return RawSeries(
        path=path,
        shape=(n, size["T"], c, size["H"], size["W"]),
        channels=list(channels) if channels else [f"c{i}" for i in range(c)],
        dt=dt,
        dx=dx,
        source=f"file:{variable}",
        _read=read,
    )
