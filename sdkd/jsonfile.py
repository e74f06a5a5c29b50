"""Reading the pipeline's JSON files with one clear error per way they can be wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
