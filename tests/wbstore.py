"""Small local copies of WeatherBench 2's ERA5 64×32 Zarr store, and a server for them.

:func:`write_store` writes a store laid out like
``gs://weatherbench2/datasets/era5/1959-2023_01_10-6h-64x32_equiangular_conservative.zarr``
(see :mod:`sdkd.data.weatherbench` for where each fact comes from): Zarr format 2 with
consolidated metadata (``.zmetadata``); coordinates ``time`` (int64 "hours since
1959-01-01", proleptic Gregorian), ``latitude`` (32, float64, ascending −87.1875 …
87.1875, no poles), ``longitude`` (64, float64, 0 … 354.375) and ``level`` (int64, hPa);
variables float32 ``(time, longitude, latitude)`` or ``(time, level, longitude,
latitude)`` chunked 100 along time and whole along the others, static fields
``(longitude, latitude)``; Blosc LZ4 (level 5, byte shuffle) everywhere; fill value NaN;
the real store's ``long_name``/``short_name``/``units`` attributes (none on the
derived ``10m_wind_speed``). The real ``time``
array is chunked in 4 (23386 of 93544 entries); so is this one.

:func:`serve_tree` serves a directory *tree* over loopback HTTP (``rawfiles.FileServer``
serves only the files directly in one directory, and a Zarr store is nested).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import xarray as xr
from rawfiles import LoopbackServer

# The 5.625° grid of WeatherBench 2: cell centres, no poles (regridding.latitude_values
# with EQUIANGULAR_WITHOUT_POLES and longitude_values with START_AT_ZERO).
N_LON, N_LAT = 64, 32
LATITUDE = np.linspace(-90 + 90 / N_LAT, 90 - 90 / N_LAT, N_LAT)
LONGITUDE = np.linspace(0.0, 360.0 - 360.0 / N_LON, N_LON)
TIME_CHUNK = 100  # frames per chunk of every time-varying variable in the real store
TIME_UNITS = "hours since 1959-01-01"

# Attributes as the real store has them (its consolidated metadata).
ATTRS = {
    "2m_temperature": {"long_name": "2 metre temperature", "short_name": "t2m", "units": "K"},
    "10m_u_component_of_wind": {
        "long_name": "10 metre U wind component", "short_name": "u10", "units": "m s**-1",
    },
    "geopotential": {
        "long_name": "Geopotential", "short_name": "z", "standard_name": "geopotential",
        "units": "m**2 s**-2",
    },
    "10m_wind_speed": {},  # derived by WB2: no attributes at all
    "land_sea_mask": {
        "long_name": "Land-sea mask", "short_name": "lsm", "standard_name": "land_binary_mask",
        "units": "(0 - 1)",
    },
}


def _blosc() -> numcodecs.Blosc:
    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


def write_store(
    path: str | Path,
    *,
    start: str = "2015-12-31T00",
    periods: int = 300,
    levels: tuple[int, ...] = (500, 850),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a small WB2-like store at ``path`` (replacing one there).

    Args:
        path: the store's directory (``*.zarr``).
        start: the first time (UTC); times follow every 6 hours.
        periods: number of times (keep it to a few hundred).
        levels: pressure levels in hPa of ``geopotential``.
        seed: seed of the random values.

    Returns:
        The stored values, in the store's own axis order: ``2m_temperature`` and
        ``10m_u_component_of_wind`` float32 (time, longitude, latitude) in K and m/s,
        ``10m_wind_speed`` likewise (m/s, but without attributes, like WB2's derived
        variables),
        ``geopotential`` float32 (time, level, longitude, latitude) in m²/s²,
        ``land_sea_mask`` float32 (longitude, latitude), and the coordinates ``time``
        (datetime64[ns]), ``latitude`` and ``longitude`` (degrees), ``level`` (hPa).
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=periods, freq="6h").values
    level = np.asarray(levels, dtype=np.int64)
    shape = (periods, N_LON, N_LAT)
    # Values that differ along every axis, so a transposed or shifted read cannot pass.
    lat_profile = np.cos(np.deg2rad(LATITUDE))[None, None, :]
    lon_profile = np.sin(np.deg2rad(LONGITUDE))[None, :, None]
    t2m = 250 + 40 * lat_profile + 5 * lon_profile + rng.standard_normal(shape)
    u10 = 10 * lon_profile * lat_profile + rng.standard_normal(shape)
    z = (
        9.81 * (5500 + 1500 * (850 - level[None, :, None, None]) / 350)
        + 500 * lat_profile[:, None] + rng.standard_normal((periods, len(level), N_LON, N_LAT))
    )
    lsm = (rng.random((N_LON, N_LAT)) > 0.7).astype(np.float32)
    values = {
        "2m_temperature": t2m.astype(np.float32),
        "10m_u_component_of_wind": u10.astype(np.float32),
        "10m_wind_speed": np.abs(u10).astype(np.float32),
        "geopotential": z.astype(np.float32),
        "land_sea_mask": lsm,
    }
    surface = ("time", "longitude", "latitude")
    dims = {
        "2m_temperature": surface,
        "10m_u_component_of_wind": surface,
        "10m_wind_speed": surface,
        "geopotential": ("time", "level", "longitude", "latitude"),
        "land_sea_mask": ("longitude", "latitude"),
    }
    ds = xr.Dataset(
        {name: (dims[name], values[name], ATTRS[name]) for name in values},
        coords={"time": times, "latitude": LATITUDE, "longitude": LONGITUDE, "level": level},
    )
    encoding: dict[str, dict] = {
        "time": {
            "units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64",
            "chunks": (-(-periods // 4),), "compressors": [_blosc()],
        },
        **{name: {"compressors": [_blosc()]} for name in ("latitude", "longitude", "level")},
    }
    for name in values:
        chunks = tuple(TIME_CHUNK if d == "time" else ds.sizes[d] for d in dims[name])
        encoding[name] = {"chunks": chunks, "compressors": [_blosc()]}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return {
        **values,
        "time": times.astype("datetime64[ns]"),
        "latitude": LATITUDE.copy(),
        "longitude": LONGITUDE.copy(),
        "level": level,
    }


class TreeServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 serving a directory tree (GET and HEAD).

    Attributes (a test may change them between requests): ``fail`` answers a GET whose
    path contains it with 503 (``None``: never), at most ``fail_times`` times (``None``:
    always). ``paths`` lists the paths of the GETs received.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).resolve()
        self.fail: str | None = None
        self.fail_times: int | None = None
        self.failed = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        """The URL of ``name`` (a path relative to the served directory)."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def _should_fail(self, path: str) -> bool:
        with self._lock:
            self.paths.append(path)
            if self.fail is None or self.fail not in path:
                return False
            if self.fail_times is not None and self.failed >= self.fail_times:
                return False
            self.failed += 1
            return True

    def handler(self) -> Callable[..., http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            timeout = 10  # a silent client cannot hold a thread forever

            def do_GET(self) -> None:
                if owner._should_fail(self.path):
                    self.send_error(503, "failing on purpose")
                    return
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        return functools.partial(Handler, directory=str(self.directory))


@contextlib.contextmanager
def serve_tree(directory: str | Path) -> Iterator[TreeServer]:
    """``with serve_tree(d) as server: server.url("store.zarr")``."""
    with TreeServer(directory) as server:
        yield server
