"""The pipeline's JSON files: read with one clear error per way they can be wrong, written
atomically as strict JSON.

Every read is bounded: :func:`read_bounded` refuses a file over a size bound before
reading it (the report's CSV readers use it too), so a corrupt or hostile input ends with
one line naming the file and the bound instead of exhausting the machine.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError

MAX_BYTES = 64 * 2**20
"""The largest file read by default (64 MiB). The largest file sdkd writes is an
evaluation file: its ``sample`` (two lead times of truth and prediction, 7 significant
digits) of a 1024 × 1024 grid is about 50 MB; the paper's 64 × 64 grid needs 0.2 MB."""

MAX_DEPTH = 32
"""The deepest nesting of lists and objects read. sdkd's files nest at most 7 levels
(summary.json; an evaluation file 6); deeper data would only make the code that walks
it (comparing identities, hashing them) run out of stack."""


# Short reprs in messages: a hostile value (a megabyte string, a huge nested list) must
# not turn the one error line into a page.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40
_REPR.maxlist = _REPR.maxdict = 4
_REPR.maxlevel = 2


def shown(value: Any) -> str:
    """A value read from a file as messages show it: its repr, cut short."""
    return _REPR.repr(value)


def size_text(n_bytes: int) -> str:
    """``64 MiB``, ``1.5 GiB``, ``300 bytes``."""
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n_bytes >= factor:
            return f"{n_bytes / factor:.3g} {unit}"
    return f"{n_bytes} bytes"


def read_bounded(
    path: str | os.PathLike[str],
    *,
    what: str,
    hint: str = "",
    error: type[SdkdError] = SdkdError,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes``.

    Args:
        what: how the file is named in messages ("summary", "evaluation file", ...).
        hint: what to do when the file is missing ("run `sdkd aggregate` first").
        error: the :class:`SdkdError` subclass raised, naming ``path``.
    """
    path = Path(path)

    def too_large(size: str) -> SdkdError:
        return error(f"{path}: the {what} is {size}; sdkd reads at most "
                     f"{size_text(max_bytes)} of one (a bound against corrupt or hostile files)")

    try:
        info = path.stat()
        # a FIFO or a device would block or never end: only regular files are read
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: the {what} is not a regular file")
        if info.st_size > max_bytes:
            raise too_large(size_text(info.st_size))
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may have grown since stat
    except FileNotFoundError:
        raise error(f"{path}: {what} not found{'; ' + hint if hint else ''}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise too_large(f"larger than {size_text(max_bytes)}")
    return data


class _NotStrict(ValueError):
    """A token strict JSON does not have (NaN, Infinity) or a number out of float range."""


def _refuse_constant(token: str) -> Any:
    raise _NotStrict(f"{token} is not a JSON number")


def _float_range_int(token: str) -> int:
    # 308 digits stay below the largest float; no count in sdkd's files comes near
    if len(token.lstrip("-")) > 308:
        raise _NotStrict(f"the number {token[:24]}… is out of range")
    return int(token)


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _NotStrict(f"the number {token[:24]} is out of range")
    return value


def read_json(path: str | os.PathLike[str], *, what: str, hint: str = "",
              error: type[SdkdError] = SdkdError) -> Any:
    """The parsed content of ``path`` (arguments as :func:`read_bounded`), strict JSON of
    at most :data:`MAX_BYTES` nested at most :data:`MAX_DEPTH` levels; NaN, Infinity and
    numbers beyond float range are refused, so every number converts to a finite float."""
    data = read_bounded(path, what=what, hint=hint, error=error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None
    too_deep = error(f"{path}: the {what} nests lists or objects more than {MAX_DEPTH} "
                     "levels deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           parse_int=_float_range_int)
    except json.JSONDecodeError as exc:
        raise error(
            f"{path}: the {what} is not valid JSON "
            f"(line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except _NotStrict as exc:
        raise error(f"{path}: the {what} is not strict JSON ({exc})") from None
    except RecursionError:
        raise too_deep from None
    if _deeper_than(value, MAX_DEPTH):
        raise too_deep
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels in ``value``, walked
    without recursion (the point is not to run out of stack)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack += [(child, depth + 1) for child in children if isinstance(child, dict | list)]
    return False


def write_json(
    path: str | os.PathLike[str],
    value: Any,
    *,
    indent: int | None = None,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``value`` to ``path`` atomically, as strict JSON (a NaN or infinity raises
    ValueError before anything is written) with a newline at the end.

    Args:
        default: turns a value :mod:`json` cannot write into one it can (numpy numbers).
    """
    text = json.dumps(value, indent=indent, allow_nan=False, default=default)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
