"""WeatherBench 2 ERA5 64×32 fetches from a small local store, as a path and over HTTP."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import leftovers
from wbstore import serve_tree, write_store

from sdkd.data import weatherbench
from sdkd.data.raw import open_raw
from sdkd.data.weatherbench import SOURCE, STORE_NAME, fetch_weatherbench
from sdkd.errors import SdkdError

VARIABLES = ["2m_temperature", "geopotential@850", "10m_u_component_of_wind", "geopotential@500"]
# The store written below: 300 times every 6 h from 2015-12-31T00 to 2016-03-14T18.
STORE_RANGE = "2015-12-31T00:00:00 … 2016-03-14T18:00:00"


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weatherbench, "_RETRY_WAIT_S", 0.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """(the store's path, its values) shared by the tests; none may change it."""
    path = tmp_path_factory.mktemp("wb2") / "era5_64x32.zarr"
    return path, write_store(path)


@pytest.fixture
def own_store(store: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> Path:
    """A private copy of the store, for tests that damage it."""
    path = tmp_path / "store" / "era5_64x32.zarr"
    shutil.copytree(store[0], path)
    return path


def _spec(url: str | Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": STORE_NAME, "url": str(url), "variables": VARIABLES,
        "start": "2016-01-01", "stop": "2016-01-31", "step_hours": 6,
    }
    spec.update(changes)
    return spec


def _expected(values: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """The store's frames ``index`` of VARIABLES as (T, C, H = latitude, W = longitude)."""
    level = {int(v): i for i, v in enumerate(values["level"])}
    channels = []
    for text in VARIABLES:
        name, _, hpa = text.partition("@")
        data = values[name][index, level[int(hpa)]] if hpa else values[name][index]
        channels.append(data.transpose(0, 2, 1))  # (time, lon, lat) → (time, lat, lon)
    return np.stack(channels, axis=1)


def _index(values: dict[str, np.ndarray], first: str, last: str, every: int = 1) -> np.ndarray:
    times = values["time"]
    lo, hi = np.searchsorted(times, [np.datetime64(first), np.datetime64(last)])
    return np.arange(lo, hi + 1, every)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
    with h5py.File(path, "r") as f:
        return (f["frames"][()], f["time_stamps"][()], dict(f["frames"].attrs),
                {k: f.attrs[k] for k in f.attrs})


def _stamps(values: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    return values["time"][index].astype("datetime64[s]").astype(np.int64)


# --- round trips --------------------------------------------------------------------


def test_local_round_trip(store, tmp_path: Path) -> None:
    path, values = store
    out = tmp_path / "raw" / "era5.h5"
    assert fetch_weatherbench(_spec(path), out, max_gib=1.0) == out

    frames, stamps, attrs, file_attrs = _read(out)
    index = _index(values, "2016-01-01T00", "2016-01-31T18")
    assert frames.dtype == np.float32 and frames.shape == (1, 124, 4, 32, 64)
    np.testing.assert_array_equal(frames[0], _expected(values, index))
    np.testing.assert_array_equal(stamps, _stamps(values, index))
    assert stamps[0] == 1451606400  # 2016-01-01T00:00:00Z
    assert list(attrs["channels"]) == VARIABLES
    assert list(attrs["units"]) == ["K", "m**2 s**-2", "m s**-1", "m**2 s**-2"]
    assert attrs["dt"] == 6.0 and attrs["dx"] == 5.625
    assert file_attrs["source"] == "weatherbench2" and file_attrs["store"] == str(path)
    assert list(file_attrs["variables"]) == VARIABLES
    assert (file_attrs["start"], file_attrs["stop"], file_attrs["step_hours"]) == (
        "2016-01-01", "2016-01-31", 6)
    assert file_attrs["created_with"].startswith("sdkd ")
    assert leftovers(out.parent) == ["era5.h5"]

    # The pipeline's own reader sees the same thing.
    with open_raw(out, "sdkd") as raw:
        assert raw.shape == (1, 124, 4, 32, 64)
        assert raw.channels == VARIABLES and raw.units[0] == "K"
        assert raw.dt == 6.0 and raw.dx == 5.625
        np.testing.assert_array_equal(raw.times, values["time"][index].astype("datetime64[s]"))
        np.testing.assert_array_equal(raw.coords["latitude"], values["latitude"])
        np.testing.assert_array_equal(raw.coords["longitude"], values["longitude"])
        assert raw.coords["latitude"][0] < 0  # the store's order: south first
        np.testing.assert_array_equal(raw.trajectory(0), frames[0])


def test_http_round_trip_reads_each_chunk_once(store, tmp_path: Path) -> None:
    path, _ = store
    local = tmp_path / "local.h5"
    fetch_weatherbench(_spec(path), local, max_gib=1.0)
    out = tmp_path / "http.h5"
    with serve_tree(path.parent) as server:
        url = server.url(path.name)
        fetch_weatherbench(_spec(url), out, max_gib=1.0)
        requested = list(server.paths)
    frames, stamps, attrs, file_attrs = _read(out)
    np.testing.assert_array_equal(frames, _read(local)[0])
    np.testing.assert_array_equal(stamps, _read(local)[1])
    assert list(attrs["units"]) == list(_read(local)[2]["units"])
    assert file_attrs["store"] == url
    # 2016-01 spans time chunks 0 and 1; geopotential's two levels come from one read.
    chunks = sorted(p.rsplit(".zarr/", 1)[1] for p in requested if p[-1].isdigit()
                    and "/time/" not in p and p.count(".") >= 3)
    assert chunks == sorted(
        f"{name}/{i}.0.0{'.0' if name == 'geopotential' else ''}"
        for name in ("2m_temperature", "10m_u_component_of_wind", "geopotential")
        for i in (0, 1)
    )


def test_step_hours_subsamples_from_the_start(store, tmp_path: Path) -> None:
    path, values = store
    out = tmp_path / "daily.h5"
    fetch_weatherbench(
        _spec(path, start="2016-01-01T06", stop="2016-02-10", step_hours=24), out, max_gib=1.0
    )
    frames, stamps, attrs, file_attrs = _read(out)
    index = _index(values, "2016-01-01T06", "2016-02-10T06", every=4)
    assert len(index) == 41
    np.testing.assert_array_equal(frames[0], _expected(values, index))
    np.testing.assert_array_equal(stamps, _stamps(values, index))
    assert attrs["dt"] == 24.0 and file_attrs["step_hours"] == 24


@pytest.mark.parametrize(
    ("start", "stop", "first", "last"),
    [
        # Date-times: both ends inclusive.
        ("2016-01-01T06", "2016-01-02T12", "2016-01-01T06", "2016-01-02T12"),
        ("2016-01-01 06:00", "2016-01-02T12:00:00", "2016-01-01T06", "2016-01-02T12"),
        # A date alone as stop: through the end of that day.
        ("2016-01-01", "2016-01-02", "2016-01-01T00", "2016-01-02T18"),
        ("2016-01-02", "2016-01-02", "2016-01-02T00", "2016-01-02T18"),
        # A month: all of it; the store's very first and last times.
        ("2016-02", "2016-02", "2016-02-01T00", "2016-02-29T18"),
        ("2015-12-31", "2016-03-14", "2015-12-31T00", "2016-03-14T18"),
    ],
)
def test_ranges_are_inclusive(store, tmp_path: Path, start, stop, first, last) -> None:
    path, values = store
    out = tmp_path / "range.h5"
    fetch_weatherbench(_spec(path, start=start, stop=stop, variables=["2m_temperature"]), out,
                       max_gib=1.0)
    _, stamps, _, _ = _read(out)
    np.testing.assert_array_equal(stamps, _stamps(values, _index(values, first, last)))


def test_default_step_is_the_stores(store, tmp_path: Path) -> None:
    spec = _spec(store[0], stop="2016-01-01")
    del spec["step_hours"]
    out = tmp_path / "default.h5"
    fetch_weatherbench(spec, out, max_gib=1.0)
    _, stamps, attrs, _ = _read(out)
    assert attrs["dt"] == 6.0 and len(stamps) == 4


def test_a_variable_without_units(store, tmp_path: Path) -> None:
    path, values = store
    out = tmp_path / "speed.h5"
    fetch_weatherbench(_spec(path, variables=["10m_wind_speed", "2m_temperature"]), out,
                       max_gib=1.0)
    frames, _, attrs, _ = _read(out)
    assert list(attrs["units"]) == ["", "K"]
    index = _index(values, "2016-01-01T00", "2016-01-31T18")
    speed = values["10m_wind_speed"][index].transpose(0, 2, 1)
    np.testing.assert_array_equal(frames[0, :, 0], speed)


def test_refetch_is_identical(store, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "raw.h5", tmp_path / "b" / "raw.h5"
    fetch_weatherbench(_spec(store[0]), first, max_gib=1.0)
    fetch_weatherbench(_spec(store[0]), second, max_gib=1.0)
    assert first.read_bytes() == second.read_bytes()
    # Fetching again onto an existing output replaces it with the same bytes.
    fetch_weatherbench(_spec(store[0]), first, max_gib=1.0)
    assert first.read_bytes() == second.read_bytes()
    assert leftovers(first.parent) == ["raw.h5"]


def test_a_transient_http_error_is_retried(store, tmp_path: Path) -> None:
    path, _ = store
    out = tmp_path / "retried.h5"
    with serve_tree(path.parent) as server:
        server.fail, server.fail_times = "2m_temperature/1.0.0", 1
        fetch_weatherbench(_spec(server.url(path.name)), out, max_gib=1.0)
        assert server.failed == 1
    local = tmp_path / "local.h5"
    fetch_weatherbench(_spec(path), local, max_gib=1.0)
    np.testing.assert_array_equal(_read(out)[0], _read(local)[0])


def test_source_entry() -> None:
    assert SOURCE["name"] == STORE_NAME and SOURCE["layout"] == "zarr"
    assert SOURCE["url"].startswith("https://storage.googleapis.com/weatherbench2/datasets/era5/")
    assert SOURCE["url"].endswith("64x32_equiangular_conservative.zarr")
    assert "Copernicus" in SOURCE["licence"] and SOURCE["description"] and SOURCE["size"]


# --- bad input ----------------------------------------------------------------------


def _fails(spec: dict[str, Any], out: Path, *fragments: str, max_gib: float = 1.0) -> str:
    """Fetch, expecting one SdkdError line holding ``fragments`` and nothing at ``out``."""
    with pytest.raises(SdkdError) as caught:
        fetch_weatherbench(spec, out, max_gib=max_gib)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    assert leftovers(out.parent) == []
    return message


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"variables": ["2m_temperature", "total_precipitation_6hr"]},
         ["download.variables", "'total_precipitation_6hr'", "no variable",
          "10m_u_component_of_wind, 10m_wind_speed, 2m_temperature, geopotential"]),
        ({"variables": ["geopotential@300"]},
         ["'geopotential@300'", "no level 300 hPa", "levels: 500, 850"]),
        ({"variables": ["2m_temperature@500"]},
         ["'2m_temperature@500'", "surface variable", "drop '@500'"]),
        ({"variables": ["geopotential"]}, ["has pressure levels (500, 850 hPa)", "pick one"]),
        ({"variables": ["land_sea_mask"]}, ["'land_sea_mask'", "static field"]),
        ({"start": "2016-02-01", "stop": "2016-01-31"},
         ["start 2016-02-01 is after stop 2016-01-31"]),
        ({"start": "2016-01-02T12", "stop": "2016-01-02T06"}, ["is after stop"]),
        ({"start": "2015-12-30"}, ["not inside the store", STORE_RANGE, "every 6 h"]),
        ({"stop": "2016-03-15"}, ["2016-01-01 … 2016-03-15 is not inside", STORE_RANGE]),
        ({"start": "2020-01-01", "stop": "2020-12-31"}, ["not inside", STORE_RANGE]),
        ({"start": "2016-01-01T01", "stop": "2016-01-01T05"},
         ["no time of the store", "falls in 2016-01-01T01 … 2016-01-01T05"]),
        ({"step_hours": 9}, ["download.step_hours", "9 is not a multiple", "step of 6 h"]),
        ({"step_hours": 0}, ["download.step_hours", "positive whole number"]),
        ({"step_hours": 6.5}, ["download.step_hours", "positive whole number"]),
        ({"variables": []}, ["download.variables", "non-empty list"]),
        ({"variables": "2m_temperature"}, ["download.variables", "non-empty list"]),
        ({"variables": ["2m_temperature", "2m_temperature"]}, ["given more than once"]),
        ({"variables": ["geopotential@"]}, ["download.variables[0]", "@level in hPa"]),
        ({"start": "2016-13-01"}, ["download.start", "not a valid date"]),
        ({"stop": "yesterday"}, ["download.stop", "not an ISO date"]),
        ({"stop": None}, ["download.stop: missing"]),
        ({"name": "era5"}, ["download.name"]),
    ],
)
def test_bad_request(store, tmp_path: Path, changes, fragments) -> None:
    _fails(_spec(store[0], **changes), tmp_path / "raw" / "era5.h5", *fragments)


def test_too_large(store, tmp_path: Path) -> None:
    _fails(_spec(store[0]), tmp_path / "raw" / "era5.h5", "limits.max_array_gib",
           "(124, 4, 32, 64)", "coarser step_hours", max_gib=1e-4)


def test_a_failure_keeps_the_previous_output(store, tmp_path: Path) -> None:
    out = tmp_path / "raw" / "era5.h5"
    out.parent.mkdir()
    out.write_bytes(b"an older fetch")
    with pytest.raises(SdkdError, match="is not a multiple"):
        fetch_weatherbench(_spec(store[0], step_hours=9), out, max_gib=1.0)
    assert out.read_bytes() == b"an older fetch"
    assert leftovers(out.parent) == ["era5.h5"]


def test_missing_store(tmp_path: Path) -> None:
    _fails(_spec(tmp_path / "nowhere.zarr"), tmp_path / "raw" / "era5.h5",
           "download.url", "nowhere.zarr: not found")


def test_not_a_store(tmp_path: Path) -> None:
    directory = tmp_path / "empty.zarr"
    directory.mkdir()
    (directory / "README").write_text("not zarr")
    _fails(_spec(directory), tmp_path / "raw" / "era5.h5", "cannot open", "as a Zarr store")
    with serve_tree(tmp_path) as server:
        _fails(_spec(server.url("empty.zarr")), tmp_path / "raw" / "era5.h5",
               "cannot open", server.url("empty.zarr"))


def test_unreachable_store(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/era5.zarr"
    _fails(_spec(url), tmp_path / "raw" / "era5.h5", "download.url", f"cannot open {url}")


def test_http_error_while_reading(store, tmp_path: Path) -> None:
    path, _ = store
    with serve_tree(path.parent) as server:
        server.fail = "geopotential/1.0.0.0"  # every time
        _fails(_spec(server.url(path.name)), tmp_path / "raw" / "era5.h5",
               "cannot read geopotential at 2016-01-25T00:00:00 … 2016-01-31T18:00:00",
               "503")
        assert server.failed == weatherbench._READ_ATTEMPTS


@pytest.mark.parametrize("name", ["time", "latitude", "longitude"])
def test_store_without_a_coordinate(own_store: Path, tmp_path: Path, name: str) -> None:
    shutil.rmtree(own_store / name)
    consolidated = json.loads((own_store / ".zmetadata").read_text())
    for key in (f"{name}/.zarray", f"{name}/.zattrs"):
        del consolidated["metadata"][key]
    (own_store / ".zmetadata").write_text(json.dumps(consolidated))
    _fails(_spec(own_store), tmp_path / "raw" / "era5.h5",
           f"has no 1-D coordinate {name!r}", str(own_store))


def test_missing_chunk_reads_as_nan_and_is_refused(own_store: Path, tmp_path: Path) -> None:
    (own_store / "10m_u_component_of_wind" / "1.0.0").unlink()
    _fails(_spec(own_store), tmp_path / "raw" / "era5.h5",
           "10m_u_component_of_wind at 2016-01-25T00:00:00", "all NaN")
