"""open_taxibj: DeepST's TaxiBJ files read back cleaned, and every bad input refused."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from taxibjfiles import write_taxibj

from sdkd.data.taxibj import SOURCE, open_taxibj
from sdkd.errors import SdkdError


def _read(*paths: Path, **options) -> tuple[np.ndarray, np.ndarray, object]:
    with open_taxibj(paths, **options) as raw:
        return raw.trajectory(0), raw.times, raw


def test_round_trip(tmp_path):
    path = tmp_path / "BJ13_M32x32_T30_InOut.h5"
    frames, times = write_taxibj(path, days=3)
    got, got_times, raw = _read(path)
    assert raw.shape == (1, 144, 2, 32, 32) and len(raw) == 1
    assert raw.channels == ["inflow", "outflow"]
    assert raw.dt == 0.5 and raw.dx == 1.0
    assert raw.units == ["taxis per 30 min"] * 2
    assert raw.source == "taxibj" and raw.variable == "data" and raw.path == path
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, frames)
    assert got_times.dtype == np.dtype("datetime64[s]")
    np.testing.assert_array_equal(got_times, times)
    assert got_times[0] == np.datetime64("2013-07-01T00:00:00")
    assert got_times[47] == np.datetime64("2013-07-01T23:30:00")
    assert (np.diff(got_times) == np.timedelta64(1800, "s")).all()


@pytest.mark.parametrize("slot", [1, 17, 48])
def test_incomplete_day_dropped(tmp_path, slot, caplog):
    path = tmp_path / "bj.h5"
    frames, times = write_taxibj(path, days=3, drop=[(1, slot)])
    with caplog.at_level(logging.INFO, logger="sdkd.data.taxibj"):
        got, got_times, raw = _read(path)
    assert raw.shape[1] == 96
    np.testing.assert_array_equal(got, frames)
    np.testing.assert_array_equal(got_times, times)
    # The gap of the dropped day: from 07-01 23:30 to 07-03 00:00.
    assert got_times[48] - got_times[47] == np.timedelta64(86400 + 1800, "s")
    assert "2013-07-02" in caplog.text


def test_duplicate_keeps_the_later_copy(tmp_path, caplog):
    path = tmp_path / "bj.h5"
    frames, times = write_taxibj(path, days=2, duplicate=[(0, 5), (1, 48)])
    with h5py.File(path) as f:
        assert len(f["date"]) == 98
    with caplog.at_level(logging.WARNING, logger="sdkd.data.taxibj"):
        got, got_times, _ = _read(path)
    np.testing.assert_array_equal(got, frames)
    np.testing.assert_array_equal(got_times, times)
    assert "2 duplicated time stamps" in caplog.text


def test_out_of_order_stamps_sorted(tmp_path):
    path = tmp_path / "bj.h5"
    frames, times = write_taxibj(path, days=3, shuffle=True, drop=[(2, 30)],
                                 duplicate=[(0, 1)])
    with h5py.File(path) as f:
        stored = f["date"][()]
        assert (np.diff(stored.astype(np.int64)) < 0).any()
    got, got_times, _ = _read(path)
    np.testing.assert_array_equal(got, frames)
    np.testing.assert_array_equal(got_times, times)


def test_files_joined_in_date_order(tmp_path):
    bj13, bj14 = tmp_path / "BJ13.h5", tmp_path / "BJ14.h5"
    frames13, times13 = write_taxibj(bj13, start="2013-10-29", days=2, drop=[(1, 3)], seed=1)
    frames14, times14 = write_taxibj(bj14, start="2014-03-01", days=2, seed=2)
    got, got_times, raw = _read(bj14, bj13)  # given out of order
    assert raw.path == bj13 and raw.stored_shape == (95 + 96, 2, 32, 32)
    np.testing.assert_array_equal(got, np.concatenate([frames13, frames14]))
    np.testing.assert_array_equal(got_times, np.concatenate([times13, times14]))
    assert got_times[48] == np.datetime64("2014-03-01T00:00:00")


def test_one_path_given_bare(tmp_path):
    path = tmp_path / "bj.h5"
    frames, _ = write_taxibj(path, days=1)
    for given in (path, str(path)):
        with open_taxibj(given) as raw:
            np.testing.assert_array_equal(raw.trajectory(0), frames)


def test_small_grid(tmp_path):
    path = tmp_path / "bj.h5"
    frames, _ = write_taxibj(path, days=1, grid=8)
    got, _, raw = _read(path)
    assert raw.shape == (1, 48, 2, 8, 8)
    np.testing.assert_array_equal(got, frames)


def test_kept_frames_bounded_before_reading(tmp_path):
    path = tmp_path / "bj.h5"
    write_taxibj(path, days=2)
    # 96 kept frames of 2 × 32 × 32 float32 = 768 KiB; the whole file is as large.
    with pytest.raises(SdkdError, match=r"limits\.max_array_gib") as err:
        _read(path, max_gib=0.0005)
    assert str(path) in str(err.value)


def test_source_describes_the_files():
    assert SOURCE["layout"] == "taxibj"
    assert set(SOURCE["files"]) == {f"BJ{y}_M32x32_T30_InOut.h5" for y in (13, 14, 15, 16)}
    for key in ("description", "size", "licence", "how", "homepage"):
        assert SOURCE[key]


# --- bad input ---------------------------------------------------------------------


def _deepst(path: Path, *, date=None, data=None, days: int = 1) -> Path:
    """A one-day DeepST file with ``date`` or ``data`` replaced (``False``: left out)."""
    write_taxibj(path, days=days)
    with h5py.File(path, "a") as f:
        for name, value in (("date", date), ("data", data)):
            if value is None:
                continue
            del f[name]
            if value is not False:
                f.create_dataset(name, data=value)
    return path


def _stamps(n: int = 48, day: str = "20130701") -> np.ndarray:
    return np.array([f"{day}{s:02d}" for s in range(1, n + 1)], dtype="S10")


def _frames(shape) -> np.ndarray:
    return np.zeros(shape)


BAD = {
    "no date": (dict(date=False), ["no variable 'date'", "not found", "variables: data"]),
    "no data": (dict(data=False), ["no variable 'data'", "not found"]),
    "data rank 3": (dict(data=_frames((48, 32, 32))), ["'data' has shape (48, 32, 32)",
                                                       "(N, 2, H, W)"]),
    "data 3 channels": (dict(data=_frames((48, 3, 32, 32))), ["(48, 3, 32, 32)",
                                                              "(N, 2, H, W)"]),
    "data not numbers": (dict(data=np.full((48, 2, 4, 4), b"x", dtype="S1")),
                         ["'data' has dtype |S1", "real numbers"]),
    "date numbers": (dict(date=np.arange(48) + 2013070101), ["'date' is int64",
                                                             "byte strings"]),
    "date 2-D": (dict(date=_stamps().reshape(6, 8)), ["'date' is |S10 of shape (6, 8)"]),
    "lengths differ": (dict(date=_stamps(47)), ["'date' has 47 stamps", "48 frames"]),
    "unparsable date": (dict(date=np.concatenate([_stamps(47), [b"2013-07-01"]])),
                        ["date[47] is b'2013-07-01'", "YYYYMMDD"]),
    "no such day": (dict(date=np.concatenate([[b"2013023001"], _stamps(47)])),
                    ["date[0] is b'2013023001'"]),
    "slot 0": (dict(date=np.concatenate([[b"2013070100"], _stamps(47)])),
               ["date[0] is b'2013070100'", "slot 0 is outside 1..48"]),
    "slot 49": (dict(date=np.concatenate([_stamps(47), [b"2013070149"]])),
                ["date[47]", "slot 49 is outside 1..48"]),
    "nothing left": (dict(date=np.concatenate([_stamps(47), [b"2013070247"]])),
                     ["no day has all 48 half-hour slots"]),
    "empty": (dict(date=np.zeros(0, "S10"), data=np.zeros((0, 2, 32, 32))),
              ["no day has all 48"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_file(tmp_path, case):
    replace, fragments = BAD[case]
    path = _deepst(tmp_path / "BJ13_M32x32_T30_InOut.h5", **replace)
    with pytest.raises(SdkdError) as err:
        _read(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_grids_differ(tmp_path):
    a, b = tmp_path / "BJ13.h5", tmp_path / "BJ14.h5"
    write_taxibj(a, days=1)
    write_taxibj(b, start="2014-03-01", days=1, grid=16)
    with pytest.raises(SdkdError, match="16 × 16 grid") as err:
        _read(a, b)
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_missing_and_non_hdf5_files(tmp_path):
    good = tmp_path / "BJ13.h5"
    write_taxibj(good, days=1)
    missing = tmp_path / "BJ14.h5"
    with pytest.raises(SdkdError, match="file not found") as err:
        _read(good, missing)
    assert str(missing) in str(err.value)
    text = tmp_path / "BJ15.h5"
    text.write_text("not hdf5")
    with pytest.raises(SdkdError, match="not an HDF5") as err:
        _read(text)
    assert str(text) in str(err.value)
    with pytest.raises(SdkdError, match="no files given"):
        _read()


def test_huge_declared_file_refused_before_its_stamps(tmp_path):
    path = tmp_path / "bj.h5"
    with h5py.File(path, "w") as f:
        # Declared, never written: reading its stamps would allocate ~80 GB.
        f.create_dataset("data", shape=(2**33, 2, 32, 32), dtype="f8", chunks=(1, 2, 32, 32))
        f.create_dataset("date", shape=(2**33,), dtype="S10", chunks=(1024,))
    with pytest.raises(SdkdError, match=r"limits\.max_array_gib") as err:
        _read(path)
    assert str(path) in str(err.value)
