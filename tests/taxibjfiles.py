"""Small files in DeepST's TaxiBJ layout (``BJ13_M32x32_T30_InOut.h5`` and its siblings).

The layout is the published one: dataset ``date`` of fixed-length byte strings
``YYYYMMDD`` + slot ``01``..``48`` (``S10``) and dataset ``data`` float64 of shape
(N, 2, H, W), inflow then outflow, H = W = 32 by default. Values are whole counts, as
in the real files. The writer returns what a correct reader must produce after
cleaning, so tests compare against it rather than against a second implementation.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

SLOTS = 48
SLOT_SECONDS = 1800


def write_taxibj(
    path: str | Path,
    *,
    start: str = "2013-07-01",
    days: int = 3,
    drop: Iterable[tuple[int, int]] = (),
    duplicate: Iterable[tuple[int, int]] = (),
    shuffle: bool = False,
    seed: int = 0,
    grid: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``days`` days of 48 slots from ``start`` in DeepST's layout.

    Args:
        path: the file to write.
        start: the first day, ``YYYY-MM-DD``.
        days: how many consecutive days.
        drop: (day, slot) pairs left out (day 0-based, slot 1..48): that day is then
            incomplete and a reader must drop all of it.
        duplicate: (day, slot) pairs written twice, the first copy with other values:
            a reader keeps the later copy.
        shuffle: write the entries in a random order instead of time order.
        seed: seeds the values and the shuffle.
        grid: H = W of the grid.

    Returns:
        The frames a reader must return, float32 (T, 2, grid, grid), and their slot
        start times, ``datetime64[s]`` (T,), in time order, incomplete days left out.
    """
    rng = np.random.default_rng(seed)
    dropped = set(drop)
    doubled = set(duplicate)
    first = np.datetime64(start, "D")
    stamps: list[bytes] = []
    frames: list[np.ndarray] = []
    kept_frames: list[np.ndarray] = []
    kept_times: list[np.datetime64] = []
    incomplete = {day for day, _ in dropped}
    for day in range(days):
        date = first + day
        for slot in range(1, SLOTS + 1):
            if (day, slot) in dropped:
                continue
            stamp = f"{str(date).replace('-', '')}{slot:02d}".encode("ascii")
            frame = rng.integers(0, 1300, size=(2, grid, grid)).astype(np.float64)
            if (day, slot) in doubled:
                stamps.append(stamp)
                frames.append(frame + 5000.0)  # the stale copy: must not be read back
            stamps.append(stamp)
            frames.append(frame)
            if day not in incomplete:
                kept_frames.append(frame.astype(np.float32))
                kept_times.append(
                    date.astype("datetime64[s]") + np.timedelta64((slot - 1) * SLOT_SECONDS, "s")
                )
    order = np.arange(len(stamps))
    if shuffle:
        # A stable permutation keeps a duplicate's copies in their written order, so
        # "the later copy" still means the one returned.
        keys = rng.permutation(len(stamps))
        for stamp in set(stamps):
            same = [i for i, s in enumerate(stamps) if s == stamp]
            if len(same) > 1:
                keys[same] = np.sort(keys[same])
        order = np.argsort(keys)
    with h5py.File(path, "w") as f:
        f.create_dataset("date", data=np.array(stamps, dtype="S10")[order])
        data = np.stack(frames) if frames else np.zeros((0, 2, grid, grid))
        f.create_dataset("data", data=data[order])
    expected = (
        np.stack(kept_frames) if kept_frames else np.zeros((0, 2, grid, grid), np.float32)
    )
    return expected, np.array(kept_times, dtype="datetime64[s]")
