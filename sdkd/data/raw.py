"""Readers for the raw layouts, each exposing trajectories as (T, C, H, W) arrays.

Layouts:

``sdkd``
    What ``sdkd acquire`` writes for simulated and fetched data: dataset ``frames`` of
    shape (N, T, C, H, W) with attributes ``channels``, ``dt`` and ``dx`` (and, for
    data in physical units, ``units``, one per channel). Data on a calendar adds
    ``time_stamps`` int64 (T,), seconds since 1970-01-01T00:00:00 UTC; a grid with
    coordinates adds 1-D ``latitude`` (H,) and ``longitude`` (W,) in degrees.
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

Every reader checks what it can up front (file exists, is readable and is HDF5, variable
present and of real numbers, rank, sizes and axis order plausible, attributes sane) and
raises :class:`~sdkd.errors.SdkdError` naming the file and variable. :func:`open_raw`
also refuses a trajectory larger than ``limits.max_array_gib`` before reading it.

The declared axis order of an ``array`` is checked two ways. Dimension names (HDF5
dimension scales or labels, NetCDF dimensions) are trusted when the file has them: a
name that means time, trajectories, channels or space must sit where the declared order
puts that axis. Without names, sizes decide, but only where they are unambiguous, since
a wrong refusal leaves a user no way round it but to add names: a grid is usually square
and seldom more than 3:1, while trajectories and frames are seldom exactly as many. So
the order is refused when another pair of axes is a far more likely grid than the
declared H, W: the declared grid is over 3:1 and another pair is within 2:1, or the
declared grid is not square, both its sides are smaller than every N and T axis, and
another pair is exactly square. Both sides of a likely grid must be at least 8.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sdkd.data.limits import DEFAULT_MAX_GIB, H5_ERRORS, check_array, first_line
from sdkd.errors import SdkdError, os_error_message

log = logging.getLogger(__name__)

AXIS_ORDERS = ("T H W", "T C H W", "N T H W", "N T C H W")
# Dimension names that can only mean one kind of axis, keyed by the declared labels
# that kind allows, in the order a conflict is reported (time first: a misplaced time
# axis is the commonest mistake).
_DIMENSION_NAMES = {
    "T": {"t", "time", "times", "frame", "frames", "step", "steps", "timestep", "timesteps"},
    "N": {"n", "sample", "samples", "trajectory", "trajectories", "traj", "batch", "member",
          "members", "ensemble", "realization", "realizations", "run", "runs", "seed", "seeds"},
    "C": {"c", "channel", "channels", "field", "fields", "component", "components", "var",
          "vars", "variable", "variables"},
    "HW": {"x", "y", "lat", "latitude", "lon", "longitude", "row", "rows", "col", "cols",
           "column", "columns", "nx", "ny"},
}
_KIND = {"T": "time", "N": "trajectory", "C": "channel", "HW": "spatial"}
# A model needs a few grid points to downsample; fewer almost always means the
# declared axis order put a channel or time axis where a spatial one belongs.
_MIN_GRID = 4
# Size heuristics of the axis order (module docstring): the side ratio above which a
# grid is unlikely, the one within which another pair is a likely grid, and the
# smallest side of a likely grid.
_ELONGATED = 3.0
_SQUARISH = 2.0
_MIN_LIKELY_GRID = 8
_NO_AXIS = {"N": "trajectories", "T": "frames", "C": "channels"}


@dataclass
class RawSeries:
    """Trajectories of one raw file, read lazily one at a time.

    Attributes:
        shape: (N, T, C, H, W) of the whole collection.
        channels: channel names, length C.
        dt: time between frames (data units).
        dx: grid spacing (data units).
        source: a short description for provenance ("fno_mat:u", ...).
        variable: the array's path in the file (for messages).
        stored_shape: the array's shape as stored (for messages).
        times: the frames' time stamps, ``datetime64[s]`` of shape (T,) (UTC, or the
            data's own clock where it states no zone, as TaxiBJ's), for data
            on a calendar (weather, traffic); None for simulations. Shared by every
            trajectory. Gaps (a step larger than the usual one) are allowed: no
            forecasting window crosses one.
        coords: coordinates of the grid axes, H's first, then W's, e.g.
            ``{"latitude": (H,), "longitude": (W,)}`` in degrees; empty when the grid
            has none (a grid with only W's coordinate has none either).
        units: physical units per channel (length C), None when unknown.
    """

    path: Path
    shape: tuple[int, int, int, int, int]
    channels: list[str]
    dt: float
    dx: float
    source: str
    variable: str
    stored_shape: tuple[int, ...]
    _read: Callable[[int], np.ndarray]
    times: np.ndarray | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    units: list[str] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def trajectory(self, i: int) -> np.ndarray:
        """Trajectory ``i`` as float32 (T, C, H, W)."""
        try:
            # float64 beyond float32's range becomes Inf here, which preprocess reports.
            with np.errstate(over="ignore"):
                frames = np.asarray(self._read(i), dtype=np.float32)
        except H5_ERRORS as exc:
            raise SdkdError(
                f"{self.path}: cannot read trajectory {i} ({first_line(exc)})"
            ) from None
        if frames.shape != self.shape[1:]:
            raise SdkdError(
                f"{self.path}: trajectory {i} has shape {frames.shape}, "
                f"expected {self.shape[1:]} like the first one"
            )
        return frames


def _open_h5(path: Path) -> h5py.File:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        broken = f" (a broken link to {os.readlink(path)})" if path.is_symlink() else ""
        raise SdkdError(f"{path}: file not found{broken}") from None
    except OSError as exc:  # a link loop, a component that is a file, a name too long
        raise SdkdError(os_error_message(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise SdkdError(f"{path}: not a regular file ({kind}); expected an HDF5 or NetCDF-4 file")
    try:
        # h5py would report an unreadable file as an HDF5 error without its name.
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SdkdError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        if not h5py.is_hdf5(path):
            raise SdkdError(f"{path}: not an HDF5 or NetCDF-4 file")
        return h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise SdkdError(f"{path}: corrupt or truncated HDF5 file ({first_line(exc)})") from None


def _dataset(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    """Dataset ``name`` of ``f``, or a clear error listing the file's variables."""
    try:
        obj = f.get(name)
    except H5_ERRORS as exc:  # a broken external link, a damaged group
        raise SdkdError(f"{path}: cannot open variable {name!r} ({first_line(exc)})") from None
    if not isinstance(obj, h5py.Dataset):
        found = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
        listing = ", ".join(found) if found else "none at the top level"
        what = "is a group, not a variable" if isinstance(obj, h5py.Group) else "not found"
        raise SdkdError(f"{path}: no variable {name!r}: {what} (variables: {listing})")
    return obj


def _variable(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    """Dataset ``name`` of real numbers with data, or a clear error."""
    obj = _dataset(f, path, name)
    if obj.shape is None:
        raise SdkdError(f"{path}: variable {name!r} holds no data (an empty dataspace)")
    if obj.dtype.kind not in "fiu":
        raise SdkdError(
            f"{path}: variable {name!r} has dtype {obj.dtype}, expected real numbers "
            "(float or integer)"
        )
    return obj


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _positive(value: Any, path: Path, what: str) -> float:
    """A positive finite number from an attribute or coordinate, or a clear error."""
    plain = np.asarray(value).tolist()
    try:
        number = float(plain)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise SdkdError(f"{path}: {what} is {plain!r}, expected a positive number")
    return number


def _channel_names(value: Any, count: int, path: Path, what: str) -> list[str]:
    names = np.asarray(value)
    if names.ndim != 1 or len(names) != count:
        raise SdkdError(
            f"{path}: {what} is {names.tolist()!r}, expected a list of {count} channel name(s)"
        )
    return [_attr_str(c) for c in names.tolist()]


@contextlib.contextmanager
def open_raw(
    path: str | Path, layout: str, *, max_gib: float = DEFAULT_MAX_GIB, **options: Any
) -> Iterator[RawSeries]:
    """Open a raw file of the given layout; the file stays open inside the block.

    Args:
        path: the raw file.
        layout: ``sdkd``, ``pdebench``, ``fno_mat`` or ``array``.
        max_gib: the largest trajectory (GiB as float32) that may be read,
            ``limits.max_array_gib``.
        **options: ``variable`` (fno_mat, array), ``axes``, ``channels``, ``dt``, ``dx``
            (array).
    """
    readers = {"sdkd": _sdkd, "pdebench": _pdebench, "fno_mat": _fno_mat, "array": _array}
    if layout not in readers:
        raise SdkdError(f"unknown raw layout {layout!r}: expected one of {', '.join(readers)}")
    path = Path(path)
    with _open_h5(path) as f:
        try:
            raw = readers[layout](f, path, **options)
        except H5_ERRORS as exc:  # the readers raise SdkdError for what they check
            raise SdkdError(
                f"{path}: corrupt or truncated HDF5 file ({first_line(exc)})"
            ) from None
        _check_sizes(raw)
        check_array(
            raw.shape[1:], max_gib,
            f"{path}: variable {raw.variable!r} of shape {raw.stored_shape}: one trajectory",
        )
        yield raw


def _check_sizes(raw: RawSeries) -> None:
    where = f"{raw.path}: variable {raw.variable!r}"
    for label, size in zip("NTC", raw.shape, strict=False):
        if size < 1:
            raise SdkdError(f"{where} of shape {raw.stored_shape} holds no {_NO_AXIS[label]}")
    for label, size in zip("HW", raw.shape[3:], strict=True):
        if size < _MIN_GRID:
            raise SdkdError(
                f"{where} axis {label} has only {size} points (shape {raw.stored_shape}): "
                "is the axis order right?"
            )


def _sdkd(f: h5py.File, path: Path) -> RawSeries:
    frames = _variable(f, path, "frames")
    if frames.ndim != 5:
        raise SdkdError(f"{path}: 'frames' has rank {frames.ndim}, expected (N, T, C, H, W)")
    attrs = frames.attrs
    channels = (
        _channel_names(attrs["channels"], frames.shape[2], path, "attribute frames.channels")
        if "channels" in attrs else [f"c{i}" for i in range(frames.shape[2])]
    )
    units = (
        _channel_names(attrs["units"], frames.shape[2], path, "attribute frames.units")
        if "units" in attrs else None
    )
    times = None
    if "time_stamps" in f:
        stamps = _coordinate(f, path, "time_stamps", frames.shape[1], "iu")
        times = stamps.astype("datetime64[s]")
        if not (np.diff(stamps) > 0).all():
            raise SdkdError(f"{path}: time_stamps are not strictly increasing")
    coords = {
        name: _coordinate(f, path, name, frames.shape[axis], "fiu").astype(np.float64)
        for name, axis in (("latitude", 3), ("longitude", 4))
        if name in f
    }
    return RawSeries(
        path=path,
        shape=tuple(frames.shape),
        channels=channels,
        dt=_positive(attrs.get("dt", 1.0), path, "attribute frames.dt"),
        dx=_positive(attrs.get("dx", 1.0), path, "attribute frames.dx"),
        source=f"sdkd:{_attr_str(f.attrs.get('equation', f.attrs.get('source', 'frames')))}",
        variable="frames",
        stored_shape=frames.shape,
        _read=lambda i: frames[i],
        times=times,
        coords=coords,
        units=units,
    )


def _coordinate(f: h5py.File, path: Path, name: str, size: int, kinds: str) -> np.ndarray:
    """A 1-D coordinate of ``size`` entries with a dtype kind in ``kinds``, read whole."""
    data = _variable(f, path, name)
    if data.shape != (size,) or data.dtype.kind not in kinds:
        raise SdkdError(
            f"{path}: {name!r} is {data.dtype} of shape {data.shape}, expected {size} "
            "numbers, one per frame or grid line"
        )
    values = data[()]
    if not np.isfinite(values.astype(np.float64)).all():
        raise SdkdError(f"{path}: {name!r} holds NaN or Inf")
    return values


def _spacing(grid: Any, name: str, path: Path, where: str) -> float:
    """Step of PDEBench's ``grid/<name>`` coordinate; 1.0 when there is none."""
    coords = grid.get(name) if isinstance(grid, h5py.Group) else None
    if (
        not isinstance(coords, h5py.Dataset)
        or coords.shape is None
        or coords.ndim != 1
        or len(coords) < 2
        or coords.dtype.kind not in "fiu"
    ):
        return 1.0
    first, second = coords[:2].astype(np.float64)
    return _positive(second - first, path, f"the step of {where}/grid/{name}")


def _pdebench(f: h5py.File, path: Path) -> RawSeries:
    seeds = sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v)
    if not seeds:
        raise SdkdError(f"{path}: no PDEBench seed groups with a 'data' array found")
    first = _variable(f, path, f"{seeds[0]}/data")
    if first.ndim != 4:
        raise SdkdError(
            f"{path}: {seeds[0]}/data has rank {first.ndim}, expected PDEBench's [T, X, Y, C]"
        )
    t, x, y, c = first.shape
    grid = f[seeds[0]].get("grid")
    names = {1: ["h"], 2: ["u", "v"]}.get(c, [f"c{i}" for i in range(c)])

    def read(i: int) -> np.ndarray:
        data = _variable(f, path, f"{seeds[i]}/data")
        # Each seed is its own array: check its shape before reading all of it.
        if data.shape != first.shape:
            raise SdkdError(
                f"{path}: {seeds[i]}/data has shape {data.shape}, expected {first.shape} "
                f"like {seeds[0]}/data"
            )
        return np.moveaxis(data[()], -1, 1)

    return RawSeries(
        path=path,
        shape=(len(seeds), t, c, x, y),
        channels=names,
        dt=_spacing(grid, "t", path, seeds[0]),
        dx=_spacing(grid, "x", path, seeds[0]),
        source="pdebench",
        variable=f"{seeds[0]}/data",
        stored_shape=first.shape,
        _read=read,
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
        dx=1.0 / h if h else 1.0,  # h = 0 is reported by _check_sizes
        source=f"fno_mat:{variable}",
        variable=variable,
        stored_shape=data.shape,
        # (T, W, H) of trajectory i → (T, 1, H, W)
        _read=lambda i: np.swapaxes(data[..., i], 1, 2)[:, None],
    )


def _dimension_names(data: h5py.Dataset) -> list[str | None]:
    """NetCDF-4 / HDF5 dimension-scale names per axis, None where absent."""
    names: list[str | None] = []
    try:
        for dim in data.dims:
            label = dim.label or (Path(dim[0].name).name if len(dim) else "")
            names.append(label.lower() or None)
    except H5_ERRORS:
        # Broken dimension scales name nothing; the sizes are checked instead.
        return [None] * data.ndim
    return names


def _kind_of(name: str | None) -> str | None:
    return next((kind for kind, words in _DIMENSION_NAMES.items() if name in words), None)


def _check_named_axes(
    path: Path, variable: str, axes: str, names: list[str | None]
) -> bool:
    """Check the declared order against the file's dimension names.

    Returns:
        Whether any name said what its axis is (then the names are trusted).
    """
    labels = axes.split()
    kinds = [_kind_of(name) for name in names]
    conflicts = [
        (list(_DIMENSION_NAMES).index(kind), position)
        for position, kind in enumerate(kinds)
        if kind is not None and labels[position] not in kind
    ]
    if conflicts:
        _, position = min(conflicts)
        kind = kinds[position]
        order = _order_from_names(kinds, labels)
        said = f"; its dimensions ({', '.join(map(str, names))}) say {order!r}" if order else ""
        raise SdkdError(
            f"{path}: variable {variable!r} has its {_KIND[kind]} dimension "
            f"{names[position]!r} at axis {position}, but axes {axes!r} puts "
            f"{labels[position]} there{said}"
        )
    return any(kinds)


def _order_from_names(kinds: list[str | None], labels: list[str]) -> str | None:
    """The axis order the dimension names spell, when they name every declared axis."""
    spatial = iter("HW")
    order = [next(spatial, "?") if kind == "HW" else kind for kind in kinds]
    return " ".join(order) if sorted(map(str, order)) == sorted(labels) else None


def _check_axis_sizes(path: Path, variable: str, axes: str, shape: tuple[int, ...]) -> None:
    """Refuse a declared order when another pair of axes is a far likelier grid."""
    labels = axes.split()
    size = dict(zip(labels, shape, strict=True))
    h, w = size["H"], size["W"]
    if min(h, w) < _MIN_GRID:
        return  # _check_sizes names the axis that is too small

    def ratio(a: int, b: int) -> float:
        return max(a, b) / min(a, b)

    free = [i for i, label in enumerate(labels) if label != "C"]
    declared = (labels.index("H"), labels.index("W"))
    pairs = [p for p in itertools.combinations(free, 2) if p != declared]
    grids = [p for p in pairs if min(shape[p[0]], shape[p[1]]) >= _MIN_LIKELY_GRID]
    if ratio(h, w) > _ELONGATED:
        likelier = [p for p in grids if ratio(shape[p[0]], shape[p[1]]) <= _SQUARISH]
    elif h != w and max(h, w) < min(size[a] for a in ("N", "T") if a in size):
        likelier = [p for p in grids if shape[p[0]] == shape[p[1]]]
    else:
        return
    if not likelier:
        return
    best = min(likelier, key=lambda p: (ratio(shape[p[0]], shape[p[1]]),
                                        -shape[p[0]] * shape[p[1]]))
    rest = [i for i in free if i not in best]
    guesses = []
    for others in itertools.permutations([a for a in labels if a in ("N", "T")]):
        guess = list(labels)
        guess[best[0]], guess[best[1]] = "H", "W"
        for position, label in zip(rest, others, strict=True):
            guess[position] = label
        guesses.append(repr(" ".join(guess)))
    raise SdkdError(
        f"{path}: variable {variable!r} of shape {shape} read as axes {axes!r} has a "
        f"{h} × {w} grid, but axes {best[0]} and {best[1]} "
        f"({shape[best[0]]} × {shape[best[1]]}) look like the grid: the order looks like "
        f"{' or '.join(guesses)}; transpose it to {axes!r} (or another order of "
        f"{', '.join(AXIS_ORDERS)}), or name its dimensions (time, y, x, ...)"
    )


def _array(
    f: h5py.File,
    path: Path,
    variable: str,
    axes: str,
    channels: list[str] | None = None,
    dt: float | None = None,
    dx: float | None = None,
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
    names = _dimension_names(data)
    if _check_named_axes(path, variable, axes, names):
        basis = f"dimension names ({', '.join(str(n) for n in names)})"
    else:
        _check_axis_sizes(path, variable, axes, data.shape)
        basis = "the declared axes and plausible sizes"
    size = dict(zip(labels, data.shape, strict=True))
    log.info("%s: %r of shape %s read as %s, from %s", path, variable, data.shape,
             " ".join(f"{a}={n}" for a, n in size.items()), basis)
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
        dt=1.0 if dt is None else dt,
        dx=1.0 if dx is None else dx,
        source=f"file:{variable}",
        variable=variable,
        stored_shape=data.shape,
        _read=read,
    )
