"""TaxiBJ: DeepST's crowd-flow files, read as one cleaned series.

The files (``BJ13_M32x32_T30_InOut.h5`` … ``BJ16_M32x32_T30_InOut.h5``)
------------------------------------------------------------------------
Each holds two datasets (DeepST's data README,
https://github.com/TolicWang/DeepST/tree/master/data/TaxiBJ, a copy of
https://github.com/lucktroy/DeepST/tree/master/data/TaxiBJ):

``data``
    (number_of_timeslots, 2, 32, 32): ``data[i][0]`` the inflow and ``data[i][1]`` the
    outflow of the 32 × 32 grid over Beijing at time slot ``date[i]``.
``date``
    the time slots as byte strings ``YYYYMMDD`` + slot ``01`` … ``48`` (``b'2013070101'``
    is 2013-07-01 00:00–00:30); "T30" in the name: 30-minute slots, 48 a day. DeepST's
    ``string2timestamp`` maps slot k of day D to D + (k − 1) · 30 min.

The dtype of ``data`` is not stated anywhere we could read. DeepST's writer
(``deepst/utils/txt2hdf5_InOut.py`` in https://github.com/amirkhango/DeepST, a copy of
lucktroy's) builds the frames with ``np.loadtxt`` and SciPy's ``coo_matrix(...).toarray()``
(float64) and the dates from a list of Python strings (fixed-length bytes); it also
skips any slot whose text file covers under a quarter of the grid cells, which is why
slots are missing. So float64 counts are expected, but any real dtype is accepted.
Sizes and periods as printed by DeepST's ``stat`` (the BJ16 line in the README; all four
in the notebook ``data/TaxiBJ.ipynb`` of https://github.com/Sosa-Liu/AdaSTTC):
BJ13 4888 slots, 2013-07-01 … 2013-10-29; BJ14 4780, 2014-03-01 … 2014-06-27; BJ15
5596, 2015-03-01 … 2015-06-30; BJ16 7220, 2015-11-01 … 2016-04-10; min 0 and max
1230–1292 in every file. After DeepST drops incomplete days 21360 slots (445 days) are
left of the 22484 (same notebook).

Cleaning, and how it compares with DeepST's
-------------------------------------------
DeepST (``remove_incomplete_days`` in ``deepst/preprocessing/__init__.py``, applied to
each year in ``deepst/datasets/TaxiBJ.py``) keeps a day when, scanning the stamps in
file order, a slot-01 stamp is followed 47 entries later by a slot-48 stamp; every
entry dated with a kept day is then kept. Its training pairs are then looked up by time
stamp through a dict (``STMatrix.make_index``), so of duplicated stamps the last one in
the file wins. It also clips negative flows to 0 (``data[data < 0] = 0``) and holds out
the last 28 days as the test set (``len_test = 48 * 7 * 4`` in ``TaxiBJ/exptTaxiBJ.py``
of TolicWang/DeepST). Here:

* all files are put in time order (a list given out of order is fine) and, within
  them, the stamps are sorted: DeepST's positional scan would call a day with
  out-of-order stamps incomplete;
* a stamp that occurs more than once keeps its last occurrence (the file latest in
  time order, then the later entry), which is what DeepST's lookups use; a warning
  names how many were dropped;
* a day is kept when it has all 48 distinct slots. On well-formed files (stamps
  increasing, unique) this is exactly DeepST's rule;
* values are kept as stored: the published files have no negative flow (min 0 above),
  so DeepST's clipping changes nothing there, and a preprocessing step, not a reader,
  should decide what a negative count means.

OpenSTL's benchmark (https://github.com/chengtan9907/OpenSTL) forecasts 4 → 4 frames
(``openstl/datasets/dataset_constant.py``: in_shape [4, 2, 32, 32], pre_seq_length 4,
aft_seq_length 4). Its loader (``openstl/datasets/dataloader_taxibj.py``) only reads a
prepared ``taxibj/dataset.npz`` (X_train, Y_train, X_test, Y_test in [-1, 1], mapped to
[0, 1] by (x + 1) / 2); its install guide says the preprocessing is borrowed from
DeepST, hence min-max scaling and the last four weeks as test. X_train is (20461, 4, 2,
32, 32) (OpenSTL issue #39); the script that made the windows is not published.

Time stamps
-----------
``times`` are the slots' start times on DeepST's naive clock, which is presumably
Beijing's (UTC+8, no daylight saving); they are not shifted to UTC, so a day of slots
stays one calendar day. Days dropped as incomplete, and the months between the four
periods, are gaps in ``times``: no forecasting window crosses one.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sdkd.data.limits import DEFAULT_MAX_GIB, H5_ERRORS, check_array, first_line
from sdkd.data.raw import RawSeries, _check_sizes, _dataset, _open_h5, _variable
from sdkd.errors import SdkdError

log = logging.getLogger(__name__)

SLOTS_PER_DAY = 48
SLOT_SECONDS = 30 * 60
CHANNELS = ("inflow", "outflow")
UNITS = "taxis per 30 min"
_DAY_SECONDS = 86400
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})")
# Frames are read in runs of consecutive indices, at most this many bytes of the
# stored dtype at once, so a float64 file never doubles the float32 result's memory.
_READ_BYTES = 64 * 2**20

SOURCE: dict[str, object] = {
    "name": "taxibj",
    "layout": "taxibj",
    "description": (
        "TaxiBJ crowd flows (DeepST / ST-ResNet, AAAI 2017): taxi inflow and outflow on a "
        "32 × 32 grid over Beijing every 30 minutes, four periods from 2013-07 to 2016-04"
    ),
    "files": {
        "BJ13_M32x32_T30_InOut.h5": "4888 slots, 2013-07-01 … 2013-10-29",
        "BJ14_M32x32_T30_InOut.h5": "4780 slots, 2014-03-01 … 2014-06-27",
        "BJ15_M32x32_T30_InOut.h5": "5596 slots, 2015-03-01 … 2015-06-30",
        "BJ16_M32x32_T30_InOut.h5": "7220 slots, 2015-11-01 … 2016-04-10",
    },
    # 2 × 32 × 32 float64 per slot (see the module docstring), without HDF5 overhead or
    # compression: an estimate, not a listing of the published files.
    "size": "about 368 MB for the four files (80, 78, 92 and 118 MB of float64 frames)",
    "homepage": "https://github.com/lucktroy/DeepST/tree/master/data/TaxiBJ",
    "download": (
        "OneDrive https://1drv.ms/f/s!Akh6N7xv3uVmhOhDKwx3bm5zpHkDOQ or BaiduYun "
        "http://pan.baidu.com/s/1qYq7ja8 (shared folders, no direct file links; the "
        "folder carries an md5sum.txt)"
    ),
    "licence": (
        "no licence is given for the data: DeepST's README asks users to cite Zhang, "
        "Zheng and Qi, 'Deep Spatio-Temporal Residual Networks for Citywide Crowd Flows "
        "Prediction', AAAI 2017; the code is 'Copyright (c) 2016, Junbo Zhang. All rights "
        "reserved.'; OpenSTL, which mirrors a processed copy, asks not to redistribute it "
        "and to use it for research only"
    ),
    "how": (
        "no canonical checksummed host exists: give a download url with the known_hash "
        "of a copy you trust (the md5 from the folder's md5sum.txt), or a local file"
    ),
}


@dataclass
class _File:
    """One opened DeepST file and its parsed stamps."""

    path: Path
    data: h5py.Dataset
    seconds: np.ndarray  # (n,) int64: slot start, seconds since 1970-01-01 (naive clock)


@contextlib.contextmanager
def open_taxibj(
    paths: str | Path | Sequence[str | Path], *, max_gib: float = DEFAULT_MAX_GIB
) -> Iterator[RawSeries]:
    """Open DeepST's TaxiBJ files as one cleaned series; the files stay open inside the block.

    Args:
        paths: one or several ``BJ*_M32x32_T30_InOut.h5`` files (a lone path is one
            file), in any order; their slots are joined in time order.
        max_gib: the largest array (GiB as float32) that may be read,
            ``limits.max_array_gib``: each file's frames before its stamps are read, and
            the kept frames before they are.

    Yields:
        A :class:`RawSeries` of one trajectory: shape (1, T, 2, H, W), T the slots of
        the complete days, channels inflow and outflow in taxis per 30-minute slot,
        ``dt`` 0.5 hours, ``dx`` 1 grid cell, ``times`` the slots' start times
        (``datetime64[s]``, (T,)). ``_read(0)`` returns the frames as float32 (T, 2, H, W).

    Raises:
        SdkdError: a file that is missing, not HDF5 or damaged; ``data`` or ``date``
            missing or malformed; a stamp that does not parse or a slot outside 1..48;
            files whose grids differ; no complete day left. The message names the file.
    """
    # A lone path is a Sequence too (of characters, for a str): take it as one file.
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not paths:
        raise SdkdError("TaxiBJ: no files given; expected DeepST's BJ*_M32x32_T30_InOut.h5")
    with contextlib.ExitStack() as stack:
        files = []
        for path in paths:
            f = stack.enter_context(_open_h5(path))
            try:
                files.append(_read_file(f, path, max_gib))
            except H5_ERRORS as exc:
                raise SdkdError(
                    f"{path}: corrupt or truncated HDF5 file ({first_line(exc)})"
                ) from None
        first = files[0]
        for other in files[1:]:
            if other.data.shape[2:] != first.data.shape[2:]:
                raise SdkdError(
                    f"{other.path}: 'data' has a {_grid(other)} grid, but {first.path} has "
                    f"{_grid(first)}; the files of one TaxiBJ series must share their grid"
                )
        # Earliest first; a file without stamps sorts last and contributes nothing.
        files.sort(key=lambda fl: fl.seconds.min() if len(fl.seconds) else np.iinfo(np.int64).max)
        rank, index, seconds = _clean(files)
        h, w = first.data.shape[2:]
        raw = RawSeries(
            path=files[0].path,
            shape=(1, len(seconds), len(CHANNELS), h, w),
            channels=list(CHANNELS),
            dt=SLOT_SECONDS / 3600,
            dx=1.0,
            source="taxibj",
            variable="data",
            stored_shape=(sum(len(fl.seconds) for fl in files), len(CHANNELS), h, w),
            _read=lambda i: _read_kept(files, rank, index, i),
            times=seconds.astype("datetime64[s]"),
            units=[UNITS] * len(CHANNELS),
        )
        _check_sizes(raw)
        where = ", ".join(str(fl.path) for fl in files)
        check_array(raw.shape[1:], max_gib, f"{where}: the kept TaxiBJ frames")
        yield raw


def _grid(fl: _File) -> str:
    h, w = fl.data.shape[2:]
    return f"{h} × {w}"


def _read_file(f: h5py.File, path: Path, max_gib: float) -> _File:
    """Check one file's ``data`` and ``date`` and parse its stamps."""
    data = _variable(f, path, "data")
    if data.ndim != 4 or data.shape[1] != len(CHANNELS):
        raise SdkdError(
            f"{path}: 'data' has shape {data.shape}, expected DeepST's (N, 2, H, W): N time "
            "slots of inflow and outflow on an H × W grid"
        )
    date = _date_variable(f, path)
    if len(date) != len(data):
        raise SdkdError(
            f"{path}: 'date' has {len(date)} stamps but 'data' has {len(data)} frames; "
            "expected one stamp per frame"
        )
    # The stamps are read whole; a stamp is far smaller than a frame, so bounding the
    # frames bounds them too (a hostile file may declare a huge, never-written dataset).
    check_array(data.shape, max_gib, f"{path}: 'data' of shape {data.shape}: the whole file")
    return _File(path=path, data=data, seconds=_parse_stamps(date[()], path))


def _date_variable(f: h5py.File, path: Path) -> h5py.Dataset:
    """The ``date`` dataset of byte strings, or a clear error."""
    obj = _dataset(f, path, "date")
    # Variable-length strings read as objects (bytes); fixed-length ones as 'S'.
    if obj.shape is None or obj.ndim != 1 or obj.dtype.kind not in "SO":
        raise SdkdError(
            f"{path}: 'date' is {obj.dtype} of shape {obj.shape}, expected a list of byte "
            "strings like b'2013070101' (YYYYMMDD and slot 01..48), one per frame"
        )
    return obj


def _parse_stamps(stamps: np.ndarray, path: Path) -> np.ndarray:
    """Slot start times, seconds since 1970-01-01, of DeepST stamps (n,) → int64 (n,)."""
    epoch = datetime.date(1970, 1, 1)
    seconds = np.empty(len(stamps), dtype=np.int64)
    for i, raw in enumerate(stamps.tolist()):
        try:
            text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            text = None
        found = _STAMP.fullmatch(text.strip()) if text is not None else None
        date = None
        if found is not None:
            year, month, day, slot = map(int, found.groups())
            with contextlib.suppress(ValueError):  # no such day, e.g. 20130230
                date = datetime.date(year, month, day)
        if date is None:
            raise SdkdError(
                f"{path}: date[{i}] is {raw!r}, expected YYYYMMDD and a two-digit slot, "
                "like b'2013070101'"
            )
        if not 1 <= slot <= SLOTS_PER_DAY:
            raise SdkdError(
                f"{path}: date[{i}] is {raw!r}: slot {slot} is outside 1..{SLOTS_PER_DAY} "
                "(30-minute slots of a day)"
            )
        seconds[i] = (date - epoch).days * _DAY_SECONDS + (slot - 1) * SLOT_SECONDS
    return seconds


def _clean(files: list[_File]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept slots in time order: file rank, index in that file, start time (each (T,))."""
    seconds = np.concatenate([fl.seconds for fl in files])
    rank = np.concatenate([np.full(len(fl.seconds), k) for k, fl in enumerate(files)])
    index = np.concatenate([np.arange(len(fl.seconds)) for fl in files])
    order = np.lexsort((index, rank, seconds))
    seconds, rank, index = seconds[order], rank[order], index[order]
    # Of equal stamps the last in (file, entry) order stays, as in DeepST's lookups.
    last = np.ones(len(seconds), dtype=bool)
    last[:-1] = seconds[1:] != seconds[:-1]
    if not last.all():
        first_dup = seconds[~last][0].astype("datetime64[s]")
        log.warning("TaxiBJ: %d duplicated time stamps (the first at %s): kept the last of each",
                    int((~last).sum()), first_dup)
    seconds, rank, index = seconds[last], rank[last], index[last]
    days, inverse, counts = np.unique(seconds // _DAY_SECONDS, return_inverse=True,
                                      return_counts=True)
    complete = counts == SLOTS_PER_DAY
    if not complete.all():
        dropped = days[~complete].astype("datetime64[D]")
        log.info("TaxiBJ: dropped %d incomplete day(s), the first %s", len(dropped),
                 ", ".join(str(d) for d in dropped[:5]))
    keep = complete[inverse]
    if not keep.any():
        names = ", ".join(str(fl.path) for fl in files)
        raise SdkdError(
            f"{names}: no day has all {SLOTS_PER_DAY} half-hour slots in 'date', so nothing "
            "is left once incomplete days are dropped"
        )
    log.info("TaxiBJ: %d slots of %d complete days kept from %d file(s)", int(keep.sum()),
             int(complete.sum()), len(files))
    return rank[keep], index[keep], seconds[keep]


def _read_kept(files: list[_File], rank: np.ndarray, index: np.ndarray, i: int) -> np.ndarray:
    """The kept frames as float32 (T, 2, H, W), each file read in runs of its indices."""
    if i != 0:
        raise IndexError(f"TaxiBJ is one series: trajectory {i} does not exist")
    out = np.empty((len(index), *files[0].data.shape[1:]), dtype=np.float32)
    for k, fl in enumerate(files):
        where = np.flatnonzero(rank == k)  # positions in ``out``
        if not len(where):
            continue
        # h5py wants increasing indices, and slices of consecutive ones read far faster
        # than a list of single frames.
        order = np.argsort(index[where], kind="stable")
        where, wanted = where[order], index[where][order]
        frame_bytes = fl.data.dtype.itemsize * int(np.prod(fl.data.shape[1:]))
        most = max(1, _READ_BYTES // max(1, frame_bytes))
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        try:
            for run, dest in zip(np.split(wanted, breaks), np.split(where, breaks), strict=True):
                for start in range(0, len(run), most):
                    a = int(run[start])
                    b = int(run[min(start + most, len(run)) - 1]) + 1
                    # float64 beyond float32's range becomes Inf, which preprocess reports.
                    with np.errstate(over="ignore", invalid="ignore"):
                        out[dest[start:start + most]] = fl.data[a:b]
        except H5_ERRORS as exc:
            raise SdkdError(
                f"{fl.path}: cannot read 'data' ({first_line(exc)})"
            ) from None
    return out
