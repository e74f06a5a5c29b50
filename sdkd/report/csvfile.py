"""The report's CSV inputs (``metrics.csv``, each run's ``history.csv``, Snakemake's
benchmark TSVs), read with a size bound and one clear error per way they can be wrong."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sdkd.errors import SdkdError
from sdkd.jsonfile import read_bounded, shown


def read_csv(path: str | os.PathLike[str], *, what: str, hint: str = "", sep: str = ",",
             dtype: Mapping[str, str] | None = None,
             required: tuple[str, ...] = ()) -> pd.DataFrame:
    """The table in ``path`` (at most :data:`sdkd.jsonfile.MAX_BYTES`), with at least
    one row and every ``required`` column.

    Raises:
        SdkdError: naming ``path`` (``what`` names the file, ``hint`` what to do when it is
            missing).
    """
    path = Path(path)
    data = read_bounded(path, what=what, hint=hint)
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=sep, dtype=dtype)
    except (ValueError, pd.errors.ParserError) as exc:  # also not UTF-8, no columns at all
        raise SdkdError(f"{path}: cannot read the {what} ({' '.join(str(exc).split())})"
                        ) from None
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        raise SdkdError(f"{path}: not a {what} (no column {', '.join(lacking)})")
    if frame.empty:
        raise SdkdError(f"{path}: the {what} has no rows")
    return frame


def numbers(frame: pd.DataFrame, column: str, path: str | os.PathLike[str]) -> pd.Series:
    """``frame[column]`` as floats, empty cells NaN.

    Raises:
        SdkdError: naming ``path``, the column and the line of the first cell that is
            there but not a finite number.
    """
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    bad = (values.isna() & frame[column].notna()) | np.isinf(values)
    if bad.any():
        cell = frame[column][bad].iloc[0]
        text = shown(cell) if isinstance(cell, str) else str(cell)  # pandas parsed: inf
        raise SdkdError(f"{path}: line {first_marked_line(bad)}, column {column}: {text} is "
                        "not a finite number")
    return values


def first_marked_line(rows: pd.Series) -> int:
    """The line in the file of the first row marked True (the header is line 1)."""
    return int(np.argmax(rows.to_numpy())) + 2
