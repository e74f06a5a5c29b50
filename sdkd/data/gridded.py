"""Any gridded file a user has, read lazily as a :class:`~sdkd.data.raw.RawSeries`.

Formats, recognised by their first bytes (a file's name may say anything):

``netcdf``
    NetCDF-3 (classic or 64-bit offset, read with xarray's scipy engine) and NetCDF-4 or
    plain HDF5 (xarray's h5netcdf engine; HDF5 datasets without dimension scales get
    ``phony_dim_*`` dimensions, which name nothing). ``variable`` may be a path such as
    ``/group/u``.
``zarr``
    A Zarr directory store, format 2 or 3, with or without consolidated metadata.
``npy``
    A NumPy ``.npy`` file, memory-mapped; it has no names, so ``variable`` is not needed.
``npz``
    A NumPy ``.npz`` archive; ``variable`` is the array's key. A trajectory is read by
    streaming through the (possibly compressed) member, never the whole archive.

Several files (a glob's sorted matches) are concatenated along the time axis in the
order given. They must be of one format and agree on everything but the number of
frames: dimension names, the other axes' sizes, the grid's coordinates, channel labels
and units. Nothing is read whole unless it is one trajectory: ``RawSeries._read(i)``
reads trajectory i from each file into one (T, C, H, W) array.

What the files say is kept, as xarray decodes it: CF packing (``scale_factor``,
``add_offset``) is applied and ``_FillValue`` becomes NaN, so values are the numbers the
file means. A CF time coordinate on the time axis gives ``RawSeries.times`` (calendars
other than the standard one need cftime; without it the frames get no time stamps and
a warning says so); 1-D coordinates of the grid axes give ``RawSeries.coords``, a
latitude or longitude (by name, ``standard_name`` or units) under the key ``latitude``
or ``longitude``, anything else under its own name; ``units`` attributes give
``RawSeries.units``.

The declared axis order is checked as :func:`sdkd.data.raw.open_raw` checks an
``array``: by dimension names when the file has telling ones (a dimension whose name
says nothing is named by its CF ``axis`` or ``standard_name`` attribute, e.g. ERA5's
``valid_time``), else by the sizes of the axes.

xarray is imported when a file is opened, not with this module: it takes most of a
second to import, and the command line imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from sdkd.data.limits import DEFAULT_MAX_GIB, check_array, first_line
from sdkd.data.raw import (
    AXIS_ORDERS,
    RawSeries,
    _check_axis_sizes,
    _check_named_axes,
    _check_sizes,
    _kind_of,
    _positive,
)
from sdkd.errors import SdkdError, os_error_message

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

# What each recognised format is called in messages, and the family that names it in
# ``RawSeries.source`` (files of one family may be concatenated).
_DESCRIPTION = {
    "netcdf3": "a NetCDF-3 file",
    "hdf5": "a NetCDF-4 or HDF5 file",
    "zarr": "a Zarr store",
    "npy": "a NumPy .npy file",
    "npz": "a NumPy .npz archive",
}
_FAMILY = {"netcdf3": "netcdf", "hdf5": "netcdf", "zarr": "zarr", "npy": "npy", "npz": "npz"}
_READABLE = "NetCDF-3, NetCDF-4/HDF5, a Zarr store, .npy or .npz"
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
# Real numbers only: a bool mask, a complex field, strings or dates are not a field
# a model can forecast, and casting them to float32 would hide the mistake.
_NUMERIC = "fiu"
_LATITUDE = {"lat", "latitude", "nav_lat"}
_LONGITUDE = {"lon", "long", "longitude", "nav_lon"}
# CF attributes that say what a dimension is when its name does not: the word passed
# to the axis-order check in its place.
_CF_AXIS = {"t": "time", "y": "y", "x": "x"}
_CF_STANDARD_NAME = {
    "time": "time",
    "latitude": "latitude",
    "longitude": "longitude",
    "grid_latitude": "y",
    "grid_longitude": "x",
    "projection_y_coordinate": "y",
    "projection_x_coordinate": "x",
}


@dataclass
class _Array:
    """One named array of one file, not yet read.

    Attributes:
        what: how messages name it ("variable 't2m'", "key 'u'", "the array").
        name: the variable or key (None for a ``.npy`` file).
        shape: its shape as stored, in the declared axis order.
        dtype: its dtype as read (after CF decoding).
        dims: its dimension names, lowercase, None where unnamed.
        file_dims: its dimension names as the file spells them (for messages).
        read: the array (i = None) or its trajectory i (first axis N), as stored.
        units: its ``units`` attribute, None when absent.
        full_name: the name as the user gave it, with its group (``/fields/u``).
    """

    what: str
    name: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    dims: list[str | None]
    file_dims: list[str | None]
    read: Callable[[int | None], np.ndarray]
    units: str | None = None
    full_name: str | None = None


@dataclass
class _Part:
    """One file's share of the series: some frames of every trajectory.

    Attributes:
        path: the file (or Zarr store).
        arrays: the arrays that become its channels (one, or one per variable).
        labels: the declared axis order, split ("N", "T", "C", "H", "W").
        named: whether dimension names confirmed the axis order.
        times: reads its frames' time stamps, datetime64[s] (t,), None without.
        coords: reads the 1-D coordinates of the grid axes by label ("H", "W"): the
            key each is kept under and its values, float64 (h,) or (w,).
        channel_labels: reads the names the file gives the C axis's entries, if any.
        size: its size per label N, T, C, H, W (without an N axis N = 1; without a
            C axis C = the number of arrays).

    What is read on demand is read only after its size has been checked.
    """

    path: Path
    arrays: list[_Array]
    labels: list[str]
    named: bool
    times: Callable[[], np.ndarray | None] = lambda: None
    coords: Callable[[], dict[str, tuple[str, np.ndarray]]] = dict
    channel_labels: Callable[[], list[str] | None] = lambda: None
    size: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        first = self.arrays[0]
        self.size = dict(zip(self.labels, first.shape, strict=True))
        self.size.setdefault("N", 1)
        self.size.setdefault("C", len(self.arrays))

    @property
    def what(self) -> str:
        if len(self.arrays) == 1:
            return self.arrays[0].what
        kind = self.arrays[0].what.split()[0]  # "variable" or "key"
        return f"{kind}s " + ", ".join(repr(a.name) for a in self.arrays)

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(*(a.dtype for a in self.arrays))

    def fill(self, i: int, out: np.ndarray) -> None:
        """Write trajectory ``i``'s frames of this file into ``out`` (t, C, H, W)."""
        index = i if "N" in self.labels else None
        if "C" in self.labels:
            out[...] = self.arrays[0].read(index)
            return
        for c, array in enumerate(self.arrays):
            out[:, c] = array.read(index)


@contextlib.contextmanager
def open_gridded(
    paths: Sequence[Path],
    *,
    variable: str | list[str] | None,
    axes: str,
    channels: list[str] | None = None,
    dt: float | None = None,
    dx: float | None = None,
    max_gib: float = DEFAULT_MAX_GIB,
) -> Iterator[RawSeries]:
    """Open gridded files as one series; they stay open inside the block.

    Args:
        paths: one file or Zarr store, or several of one format (a glob's sorted
            matches, :func:`sdkd.data.paths.data_paths`), concatenated along time in
            this order.
        variable: the variable (NetCDF, HDF5 path, Zarr) or key (.npz) to read; a list
            of them, each of the same dimensions, become the channels; None reads the
            file's only variable (and is all a ``.npy`` file needs).
        axes: the stored axis order of each variable: ``T H W``, ``T C H W``,
            ``N T H W`` or ``N T C H W`` (without C for a list of variables).
        channels: channel names, length C; default the variables' names, the labels
            of the C axis's coordinate, or c0, c1, ...
        dt: time between frames; default the median step of the time stamps in
            hours, else 1.0.
        dx: grid spacing; default the step of the W axis's coordinate (e.g. degrees
            of longitude), else 1.0.
        max_gib: the largest trajectory (GiB as float32) that may be read,
            ``limits.max_array_gib``.

    Yields:
        The series, shape (N, T, C, H, W) with T summed over the files;
        ``trajectory(i)`` is float32 (T, C, H, W) with the files' values.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise SdkdError("no data files given; expected a file, a Zarr store or a glob's matches")
    if axes not in AXIS_ORDERS:
        raise SdkdError(
            f"axes {axes!r} for {paths[0]}: expected one of {', '.join(AXIS_ORDERS)}"
        )
    names = [variable] if isinstance(variable, str) else variable
    if names is not None:
        if not names or not all(isinstance(n, str) and n for n in names):
            raise SdkdError(f"variable {variable!r} for {paths[0]}: expected names of arrays")
        if len(names) > 1 and "C" in axes.split():
            raise SdkdError(
                f"{paths[0]}: axes {axes!r} has a C axis, but with a list of variables "
                "each variable is one channel; give each variable's own axes "
                f"({axes.replace(' C', '')!r})"
            )
        if len(set(names)) != len(names):
            raise SdkdError(f"{paths[0]}: variable {names!r} names a variable twice")
    formats = [_format(p) for p in paths]
    for path, fmt in zip(paths, formats, strict=True):
        if _FAMILY[fmt] != _FAMILY[formats[0]]:
            raise SdkdError(
                f"{path}: is {_DESCRIPTION[fmt]}, but {paths[0]} is "
                f"{_DESCRIPTION[formats[0]]}; the files of a glob must be of one format"
            )
    with contextlib.ExitStack() as stack:
        parts = []
        for path, fmt in zip(paths, formats, strict=True):
            with _library_errors(path, f"it as {_DESCRIPTION[fmt]}"):
                if fmt == "npy":
                    part = _npy_part(path, names, axes)
                elif fmt == "npz":
                    part = _npz_part(path, names, axes, max_gib, stack)
                else:
                    part = _xarray_part(path, fmt, names, axes, stack)
            parts.append(part)
        raw = _combine(parts, _FAMILY[formats[0]], axes, channels, dt, dx, max_gib)
        yield raw


@contextlib.contextmanager
def _library_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn a reading library's exception into one line naming the file.

    xarray, its engines, zarr, numcodecs, zipfile and NumPy raise many types for a
    damaged file (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile, ...),
    none of them a traceback a user should see.
    """
    try:
        yield
    except SdkdError:
        raise
    except Exception as exc:
        raise SdkdError(f"{path}: cannot read {doing} ({first_line(exc)})") from None


def _format(path: Path) -> str:
    """The format of ``path`` from its first bytes (or, for a directory, its Zarr files)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        broken = f" (a broken link to {os.readlink(path)})" if path.is_symlink() else ""
        raise SdkdError(f"{path}: file not found{broken}") from None
    except OSError as exc:
        raise SdkdError(os_error_message(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        if any((path / marker).is_file() for marker in _ZARR_MARKERS):
            return "zarr"
        raise SdkdError(
            f"{path}: a directory without {', '.join(_ZARR_MARKERS)}, so not a Zarr store; "
            f"expected {_READABLE}"
        )
    if not stat.S_ISREG(info.st_mode):
        raise SdkdError(f"{path}: not a regular file; expected {_READABLE}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise SdkdError(f"{path}: cannot read it ({exc.strerror})") from None
    if not head:
        raise SdkdError(f"{path}: an empty file; expected {_READABLE}")
    if head[:3] == b"CDF" and len(head) >= 4:
        if head[3] in (1, 2):
            return "netcdf3"
        if head[3] == 5:
            raise SdkdError(
                f"{path}: a NetCDF-3 64-bit-data (CDF-5) file, which sdkd cannot read; "
                "convert it to NetCDF-4 (nccopy -k nc4)"
            )
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):  # a zip archive, the container of .npz
        return "npz"
    try:
        # HDF5's signature may sit after a user block (512, 1024, ... bytes in).
        if h5py.is_hdf5(path):
            return "hdf5"
    except OSError:
        pass
    raise SdkdError(
        f"{path}: not a format sdkd reads (it starts with {head!r}); expected {_READABLE}"
    )


def _check_array(path: Path, array: _Array, axes: str) -> None:
    """Rank, dtype and non-empty axes of one array, against the declared order."""
    labels = axes.split()
    if len(array.shape) != len(labels):
        raise SdkdError(
            f"{path}: {array.what} has shape {array.shape} (rank {len(array.shape)}), "
            f"but axes {axes!r} needs rank {len(labels)}"
        )
    if array.dtype.kind not in _NUMERIC or array.dtype.fields is not None:
        raise SdkdError(
            f"{path}: {array.what} has dtype {array.dtype}, expected real numbers "
            "(float or integer)"
        )
    for label, size in zip(labels, array.shape, strict=True):
        if size == 0:
            raise SdkdError(
                f"{path}: {array.what} of shape {array.shape} holds no data (axis {label} "
                "has size 0)"
            )


def _check_dims(path: Path, array: _Array, axes: str) -> bool:
    """Check the declared order against the dimension names; whether they confirmed it."""
    try:
        return _check_named_axes(path, str(array.full_name or array.name), axes, array.dims)
    except SdkdError as exc:
        if array.dims == [d.lower() if d else None for d in array.file_dims]:
            raise
        # Some names were read from CF attributes: show what the file calls them.
        spelled = ", ".join(str(d) for d in array.file_dims)
        raise SdkdError(f"{exc} (the file's dimensions: {spelled})") from None


def _make_part(path: Path, arrays: list[_Array], axes: str, **meta: Any) -> _Part:
    """A file's part after checking each array and that the arrays agree."""
    first = arrays[0]
    for array in arrays:
        _check_array(path, array, axes)
        if array.shape != first.shape or array.dims != first.dims:
            raise SdkdError(
                f"{path}: {array.what} has shape {array.shape} and dimensions "
                f"({', '.join(map(str, array.file_dims))}), but {first.what} has "
                f"{first.shape} and ({', '.join(map(str, first.file_dims))}); a list of "
                "variables must share their dimensions"
            )
    named = _check_dims(path, first, axes)
    return _Part(path=path, arrays=arrays, labels=axes.split(), named=named, **meta)


# ---------------------------------------------------------------------------- NumPy


def _npy_header(fp: Any, path: Path, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from a .npy header; ``fp`` is left at the data."""
    try:
        version = np.lib.format.read_magic(fp)
        # Version 3.0 differs from 2.0 only in allowing UTF-8 field names, and arrays
        # with fields are refused anyway.
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(fp)
    except ValueError as exc:
        raise SdkdError(f"{path}: {what} has a corrupt .npy header ({first_line(exc)})") from None
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _check_stored_bytes(
    path: Path, what: str, shape: tuple[int, ...], dtype: np.dtype, available: int
) -> None:
    need = math.prod(shape) * dtype.itemsize
    if available < need:
        raise SdkdError(
            f"{path}: {what} is truncated: its header says {dtype} {shape} ({need} bytes) "
            f"but {available} bytes follow it"
        )


def _npy_part(path: Path, names: list[str] | None, axes: str) -> _Part:
    if names is not None and len(names) > 1:
        raise SdkdError(
            f"{path}: a .npy file holds one array, but variable lists {names!r}; save the "
            "variables in one .npz archive, or stack them as a C axis"
        )
    with open(path, "rb") as fp:
        shape, _fortran, dtype = _npy_header(fp, path, "the array")
        offset = fp.tell()
    array = _Array(
        what="the array",
        name=None,
        shape=shape,
        dtype=dtype,
        dims=[None] * len(shape),
        file_dims=[None] * len(shape),
        read=functools.partial(_read_npy, path),
    )
    _check_array(path, array, axes)
    _check_stored_bytes(path, "the array", shape, dtype, os.stat(path).st_size - offset)
    return _make_part(path, [array], axes)


def _read_npy(path: Path, i: int | None) -> np.ndarray:
    # Mapped anew for each read: a glob of many files would otherwise hold one open
    # descriptor per file (an mmap keeps its own).
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.array(mapped if i is None else mapped[i])


def _npz_part(
    path: Path, names: list[str] | None, axes: str, max_gib: float, stack: contextlib.ExitStack
) -> _Part:
    with zipfile.ZipFile(path) as zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist() if n.endswith(".npy")}
        listing = ", ".join(sorted(members)) or "none"
        if names is None:
            if len(members) != 1:
                raise SdkdError(
                    f"{path}: holds {len(members)} arrays (keys: {listing}); name the one "
                    "to read with variable"
                )
            names = list(members)
        arrays = []
        for name in names:
            if name not in members:
                raise SdkdError(f"{path}: no array with key {name!r} (keys: {listing})")
            what = f"key {name!r}"
            info = zf.getinfo(members[name])
            with zf.open(info) as fp:
                shape, fortran, dtype = _npy_header(fp, path, what)
                offset = fp.tell()
            reader = _NpzReader(path, info, what, shape, dtype, fortran)
            stack.callback(reader.close)
            array = _Array(
                what=what,
                name=name,
                shape=shape,
                dtype=dtype,
                dims=[None] * len(shape),
                file_dims=[None] * len(shape),
                read=reader.read,
            )
            _check_array(path, array, axes)
            _check_stored_bytes(path, what, shape, dtype, info.file_size - offset)
            if fortran:
                # Column-major data interleaves the trajectories: only the whole array
                # can be read.
                check_array(shape, max_gib, f"{path}: {what}, Fortran-ordered and so read "
                            "whole", "save it in C order (np.ascontiguousarray)")
            arrays.append(array)
    return _make_part(path, arrays, axes)


class _NpzReader:
    """Reads one array of an .npz archive whole or one entry of its first axis at a time.

    A stored (uncompressed) member is memory-mapped where it lies in the archive. A
    compressed one can only be decompressed from its start: the stream stays open
    between reads, so reading the entries in order decompresses the member once.
    """

    _LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name and extra lengths

    def __init__(self, path: Path, info: zipfile.ZipInfo, what: str,
                 shape: tuple[int, ...], dtype: np.dtype, fortran: bool) -> None:
        self.path, self.info, self.what = path, info, what
        self.shape, self.dtype, self.fortran = shape, dtype, fortran
        self._stream: tuple[zipfile.ZipFile, Any] | None = None
        self._data = 0  # where the array data starts in the decompressed member

    def read(self, i: int | None) -> np.ndarray:
        """The whole array (i = None) or its i-th entry along the first axis."""
        if self.fortran:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.info) as fp:
                whole = np.lib.format.read_array(fp, allow_pickle=False)
            return whole if i is None else np.array(whole[i])
        if self.info.compress_type == zipfile.ZIP_STORED:
            mapped = np.memmap(self.path, dtype=self.dtype, mode="r",
                               offset=self._stored_offset(), shape=self.shape)
            return np.array(mapped if i is None else mapped[i])
        piece = self.shape if i is None else self.shape[1:]
        nbytes = math.prod(piece) * self.dtype.itemsize
        fp = self._stream_at(0 if i is None else i * nbytes)
        data = fp.read(nbytes)
        if i is None:
            self.close()  # read once: no descriptor kept for a glob of many archives
        if len(data) != nbytes:
            raise SdkdError(f"{self.path}: {self.what} is truncated")
        return np.frombuffer(data, dtype=self.dtype).reshape(piece)

    def _stored_offset(self) -> int:
        """Where a stored member's array data starts in the archive file."""
        with open(self.path, "rb") as f:
            f.seek(self.info.header_offset)
            signature, name, extra = self._LOCAL_HEADER.unpack(
                f.read(self._LOCAL_HEADER.size)
            )
            if signature != b"PK\x03\x04":
                raise SdkdError(f"{self.path}: {self.what} has a corrupt zip entry header")
            f.seek(name + extra, os.SEEK_CUR)
            _npy_header(f, self.path, self.what)
            return f.tell()

    def _stream_at(self, position: int) -> Any:
        """The decompressed member, positioned ``position`` bytes after its header."""
        if self._stream is None:
            zf = zipfile.ZipFile(self.path)
            fp = zf.open(self.info)
            self._stream = (zf, fp)
            _npy_header(fp, self.path, self.what)
            self._data = fp.tell()
        fp = self._stream[1]
        # A forward seek decompresses and discards, in bounded buffers (16 MiB); a
        # backward one starts again from the member's start.
        fp.seek(self._data + position)
        return fp

    def close(self) -> None:
        if self._stream is not None:
            zf, fp = self._stream
            self._stream = None
            fp.close()
            zf.close()


# --------------------------------------------------------------------------- xarray


@functools.cache
def _lazy_index_options() -> dict[str, Any]:
    import xarray as xr

    # Without this (xarray >= 2025.7) opening a file reads every dimension coordinate
    # whole to index it, before any size is checked.
    if "create_default_indexes" in inspect.signature(xr.open_dataset).parameters:
        return {"create_default_indexes": False}
    return {}


def _open_dataset(path: Path, fmt: str, group: str | None) -> xr.Dataset:
    """The file as a lazily read dataset (no dask, no cache of what was read)."""
    import xarray as xr

    options: dict[str, Any] = {
        # cache=False: a read array would otherwise stay in memory with the dataset.
        "cache": False,
        # Keep a variable in units of "hours" a number, not a timedelta.
        "decode_timedelta": False,
        **_lazy_index_options(),
    }
    if group:
        options["group"] = group
    if fmt == "netcdf3":
        options["engine"] = "scipy"
    elif fmt == "hdf5":
        # Plain HDF5 has datasets without dimension scales; name their axes phony_dim_*.
        options.update(engine="h5netcdf", phony_dims="access")
    else:
        options.update(engine="zarr", consolidated=None, chunks=None)
    failures = []
    for decode_times in (True, False):
        try:
            with warnings.catch_warnings():
                # Unconsolidated stores are read all the same, only more slowly.
                warnings.filterwarnings(
                    "ignore", "Failed to open Zarr store with consolidated", RuntimeWarning
                )
                dataset = xr.open_dataset(path, decode_times=decode_times, **options)
        except Exception as exc:
            failures.append(exc)
            continue
        if failures:
            log.warning("%s: its times cannot be decoded (%s); the frames get no time stamps",
                        path, first_line(failures[0]))
        return dataset
    with warnings.catch_warnings():
        # scipy keeps a half-opened NetCDF-3 file mapped until the failure's traceback
        # lets go of it, then warns that it cannot close it: let go now, quietly.
        warnings.filterwarnings("ignore", "Cannot close a netcdf_file", RuntimeWarning)
        failures_text = first_line(failures[0])
        for exc in failures:
            exc.__traceback__ = exc.__context__ = exc.__cause__ = None
        failures.clear()
    where = f"group {group!r} of it" if group else f"it as {_DESCRIPTION[fmt]}"
    raise SdkdError(f"{path}: cannot read {where} ({failures_text})")


def _split_group(names: list[str] | None, path: Path) -> tuple[str | None, list[str] | None]:
    """("group/sub", ["u", "v"]) from ["/group/sub/u", "/group/sub/v"]."""
    if names is None:
        return None, None
    split = [name.strip("/").rpartition("/") for name in names]
    groups = {group for group, _, _ in split}
    if len(groups) > 1:
        raise SdkdError(
            f"{path}: variables {names!r} are in different groups; a list of variables "
            "must be in one group"
        )
    return groups.pop() or None, [name for _, _, name in split]


def _dimension_word(dataset: xr.Dataset, dim: str) -> str | None:
    """What the axis check is told a dimension is called (lowercase; None: unnamed)."""
    low = dim.lower()
    if low.startswith("phony_dim_"):
        return None
    if _kind_of(low) is not None or dim not in dataset.variables:
        return low
    coordinate = dataset.variables[dim]
    attrs = coordinate.attrs
    word = _CF_STANDARD_NAME.get(str(attrs.get("standard_name", "")).lower())
    word = word or _CF_AXIS.get(str(attrs.get("axis", "")).lower())
    if word is None and coordinate.dtype.kind == "M":
        word = "time"
    return word or low


def _xarray_part(
    path: Path, fmt: str, names: list[str] | None, axes: str, stack: contextlib.ExitStack
) -> _Part:
    given = names
    group, names = _split_group(names, path)
    dataset = _open_dataset(path, fmt, group)
    stack.callback(dataset.close)
    listing = ", ".join(sorted(map(str, dataset.data_vars))) or "none"
    if names is None:
        if len(dataset.data_vars) != 1:
            raise SdkdError(
                f"{path}: holds {len(dataset.data_vars)} variables ({listing}); name the "
                "one to read with variable"
            )
        names = [str(next(iter(dataset.data_vars)))]
    arrays = []
    for k, name in enumerate(names):
        full_name = given[k] if given else name
        if name not in dataset.variables:
            where = f" in group {group!r}" if group else ""
            raise SdkdError(f"{path}: no variable {name!r}{where} (variables: {listing})")
        variable = dataset.variables[name]
        dims = [str(d) for d in variable.dims]
        units = variable.attrs.get("units")
        arrays.append(
            _Array(
                what=f"variable {full_name!r}",
                name=name,
                shape=tuple(int(n) for n in variable.shape),
                dtype=variable.dtype,
                dims=[_dimension_word(dataset, d) for d in dims],
                file_dims=list(dims),
                read=functools.partial(_read_variable, variable),
                units=None if units is None else str(units),
                full_name=full_name,
            )
        )
    labels = axes.split()
    part = _make_part(path, arrays, axes)
    dims = dict(zip(labels, arrays[0].file_dims, strict=True))
    part.times = functools.partial(_times, dataset, str(dims["T"]), path)
    part.coords = functools.partial(
        _grid_coords, dataset, {a: str(dims[a]) for a in "HW"}, path
    )
    if "C" in dims:
        part.channel_labels = functools.partial(_labels, dataset, str(dims["C"]))
    return part


def _read_variable(variable: xr.Variable, i: int | None) -> np.ndarray:
    # Indexing a lazily loaded variable reads only the indexed part.
    return np.asarray((variable if i is None else variable[i]).values)


def _coordinate(dataset: xr.Dataset, dim: str) -> xr.Variable | None:
    """The 1-D coordinate along ``dim`` (the dimension's own, else a datetime one)."""
    own = dataset.variables.get(dim)
    if own is not None and own.dims == (dim,):
        return own
    for name in dataset.coords:
        coordinate = dataset.variables[name]
        if coordinate.dims == (dim,) and coordinate.dtype.kind == "M":
            return coordinate
    return None


def _times(dataset: xr.Dataset, dim: str, path: Path) -> np.ndarray | None:
    """The frames' time stamps as datetime64[s] (T,), None without a decoded time axis."""
    coordinate = _coordinate(dataset, dim)
    if coordinate is None or coordinate.dtype.kind != "M":
        return None
    values = np.asarray(coordinate.values)
    if np.isnat(values).any():
        raise SdkdError(f"{path}: the time coordinate of {dim!r} has missing values (NaT)")
    seconds = values.astype("datetime64[s]")
    if (seconds != values).any():
        log.warning("%s: time stamps finer than a second are not kept", path)
        return None
    return seconds


def _grid_coords(
    dataset: xr.Dataset, dims: dict[str, str], path: Path
) -> dict[str, tuple[str, np.ndarray]]:
    """Numeric 1-D coordinates of the H and W dimensions: label → (key, float64 values)."""
    coords: dict[str, tuple[str, np.ndarray]] = {}
    for label, dim in dims.items():
        coordinate = _coordinate(dataset, dim)
        if coordinate is None or coordinate.dtype.kind not in _NUMERIC:
            continue
        values = np.asarray(coordinate.values, dtype=np.float64)
        if not np.isfinite(values).all():
            log.warning("%s: coordinate %r holds NaN or Inf; it is not kept", path, dim)
            continue
        key = _coordinate_key(dim, coordinate.attrs)
        if any(key == other for other, _ in coords.values()):
            key = dim  # two latitudes: keep the file's names apart
        coords[label] = (key, values)
    return coords


def _coordinate_key(dim: str, attrs: dict[Any, Any]) -> str:
    """``latitude``/``longitude`` for a coordinate that is one, else its own name."""
    standard = str(attrs.get("standard_name", "")).lower()
    units = str(attrs.get("units", "")).lower()
    if dim.lower() in _LATITUDE or standard == "latitude" or units.startswith("degrees_n"):
        return "latitude"
    if dim.lower() in _LONGITUDE or standard == "longitude" or units.startswith("degrees_e"):
        return "longitude"
    return dim


def _labels(dataset: xr.Dataset, dim: str) -> list[str] | None:
    """Channel names from a coordinate of strings along the C dimension."""
    coordinate = _coordinate(dataset, dim)
    # Strings are kind U or S, or O (Python str), or T (NumPy's StringDType).
    if coordinate is None or coordinate.dtype.kind not in "USOT":
        return None
    values = np.asarray(coordinate.values).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


# ------------------------------------------------------------------------- combined


def _check_like(first: _Part, part: _Part) -> None:
    """A later file must differ from the first only in its number of frames."""
    a, b = first.arrays[0], part.arrays[0]
    if b.dims != a.dims:
        raise SdkdError(
            f"{part.path}: {part.what} has dimensions ({', '.join(map(str, b.file_dims))}), "
            f"but in {first.path} ({', '.join(map(str, a.file_dims))}); the files of a glob "
            "must share their dimensions"
        )
    for label in first.labels:
        if label != "T" and part.size[label] != first.size[label]:
            name = b.file_dims[first.labels.index(label)]
            dim = f" ({name})" if name else ""
            raise SdkdError(
                f"{part.path}: {part.what} has shape {b.shape}, but {a.shape} in "
                f"{first.path}: axis {label}{dim} has {part.size[label]} points, not "
                f"{first.size[label]}; the files of a glob must differ only in time"
            )
    for x, y in zip(first.arrays, part.arrays, strict=True):
        if x.units != y.units:
            raise SdkdError(
                f"{part.path}: {y.what} has units {y.units!r}, but {x.units!r} in "
                f"{first.path}; convert the files to one unit"
            )


def _check_grid(
    first: _Part,
    grid: dict[str, tuple[str, np.ndarray]],
    part: _Part,
    other: dict[str, tuple[str, np.ndarray]],
) -> None:
    """A later file's grid coordinates must be the first file's, exactly."""
    for label in "HW":
        mine, theirs = grid.get(label), other.get(label)
        if (mine is None) != (theirs is None) or (mine and theirs and mine[0] != theirs[0]):
            raise SdkdError(
                f"{part.path}: axis {label} has coordinate {theirs[0] if theirs else None!r}, "
                f"but {mine[0] if mine else None!r} in {first.path}; the files of a glob "
                "must share one grid"
            )
        if mine and theirs and not np.array_equal(mine[1], theirs[1]):
            at = int(np.flatnonzero(mine[1] != theirs[1])[0])
            raise SdkdError(
                f"{part.path}: coordinate {mine[0]!r} differs from {first.path}'s (entry "
                f"{at}: {theirs[1][at]:g}, not {mine[1][at]:g}); the files of a glob must "
                "share one grid"
            )


def _check_times(parts: list[_Part], times: list[np.ndarray]) -> np.ndarray:
    """The files' time stamps joined, strictly increasing."""
    joined = np.concatenate(times)
    steps = np.diff(joined)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "s"))
    if bad.size:
        frame = int(bad[0]) + 1  # the first frame not after the one before it
        ends = np.cumsum([len(t) for t in times])
        k = int(np.searchsorted(ends, frame, side="right"))
        start = int(ends[k - 1]) if k else 0
        if frame == start:
            raise SdkdError(
                f"{parts[k].path}: its first time {joined[frame]} is not after "
                f"{joined[frame - 1]}, the last of {parts[k - 1].path}; the files of a glob "
                "are joined in name order and must follow each other in time"
            )
        raise SdkdError(
            f"{parts[k].path}: its times are not strictly increasing (frame "
            f"{frame - start}: {joined[frame]} after {joined[frame - 1]})"
        )
    return joined


def _combine(
    parts: list[_Part],
    family: str,
    axes: str,
    channels: list[str] | None,
    dt: float | None,
    dx: float | None,
    max_gib: float,
) -> RawSeries:
    first = parts[0]
    n, c, h, w = (first.size[a] for a in "NCHW")
    what = first.what
    many = f" and {len(parts) - 1} more file(s), joined in time" if len(parts) > 1 else ""
    total = 0
    grid: dict[str, tuple[str, np.ndarray]] = {}
    channel_labels: list[str] | None = None
    times: list[np.ndarray | None] = []
    for k, part in enumerate(parts):
        if k:
            _check_like(first, part)
        total += part.size["T"]
        # Before a coordinate or time stamp is read: their sizes come from the files.
        check_array((total, c, h, w), max_gib,
                    f"{first.path}{many}: {what} of {total} frames: one trajectory")
        with _library_errors(part.path, "its coordinates"):
            part_grid = part.coords()
            part_times = part.times()
            part_labels = part.channel_labels()
        if k == 0:
            grid, channel_labels = part_grid, part_labels
        else:
            _check_grid(first, grid, part, part_grid)
            if part_labels != channel_labels:
                raise SdkdError(
                    f"{part.path}: channels {part_labels}, but {channel_labels} in "
                    f"{first.path}; "
                    "the files of a glob must hold the same channels"
                )
        if k and (part_times is None) != (times[0] is None):
            has, lacks = (part, first) if part_times is not None else (first, part)
            raise SdkdError(
                f"{lacks.path}: has no time stamps on its time axis, but {has.path} has; "
                "the files of a glob must all have them or none"
            )
        times.append(part_times)
    stored = list(first.arrays[0].shape)
    stored[first.labels.index("T")] = total
    stored_shape = tuple(stored)
    if not first.named:
        array = first.arrays[0]
        _check_axis_sizes(first.path, array.full_name or array.name or "array", axes,
                          stored_shape)
    stamps = None if times[0] is None else _check_times(parts, [t for t in times if t is not None])

    names = _channel_names(first, channels, channel_labels)
    units = [a.units for a in first.arrays]
    if len(first.arrays) == 1:
        units = units * c
    dtype = np.result_type(*(p.dtype for p in parts))

    def read(i: int) -> np.ndarray:
        frames = np.empty((total, c, h, w), dtype=dtype)
        start = 0
        for part in parts:
            stop = start + part.size["T"]
            with _library_errors(part.path, f"{part.what} (trajectory {i})"):
                part.fill(i, frames[start:stop])
            start = stop
        return frames

    variables = [a.full_name or a.name for a in first.arrays if a.name is not None]
    raw = RawSeries(
        path=first.path,
        shape=(n, total, c, h, w),
        channels=names,
        dt=_time_step(first.path, dt, stamps),
        dx=_grid_step(first.path, dx, grid.get("W")),
        source=f"{family}:{','.join(variables)}" if variables else family,
        variable=", ".join(variables) or "array",
        stored_shape=stored_shape,
        _read=read,
        times=stamps,
        coords=dict(grid.values()),
        units=None if all(u is None for u in units) else [u or "" for u in units],
    )
    _check_sizes(raw)
    log.info(
        "%s%s: %s of shape %s read as (N, T, C, H, W) = %s, axis order from %s", first.path,
        many, what, stored_shape, raw.shape,
        "dimension names" if first.named else "the declared axes and plausible sizes",
    )
    return raw


def _channel_names(
    first: _Part, channels: list[str] | None, labels: list[str] | None
) -> list[str]:
    c = first.size["C"]
    if channels is not None:
        if len(channels) != c:
            raise SdkdError(
                f"{first.path}: {len(channels)} channel names given for {c} channels of "
                f"{first.what}"
            )
        return [str(name) for name in channels]
    if "C" not in first.labels:
        return [a.name or f"c{i}" for i, a in enumerate(first.arrays)]
    if labels is not None and len(set(labels)) == c:
        return labels
    return [f"c{i}" for i in range(c)]


def _time_step(path: Path, dt: float | None, stamps: np.ndarray | None) -> float:
    """``dt`` as given, else the median step of the time stamps in hours, else 1.0."""
    if dt is not None:
        return _positive(dt, path, "dt")
    if stamps is None or len(stamps) < 2:
        return 1.0
    seconds = np.diff(stamps).astype(np.int64)
    return float(np.median(seconds)) / 3600.0


def _grid_step(path: Path, dx: float | None, coordinate: tuple[str, np.ndarray] | None) -> float:
    """``dx`` as given, else the median step of the W axis's coordinate, else 1.0."""
    if dx is not None:
        return _positive(dx, path, "dx")
    if coordinate is None or len(coordinate[1]) < 2:
        return 1.0
    step = float(np.median(np.abs(np.diff(coordinate[1]))))
    return step if math.isfinite(step) and step > 0 else 1.0
