"""Bounds a data step checks before it allocates memory or fills a disk.

Sizes read from an input (a raw variable's shape, a canonical file's split) are
multiplied out before anything is read, so a corrupt or hostile file ends with one
line naming ``limits.max_array_gib`` instead of exhausting the machine. Outputs are
written by :func:`h5_output`, which checks the free space first and turns a write
failure into an :class:`~sdkd.errors.SdkdError`: HDF5 buffers chunks and, when the
disk fills while it evicts them, fails inside a destructor and crashes the
interpreter (a segfault after a string of ignored exceptions). The readers share
:data:`H5_ERRORS` and :func:`first_line` to turn h5py's failures into one line.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py

from sdkd.atomic import atomic_path
from sdkd.config import schema
from sdkd.errors import SdkdError

GIB = 2**30
FLOAT32 = 4

# The schema's default, for callers that have no config (library use, tests).
DEFAULT_MAX_GIB: float = schema()["properties"]["limits"]["properties"]["max_array_gib"][
    "default"
]

# HDF5 refuses chunks of 4 GiB or more, and gzip holds a whole chunk in memory on
# both ends; a typical trajectory (tens of MB) stays one chunk under this cap.
_CHUNK_BYTES = 256 * 2**20


def float32_gib(shape: Sequence[int]) -> float:
    """GiB that an array of ``shape`` takes as float32 (exact for any size)."""
    return math.prod(int(n) for n in shape) * FLOAT32 / GIB


def check_array(shape: Sequence[int], max_gib: float, what: str, advice: str = "") -> None:
    """Refuse an array larger than ``max_gib`` before it is allocated.

    Args:
        shape: the array's shape.
        max_gib: the bound, ``limits.max_array_gib``.
        what: the message's start, naming the file and the array.
        advice: another way out than raising the bound, appended to the message.
    """
    gib = float32_gib(shape)
    if gib > max_gib:
        other = f", or {advice}" if advice else ""
        raise SdkdError(
            f"{what} would take {gib:.3g} GiB as float32 (shape {tuple(shape)}), more than "
            f"limits.max_array_gib = {max_gib:g}; raise limits.max_array_gib if the data "
            f"really is this large{other}"
        )


def trajectory_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """HDF5 chunks for (N, T, C, H, W): one trajectory, split along T, C, H if too big."""
    chunk = [1, *shape[1:]]
    for axis in (1, 2, 3):
        while math.prod(chunk) * FLOAT32 > _CHUNK_BYTES and chunk[axis] > 1:
            chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)


def check_free_space(directory: Path, nbytes: int, out: Path) -> None:
    """Refuse to start writing ``out`` when ``directory`` cannot hold ``nbytes``."""
    # gzip may grow incompressible data by a fraction of a percent; HDF5 adds metadata.
    need = nbytes + nbytes // 100 + 2**20
    free = shutil.disk_usage(directory).free
    if free < need:
        raise SdkdError(
            f"{out}: needs up to {_size(need)} but only {_size(free)} are free on its file "
            "system; free some space or write elsewhere"
        )


def _size(nbytes: int) -> str:
    return f"{nbytes / GIB:.3g} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.3g} MiB"


# What h5py raises for a damaged file (cut short, overwritten) besides OSError: KeyError
# for an object it cannot open, RuntimeError for a group it cannot list, ValueError for
# a dtype it cannot decode.
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: h5py's carry HDF5's error stack."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _write_failure(out: Path, exc: BaseException) -> SdkdError:
    # The errno says in a few words what HDF5's stack says in many; h5py's RuntimeErrors
    # (from a close) carry it only in their text.
    errno = getattr(exc, "errno", None)
    if errno is None:
        found = re.search(r"errno = (\d+)", str(exc))
        errno = int(found.group(1)) if found else None
    reason = os.strerror(errno) if errno else first_line(exc)
    return SdkdError(f"{out}: cannot write it ({reason}); nothing was written there")


@contextlib.contextmanager
def h5_output(out: str | os.PathLike[str], nbytes: int) -> Iterator[h5py.File]:
    """An HDF5 file to fill, renamed onto ``out`` only when everything succeeded.

    Args:
        out: the file to write; an existing file is replaced only on success.
        nbytes: an upper bound on the file's size, checked against the free space.
    """
    out = Path(out)
    if out.is_dir():
        raise SdkdError(f"{out}: is a directory; expected the path of a file to write")
    with atomic_path(out) as tmp:
        check_free_space(tmp.parent, nbytes, out)
        # No chunk cache: each chunk goes to disk when it is assigned, so a full disk
        # raises an OSError at that assignment instead of in a destructor later.
        f = h5py.File(tmp, "w", rdcc_nbytes=0)
        try:
            yield f
        except OSError as exc:
            _close_after_failure(f)
            if exc.filename is not None:  # not this file: the caller's line names it
                raise
            raise _write_failure(out, exc) from None
        except BaseException:
            _close_after_failure(f)
            raise
        try:
            f.close()
        except (OSError, RuntimeError) as exc:  # metadata flushed at close
            raise _write_failure(out, exc) from None


def _close_after_failure(f: h5py.File) -> None:
    # The temporary file is deleted next; a second error while closing it says nothing
    # the first one did not.
    with contextlib.suppress(Exception):
        f.close()
