"""Fetch a slice of WeatherBench 2's ERA5 at 5.625° (64 × 32) into the ``sdkd`` raw layout.

The store is read lazily with xarray (zarr engine), over HTTPS through fsspec for the
public copy, and only the requested variables, levels and times are fetched: one
block of frames at a time, aligned with the store's chunks along time, streamed into
the output file, which :func:`sdkd.data.limits.h5_output` writes under a temporary
name and renames onto ``out`` only when everything succeeded.

The output (read by :func:`sdkd.data.raw.open_raw` with layout ``sdkd``): ``frames``
float32 (1, T, C, H = latitude, W = longitude) in the store's physical units (not
normalised), with attributes ``channels`` (``"2m_temperature"``,
``"geopotential@500"``, ...), ``units`` (per channel, the variable's ``units``
attribute or ""), ``dt`` (hours between kept frames) and ``dx`` (longitude spacing,
degrees); ``time_stamps`` int64 (T,) seconds since 1970-01-01 UTC; ``latitude`` (H,)
and ``longitude`` (W,) float64 degrees, in the store's order. Latitude stays in the
store's order, which for the 64 × 32 store is *ascending* (south to north, −87.1875 …
87.1875): row 0 of a frame is the southernmost.

Verified facts about the store (from public sources; the live bucket cannot be reached
from where this was written):

* Name and place: ``gs://weatherbench2/datasets/era5/1959-2023_01_10-6h-64x32_
  equiangular_conservative.zarr``, listed in WeatherBench 2's data guide
  (https://github.com/google-research/weatherbench2/blob/main/docs/source/data-guide.ipynb),
  which notes that older ERA5 files (``1959-2022-6h-64x32_equiangular_conservative.zarr``)
  stay in the bucket "to ensure continuity". Public objects of a GCS bucket are served
  at ``https://storage.googleapis.com/<bucket>/<object>``, and third-party scripts read
  this store anonymously at that address.
* Layout: Zarr format 2 with consolidated metadata (``.zmetadata``,
  ``zarr_consolidated_format`` 1), no root attributes, 66 arrays (15 pressure-level
  variables on 13 levels, 34 surface variables, 13 static fields, 4 coordinates); from
  a copy of the store's ``.zmetadata`` with the time axis cut to 28 entries
  (https://github.com/tomwetherell/zeph/blob/main/tests/fixtures/wb2_era5/.zmetadata).
  That copy is of this store, not the older one: it has the derived variables (62 in
  all; the 1959-2022 store has 38) and its time chunk fits 2023-01-10 (below).
* Dimensions: variables are ``(time, longitude, latitude)`` and ``(time, level,
  longitude, latitude)`` (longitude *before* latitude), static fields ``(longitude,
  latitude)``; WB2's regridding writes ``.transpose(..., 'longitude', 'latitude')``
  (https://github.com/google-research/weatherbench2/blob/main/scripts/regrid.py), and
  the evaluation guide prints the same order, chunks and coordinates for the older
  1959-2022 64 × 32 store
  (https://github.com/google-research/weatherbench2/blob/main/docs/source/evaluation.ipynb).
* Coordinates: ``latitude`` float64 (32) ascending −87.19 … 87.19 (equiangular without
  poles: ``linspace(-90 + 90/32, 90 - 90/32, 32)``), ``longitude`` float64 (64) 0 …
  354.375 (``regridding.latitude_values``/``longitude_values``; the evaluation guide's
  printout), ``level`` int64 (13) 50 … 1000 hPa.
* Time: int64 "hours since 1959-01-01", calendar ``proleptic_gregorian``, 6-hourly;
  the ``time`` array is chunked 23386, a quarter of 93544 = 6-hourly steps from
  1959-01-01T00 to 2023-01-10T18, the range its name gives.
* Chunks: 100 times × whole levels × 64 × 32 for every time-varying variable; Blosc
  LZ4 level 5 with byte shuffle; float32 with fill value NaN (so a missing chunk reads
  as NaN, which is refused below).
* Attributes: ``long_name``, ``short_name``, ``units`` (e.g. 2m_temperature "K",
  geopotential "m**2 s**-2", wind "m s**-1"); derived variables (wind speeds,
  vorticity, ...) carry none, so their unit is "".
* Licence: WB2's data guide says to check the LICENSE file of each dataset in the
  bucket and that its ERA5 was downloaded from the Copernicus Climate Data Store; ERA5
  is © ECMWF, produced by the Copernicus Climate Change Service (C3S); ECMWF says only
  the CC-BY licence applies to ERA5 from the CDS (attribution required;
  https://confluence.ecmwf.int/display/CKB/Use+Case+2%3A+ERA5+hourly+data+on+single+levels+from+1940+to+present).

Reading it: xarray 2026.9 with zarr 3.1 opens a consolidated Zarr v2 store from a plain
http(s) URL through fsspec's HTTP file system (aiohttp) without ``storage_options`` or an
explicit ``zarr.storage.FsspecStore`` (zarr asks for ``zarr.json`` first, gets 404, then
reads ``.zmetadata``); the tests check it against a loopback server. Only timeouts are
passed, so a silent network fails instead of hanging.

Assumed, not verified: the store still holds 93544 times (the size in :data:`SOURCE`
is computed from that); a key missing from the bucket answers HTTP 404 (zarr reads
404 as "no such key"); the bucket's LICENSE file says nothing stricter than the above.
Nothing here depends on these: the range, step, levels and variables are read from
the store itself, and a frame that reads as all NaN is refused.

Importing this module is cheap (``sdkd sources`` lists :data:`SOURCE`); xarray, zarr
and fsspec are imported by :func:`fetch_weatherbench` only.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sdkd.data.limits import FLOAT32, check_array, first_line, h5_output
from sdkd.errors import SdkdError

log = logging.getLogger(__name__)

STORE_NAME = "weatherbench2_era5_64x32"
DEFAULT_URL = (
    "https://storage.googleapis.com/weatherbench2/datasets/era5/"
    "1959-2023_01_10-6h-64x32_equiangular_conservative.zarr"
)

SOURCE: dict[str, str] = {
    "name": STORE_NAME,
    "url": DEFAULT_URL,
    "layout": "zarr",
    "description": (
        "WeatherBench 2 ERA5, 5.625° (64 × 32 equiangular, conservative), 6-hourly "
        "1959-01-01 … 2023-01-10T18, 13 pressure levels; a slice of variables and "
        "times is fetched"
    ),
    # 15 level variables × 13 + 34 surface variables = 229 fields of 64 × 32 float32.
    "size": (
        "about 175 GB for the whole store uncompressed (93544 times × 229 fields); "
        "12 MB per variable-year (1460 frames of 64 × 32 float32)"
    ),
    "licence": (
        "ERA5 © ECMWF, Copernicus Climate Change Service: Licence to Use Copernicus "
        "Products (attribution required), redistributed by WeatherBench 2 (see the "
        "LICENSE file in gs://weatherbench2/datasets/era5/)"
    ),
}

# Dimension names of the store (see the module docstring).
_TIME, _LAT, _LON, _LEVEL = "time", "latitude", "longitude", "level"

# Reads of a remote store are retried this many times in all on a network error;
# the wait before retry ``i`` (1-based) is ``_RETRY_WAIT_S * i`` (module level so tests
# can set it to 0).
_READ_ATTEMPTS = 3
_RETRY_WAIT_S = 2.0
# Connecting must not hang on a silent network; a chunk of the 64 × 32 store is well
# under 10 MB, so a read that stalls this long is broken.
_CONNECT_TIMEOUT_S = 30.0
_READ_TIMEOUT_S = 120.0
# HDF5 chunks of the output stay below this (a chunk is written whole, uncached).
_OUT_CHUNK_BYTES = 64 * 2**20
# "2016", "2016-03", "2016-03-01", "2016-03-01T06", "2016-03-01 06:00", "...:00:00".
_ISO = re.compile(r"\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2})?)?)?)?)?")
_VARIABLE = re.compile(r"([A-Za-z0-9_]+)(?:@([0-9]+))?")
_SHOWN = 8  # available variables or levels listed in a message


@dataclass(frozen=True)
class _Channel:
    """One requested channel: ``variable`` at pressure ``level`` (hPa) or a surface one."""

    text: str
    variable: str
    level: int | None


@dataclass(frozen=True)
class _Request:
    """A checked download block; times are numpy datetime64[ns] (UTC)."""

    url: str
    remote: bool
    channels: tuple[_Channel, ...]
    start: np.datetime64
    end: np.datetime64  # exclusive
    start_text: str
    stop_text: str
    step_hours: int | None


# --- the request --------------------------------------------------------------------


def _store_location(url: object) -> tuple[str, bool]:
    """(what to open, whether it is remote): an http(s) URL or a local directory."""
    if not isinstance(url, str) or not url:
        raise SdkdError(f"download.url: expected a URL or the path of a Zarr store, got {url!r}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return url.rstrip("/"), True
    if scheme == "gs":
        # Public objects of a bucket are served over plain HTTPS; no GCS client needed.
        return "https://storage.googleapis.com/" + url[len("gs://"):].rstrip("/"), True
    if scheme == "file":
        return urllib.parse.unquote(urllib.parse.urlsplit(url).path), False
    if len(scheme) > 1:  # a single letter is a Windows drive, not a scheme
        raise SdkdError(
            f"download.url: {url!r} is neither an http(s) URL nor a local path of a Zarr store"
        )
    return str(Path(url).expanduser()), False


def _channels(variables: object) -> tuple[_Channel, ...]:
    if (
        not isinstance(variables, Sequence)
        or isinstance(variables, str)
        or not variables
    ):
        raise SdkdError(
            f"download.variables: expected a non-empty list such as ['2m_temperature', "
            f"'geopotential@500'], got {variables!r}"
        )
    channels = []
    for i, text in enumerate(variables):
        found = _VARIABLE.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise SdkdError(
                f"download.variables[{i}]: {text!r} is not a variable name, optionally with "
                "@level in hPa (e.g. geopotential@500)"
            )
        level = int(found.group(2)) if found.group(2) is not None else None
        channels.append(_Channel(text, found.group(1), level))
    texts = [c.text for c in channels]
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise SdkdError(f"download.variables: {', '.join(repeated)} given more than once")
    return tuple(channels)


def _instant(value: object, key: str) -> tuple[np.datetime64, np.datetime64, str]:
    """(first instant, end of the period it names (exclusive), text) of an ISO time.

    A date names its whole day ("2016-01-01" ends at 2016-01-02T00), a month or year
    likewise; a date-time names its instant (it ends 1 ns later).
    """
    # YAML reads an unquoted 2016-01-01 as a date.
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        value = value.isoformat()
    elif isinstance(value, datetime.date):
        value = value.isoformat()
    if not isinstance(value, str) or not _ISO.fullmatch(value.strip()):
        raise SdkdError(
            f"download.{key}: {value!r} is not an ISO date or date-time (UTC), e.g. "
            "2016-01-01 or 2016-01-01T06"
        )
    text = value.strip()
    try:
        parsed = np.datetime64(text.replace(" ", "T"))
    except ValueError:
        raise SdkdError(f"download.{key}: {text!r} is not a valid date or date-time") from None
    unit = np.datetime_data(parsed.dtype)[0]
    first = parsed.astype("datetime64[ns]")
    if unit in ("Y", "M", "D"):
        end = (parsed + np.timedelta64(1, unit)).astype("datetime64[ns]")
    else:
        end = first + np.timedelta64(1, "ns")
    return first, end, text


def _request(spec: Mapping[str, Any]) -> _Request:
    """Check a download block before anything is opened."""
    if not isinstance(spec, Mapping):
        raise SdkdError(f"download: expected a mapping, got {type(spec).__name__}")
    if spec.get("name", STORE_NAME) != STORE_NAME:
        raise SdkdError(f"download.name: {spec['name']!r} is not {STORE_NAME!r}")
    url, remote = _store_location(spec.get("url") or DEFAULT_URL)
    channels = _channels(spec.get("variables"))
    for key in ("start", "stop"):
        if spec.get(key) is None:
            raise SdkdError(
                f"download.{key}: missing; {STORE_NAME} needs a time range, e.g. start: "
                "'2016-01-01', stop: '2016-12-31' (both inclusive)"
            )
    start, _, start_text = _instant(spec["start"], "start")
    _, end, stop_text = _instant(spec["stop"], "stop")
    if start >= end:
        raise SdkdError(f"download: start {start_text} is after stop {stop_text}")
    step = spec.get("step_hours")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise SdkdError(f"download.step_hours: expected a positive whole number, got {step!r}")
    return _Request(url, remote, channels, start, end, start_text, stop_text, step)


# --- the store ----------------------------------------------------------------------

_T = TypeVar("_T")


def _transient(exc: BaseException) -> bool:
    """A network failure worth another try (not a missing key or a bad store)."""
    if isinstance(exc, FileNotFoundError):
        return False
    try:
        import aiohttp
    except ImportError:  # fsspec's HTTP needs it; without it nothing remote works
        return False
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


def _with_retries(read: Callable[[], _T], remote: bool, what: str) -> _T:
    """``read()``, tried again after a transient network error of a remote store."""
    attempts = _READ_ATTEMPTS if remote else 1
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except Exception as exc:
            if attempt == attempts or not _transient(exc):
                raise
            log.warning("%s failed (%s); retry %d of %d", what, first_line(exc), attempt,
                        attempts - 1)
            time.sleep(_RETRY_WAIT_S * attempt)
    raise AssertionError("unreachable")


def _open_store(request: _Request) -> Any:
    """The store as a lazy :class:`xarray.Dataset` (nothing but metadata is read)."""
    import xarray as xr

    url = request.url
    if not request.remote and not Path(url).is_dir():
        what = "not a directory" if Path(url).exists() else "not found"
        raise SdkdError(f"download.url: {url}: {what}; expected a Zarr store (a directory)")
    options: dict[str, Any] = {}
    if request.remote:
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=_CONNECT_TIMEOUT_S, sock_read=_READ_TIMEOUT_S
        )
        options["storage_options"] = {"client_kwargs": {"timeout": timeout}}

    def open_it() -> Any:
        # chunks=None: lazily indexed arrays without dask; a selection reads only the
        # chunks it touches. consolidated=None reads .zmetadata when there is one.
        return xr.open_zarr(url, consolidated=None, chunks=None, **options)

    try:
        return _with_retries(open_it, request.remote, f"opening {url}")
    except Exception as exc:
        raise SdkdError(
            f"download.url: cannot open {url} as a Zarr store ({first_line(exc)})"
        ) from None


def _coordinate(ds: Any, name: str, url: str) -> np.ndarray:
    if name not in ds.coords or ds.coords[name].ndim != 1:
        raise SdkdError(
            f"download.url: the store {url} has no 1-D coordinate {name!r} (coordinates: "
            f"{', '.join(sorted(map(str, ds.coords))) or 'none'}); expected time, latitude "
            "and longitude like WeatherBench 2's"
        )
    return ds.coords[name].values


def _store_times(ds: Any, url: str) -> np.ndarray:
    """The store's times as datetime64[ns], checked strictly increasing."""
    times = _coordinate(ds, _TIME, url)
    if times.dtype.kind != "M":
        raise SdkdError(
            f"download.url: the store {url} has a 'time' coordinate of {times.dtype} that "
            "does not decode to dates (no CF units such as 'hours since 1959-01-01')"
        )
    times = times.astype("datetime64[ns]")
    if len(times) == 0:
        raise SdkdError(f"download.url: the store {url} holds no times")
    if len(times) > 1 and not (np.diff(times) > np.timedelta64(0, "ns")).all():
        raise SdkdError(f"download.url: the store {url} has times that are not increasing")
    return times


def _grid(ds: Any, url: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(latitude (H,), longitude (W,), longitude spacing) in degrees."""
    lat = _coordinate(ds, _LAT, url).astype(np.float64)
    lon = _coordinate(ds, _LON, url).astype(np.float64)
    steps = np.diff(lon)
    if len(lon) < 2 or not (steps > 0).all() or not np.allclose(steps, steps[0], rtol=1e-6):
        raise SdkdError(
            f"download.url: the store {url} has longitudes that are not evenly spaced "
            "and increasing"
        )
    return lat, lon, float(steps[0])


def _listing(names: Sequence[object]) -> str:
    shown = ", ".join(str(n) for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return f"{shown}, and {more} more" if more > 0 else shown


def _level_index(ds: Any, channel: _Channel, url: str) -> int | None:
    """Check ``channel`` against the store; its index along ``level`` (None: surface)."""
    where = f"download.variables: {channel.text!r}"
    if channel.variable not in ds.data_vars:
        timed = sorted(str(n) for n, v in ds.data_vars.items() if _TIME in v.dims)
        raise SdkdError(
            f"{where}: the store {url} has no variable {channel.variable!r} (it has "
            f"{_listing(timed) or 'no time-varying variables'})"
        )
    dims = ds[channel.variable].dims
    if _TIME not in dims:
        raise SdkdError(
            f"{where}: {channel.variable!r} in {url} is a static field {dims}, without "
            "time; only time-varying variables can be channels"
        )
    unexpected = set(dims) - {_TIME, _LAT, _LON, _LEVEL}
    if unexpected or _LAT not in dims or _LON not in dims:
        raise SdkdError(
            f"{where}: {channel.variable!r} in {url} has dimensions {dims}; expected time, "
            "latitude, longitude and perhaps level"
        )
    if _LEVEL not in dims:
        if channel.level is not None:
            raise SdkdError(
                f"{where}: {channel.variable!r} in {url} is a surface variable without "
                f"pressure levels; drop '@{channel.level}'"
            )
        return None
    levels = [int(v) for v in _coordinate(ds, _LEVEL, url)]
    if channel.level is None:
        raise SdkdError(
            f"{where}: {channel.variable!r} in {url} has pressure levels "
            f"({_listing(levels)} hPa); pick one as {channel.variable}@<hPa>, e.g. "
            f"{channel.variable}@{levels[len(levels) // 2]}"
        )
    if channel.level not in levels:
        raise SdkdError(
            f"{where}: {channel.variable!r} in {url} has no level {channel.level} hPa "
            f"(levels: {_listing(levels)})"
        )
    return levels.index(channel.level)


def _iso(t: np.datetime64) -> str:
    return str(t.astype("datetime64[s]"))


def _frame_indices(
    request: _Request, times: np.ndarray, url: str
) -> tuple[np.ndarray, float]:
    """(indices into the store's times of the frames kept, hours between them)."""
    steps = np.diff(times)
    store_step = steps.min() if len(steps) else np.timedelta64(6, "h")
    store_hours = store_step / np.timedelta64(1, "h")
    # A time slot of the store stands for the step that follows it.
    covered_end = times[-1] + store_step
    if request.start < times[0] or request.end > covered_end:
        raise SdkdError(
            f"download: {request.start_text} … {request.stop_text} is not inside the store "
            f"{url}, which holds {_iso(times[0])} … {_iso(times[-1])} every {store_hours:g} h"
        )
    step_hours = request.step_hours if request.step_hours is not None else store_hours
    step = np.timedelta64(round(step_hours * 3600), "s").astype("timedelta64[ns]")
    if step % store_step != np.timedelta64(0, "ns"):
        raise SdkdError(
            f"download.step_hours: {step_hours:g} is not a multiple of the store's step "
            f"of {store_hours:g} h ({url})"
        )
    first, last = np.searchsorted(times, [request.start, request.end], side="left")
    if first >= last:
        raise SdkdError(
            f"download: no time of the store {url} falls in {request.start_text} … "
            f"{request.stop_text} (its times are every {store_hours:g} h from "
            f"{_iso(times[0])})"
        )
    chosen = np.arange(first, last)
    # Counted from the first frame, so a gap in the store does not shift the rest.
    chosen = chosen[(times[chosen] - times[first]) % step == np.timedelta64(0, "ns")]
    return chosen, float(step_hours)


def _time_chunk(ds: Any, variable: str) -> int:
    """Frames per chunk of ``variable`` along time (all of them when it is not chunked)."""
    var = ds[variable]
    chunks = var.encoding.get("chunks") or var.encoding.get("preferred_chunks", {})
    if isinstance(chunks, Mapping):
        return int(chunks.get(_TIME, var.sizes[_TIME]))
    return int(chunks[var.dims.index(_TIME)])


def _blocks(indices: np.ndarray, chunk: int) -> list[np.ndarray]:
    """``indices`` split where they cross a chunk boundary of the store."""
    cuts = np.flatnonzero(np.diff(indices // chunk)) + 1
    return np.split(indices, cuts)


def _as_key(block: np.ndarray) -> slice | np.ndarray:
    # A slice (with its step) is basic indexing, which zarr does without a gather.
    steps = np.diff(block)
    if len(block) == 1 or (steps == steps[0]).all():
        step = int(steps[0]) if len(block) > 1 else 1
        return slice(int(block[0]), int(block[-1]) + 1, step)
    return block


def _out_chunks(shape: tuple[int, ...], frames: int) -> tuple[int, ...]:
    """HDF5 chunks of (1, T, C, H, W): a block of frames, halved until small enough."""
    chunk = [1, max(1, min(frames, shape[1])), *shape[2:]]
    for axis in (1, 2, 3):
        while math.prod(chunk) * FLOAT32 > _OUT_CHUNK_BYTES and chunk[axis] > 1:
            chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)


# --- the fetch ----------------------------------------------------------------------


def fetch_weatherbench(spec: Mapping[str, Any], out: Path, *, max_gib: float) -> Path:
    """Fetch the slice a download block names from WB2's ERA5 64 × 32 store into ``out``.

    Args:
        spec: the config's download block: ``name`` (:data:`STORE_NAME`), ``url`` (a
            mirror: http(s) URL, ``gs://`` URL or local path of the store; default
            :data:`DEFAULT_URL`), ``variables`` (``"2m_temperature"``,
            ``"geopotential@500"``: one channel each, in order; ``@`` picks a pressure
            level in hPa), ``start`` and ``stop`` (ISO dates or date-times in UTC, both
            inclusive; a date alone as stop means through the end of that day),
            ``step_hours`` (hours between kept frames, a multiple of the store's step;
            default the store's step).
        out: the raw file to write (replaced only on success).
        max_gib: ``limits.max_array_gib``: the largest (T, C, H, W) float32 slice.

    Returns:
        ``out``, holding ``frames`` float32 (1, T, C, H, W) in physical units,
        ``time_stamps`` int64 (T,) s since 1970-01-01 UTC, ``latitude`` (H,) and
        ``longitude`` (W,) float64 degrees (see the module docstring).

    Raises:
        SdkdError: one line naming the key or store at fault; nothing is left at ``out``.
    """
    request = _request(spec)
    out = Path(out)
    ds = _open_store(request)
    url = request.url
    times = _store_times(ds, url)
    lat, lon, dx = _grid(ds, url)
    levels = [_level_index(ds, channel, url) for channel in request.channels]
    chosen, step_hours = _frame_indices(request, times, url)
    shape = (len(chosen), len(request.channels), len(lat), len(lon))
    check_array(
        shape, max_gib,
        f"{STORE_NAME}: {request.start_text} … {request.stop_text} every {step_hours:g} h of "
        f"{len(request.channels)} variable(s)",
        "fetch fewer variables, a shorter time range or a coarser step_hours",
    )
    # Channels of one variable come from one read of its chunk (all levels at once).
    groups: dict[str, list[int]] = {}
    for position, channel in enumerate(request.channels):
        groups.setdefault(channel.variable, []).append(position)
    chunk = _time_chunk(ds, request.channels[0].variable)
    blocks = _blocks(chosen, chunk)
    units = [str(ds[c.variable].attrs.get("units", "")) for c in request.channels]
    log.info(
        "%s: %d frames × %s from %s (%s … %s every %g h)", STORE_NAME, len(chosen),
        ", ".join(c.text for c in request.channels), url, _iso(times[chosen[0]]),
        _iso(times[chosen[-1]]), step_hours,
    )

    from tqdm import tqdm

    frames_shape = (1, *shape)
    nbytes = math.prod(frames_shape) * FLOAT32 + len(chosen) * 8 + (len(lat) + len(lon)) * 8
    with h5_output(out, nbytes) as f:
        frames = f.create_dataset(
            "frames", shape=frames_shape, dtype=np.float32,
            chunks=_out_chunks(frames_shape, max(len(b) for b in blocks)),
        )
        done = 0
        with tqdm(total=len(chosen), desc=f"fetch {STORE_NAME}", unit="frame") as bar:
            for block in blocks:
                data = _read_block(ds, request, groups, levels, block, times)
                frames[0, done : done + len(block)] = data
                done += len(block)
                bar.update(len(block))
        frames.attrs["channels"] = [c.text for c in request.channels]
        frames.attrs["units"] = units
        frames.attrs["dt"] = step_hours
        frames.attrs["dx"] = dx
        f["time_stamps"] = times[chosen].astype("datetime64[s]").astype(np.int64)
        f["latitude"] = lat
        f["longitude"] = lon
        f.attrs.update(_provenance(request, step_hours))
    return out


def _read_block(
    ds: Any,
    request: _Request,
    groups: Mapping[str, list[int]],
    levels: Sequence[int | None],
    block: np.ndarray,
    times: np.ndarray,
) -> np.ndarray:
    """Frames ``block`` of every channel: float32 (len(block), C, H, W)."""
    key = _as_key(block)
    out: np.ndarray | None = None
    for variable, positions in groups.items():
        what = (
            f"{variable} at {_iso(times[block[0]])} … {_iso(times[block[-1]])} from "
            f"{request.url}"
        )
        selection: dict[str, Any] = {_TIME: key}
        if levels[positions[0]] is not None:
            selection[_LEVEL] = [levels[p] for p in positions]
        order = [_TIME, _LEVEL, _LAT, _LON] if _LEVEL in selection else [_TIME, _LAT, _LON]
        # Only the chunks the selection touches are read; transposing puts latitude
        # (H) before longitude (W) whatever the store's order.
        read = functools.partial(_values, ds[variable], selection, order)
        try:
            values = _with_retries(read, request.remote, f"reading {what}")
        except Exception as exc:
            # Not an OSError past this point: h5_output would take it for a write failure.
            raise SdkdError(f"download: cannot read {what} ({first_line(exc)})") from None
        if values.ndim == 3:  # a surface variable: one channel
            values = values[:, None]
        if out is None:
            out = np.empty((len(block), len(request.channels), *values.shape[2:]), np.float32)
        # float64 beyond float32's range becomes Inf, which preprocess reports.
        with np.errstate(over="ignore"):
            out[:, positions] = values
    assert out is not None
    _check_frames(out, request, block, times)
    return out


def _values(var: Any, selection: Mapping[str, Any], order: Sequence[str]) -> np.ndarray:
    """``var[selection]`` with its axes in ``order``.

    Transposed after reading: xarray reads a lazily *transposed* selection through
    zarr's coordinate (point-wise) indexing, several times slower than a block read.
    """
    selected = var.isel(selection)
    return selected.values.transpose([selected.dims.index(d) for d in order])


def _check_frames(
    data: np.ndarray, request: _Request, block: np.ndarray, times: np.ndarray
) -> None:
    """Refuse a channel frame that is all NaN: a chunk missing from the store reads so."""
    empty = np.isnan(data).reshape(data.shape[0], data.shape[1], -1).all(axis=2)
    if empty.any():
        t, c = (int(i) for i in np.argwhere(empty)[0])
        raise SdkdError(
            f"download: {request.channels[c].text} at {_iso(times[block[t]])} in "
            f"{request.url} is all NaN (a chunk missing from the store, or no data then); "
            "choose another time range or variable"
        )
    nan = int(np.isnan(data).sum())
    if nan:
        log.warning("%s: %d NaN values in frames %s … %s", STORE_NAME, nan,
                    _iso(times[block[0]]), _iso(times[block[-1]]))


def _provenance(request: _Request, step_hours: float) -> dict[str, Any]:
    import xarray as xr
    import zarr

    import sdkd

    return {
        "source": "weatherbench2",
        "store": request.url,
        "variables": [c.text for c in request.channels],
        "start": request.start_text,
        "stop": request.stop_text,
        "step_hours": int(step_hours) if float(step_hours).is_integer() else step_hours,
        "created_with": (
            f"sdkd {sdkd.__version__}, xarray {xr.__version__}, zarr {zarr.__version__}"
        ),
    }
