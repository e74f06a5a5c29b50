"""Time stamps of data on a calendar: inclusive ranges and regular steps.

Weather and traffic series carry their frames' times as ``datetime64[s]`` (UTC). A
config names a time range as two ISO strings, both ends inclusive at the precision
written: ``["2016", "2016"]`` is the whole of 2016, ``["2016-03-01", "2016-03-01T18"]``
the first 19 hours of March 1st.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdkd.errors import SdkdError

SECOND = np.timedelta64(1, "s")


def time_range(pair: Sequence[str], where: str) -> tuple[np.datetime64, np.datetime64]:
    """``[first, last]`` as a half-open interval ``[start, end)`` of ``datetime64[s]``.

    The end is the instant after ``last`` at its own precision, so "2016-12-31" ends at
    2017-01-01T00:00:00 and includes every frame of that day.

    Raises:
        SdkdError: naming ``where`` when a string is no ISO date or ``first`` > ``last``.
    """
    try:
        first, last = (np.datetime64(str(text).strip().replace(" ", "T")) for text in pair)
    except ValueError:
        raise SdkdError(
            f"{where}: {list(pair)!r} is not a pair of ISO dates (e.g. ['2015-01-01', '2016'])"
        ) from None
    unit = np.datetime_data(last.dtype)[0]
    start = first.astype("datetime64[s]")
    end = (last + np.timedelta64(1, unit)).astype("datetime64[s]")
    if start >= end:
        raise SdkdError(f"{where}: {list(pair)!r} starts after it ends")
    return start, end


def regular_step(times: np.ndarray) -> np.timedelta64:
    """The series' usual time step: the commonest difference between consecutive stamps
    (gaps, such as a dropped day of traffic data, are rarer than the step)."""
    steps, counts = np.unique(np.diff(times.astype("datetime64[s]")), return_counts=True)
    return steps[np.argmax(counts)]


def window_starts(times: np.ndarray | None, n_frames: int, span: int, stride: int) -> np.ndarray:
    """First frames of the windows of ``span`` frames that start every ``stride`` frames.

    With time stamps (T,), a window must also be gap-free: every step inside it equals
    the series' regular step (:func:`regular_step`). Returns int64 indices, ascending.
    """
    starts = np.arange(0, n_frames - span + 1, stride, dtype=np.int64)
    if times is None or n_frames < 2 or span < 2 or len(starts) == 0:
        return starts
    irregular = np.diff(times.astype("datetime64[s]")) != regular_step(times)
    # breaks[k] = irregular steps among the first k steps; a window [s, s + span) holds
    # steps s … s + span − 2, so it is gap-free when that count does not change.
    breaks = np.concatenate([[0], np.cumsum(irregular)])
    return starts[breaks[starts + span - 1] == breaks[starts]]
