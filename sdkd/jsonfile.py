"""The pipeline's JSON files: read with one clear error per way they can be wrong, written
atomically as strict JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError


def read_json(
    path: str | os.PathLike[str],
    *,
    what: str,
    hint: str = "",
    error: type[SdkdError] = SdkdError,
) -> Any:
    """The parsed content of ``path``.

    Args:
        what: how the file is named in messages ("summary", "evaluation file", ...).
        hint: what to do when the file is missing ("run `sdkd aggregate` first").
        error: the :class:`SdkdError` subclass raised, naming ``path``.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found{'; ' + hint if hint else ''}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise error(f"{path}: cannot read the {what} ({reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{path}: the {what} is not valid JSON "
            f"(line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None


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
