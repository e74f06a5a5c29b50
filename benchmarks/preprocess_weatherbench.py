"""Benchmark the WeatherBench 2 data steps on a one-year local copy of the 64×32 store.

    python benchmarks/preprocess_weatherbench.py                 # local path, 5 repeats
    python benchmarks/preprocess_weatherbench.py --http          # also over loopback HTTP
    python benchmarks/preprocess_weatherbench.py --variables 2m_temperature --repeats 9
    python benchmarks/preprocess_weatherbench.py --workdir /tmp/wbbench  # keep the store

Prints ONE JSON document on stdout (progress goes to stderr). The set-up: a Zarr store
laid out like WB2's ``1959-2023_01_10-6h-64x32_equiangular_conservative.zarr`` (written
by ``tests/wbstore.py``: Zarr v2, consolidated, 100-frame chunks, Blosc LZ4) holding
2015 every 6 hours (1460 frames); then each stage is timed ``--repeats`` times and its
median reported:

- ``fetch``: :func:`sdkd.data.weatherbench.fetch_weatherbench` of the whole year into
  the ``sdkd`` raw layout (frames per second, MB/s of float32 written);
- ``fetch_http`` (``--http``): the same through a loopback HTTP server;
- ``preprocess``: :func:`sdkd.data.preprocess.preprocess` of the fetched year into the
  canonical file, split by months (train January–September, val October–November, test
  December; frames per second);
- ``total``: fetch + preprocess medians, the year from store to canonical file.

Each stage is a function ``stage(context) -> dict`` registered in :data:`STAGES`; the
preprocess stage reads ``context["raw"]``, which the fetch stage leaves behind.

The machine is often shared: ``host.loadavg_*`` are recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _host import loadavg, log

REPO = Path(__file__).resolve().parents[1]
# The store's layout is defined once, for the tests and this benchmark.
sys.path.insert(0, str(REPO / "tests"))

from wbstore import serve_tree, write_store  # noqa: E402

from sdkd.data.preprocess import preprocess  # noqa: E402
from sdkd.data.weatherbench import STORE_NAME, fetch_weatherbench  # noqa: E402

YEAR = 2015  # not a leap year: 365 × 4 = 1460 frames
FRAMES = 1460

Context = dict[str, Any]
Stage = Callable[[Context], dict[str, Any]]


def build_store(workdir: Path) -> Path:
    """The one-year store under ``workdir`` (reused when it is there)."""
    path = workdir / "era5_64x32_2015.zarr"
    if not (path / ".zmetadata").exists():
        log(f"writing {path}")
        write_store(path, start=f"{YEAR}-01-01T00", periods=FRAMES, levels=(500, 850))
    return path


def _spec(url: str, variables: list[str]) -> dict[str, Any]:
    return {"name": STORE_NAME, "url": url, "variables": variables,
            "start": f"{YEAR}-01-01", "stop": f"{YEAR}-12-31", "step_hours": 6}


def _timed_fetch(ctx: Context, url: str, out: Path) -> dict[str, Any]:
    seconds = []
    for i in range(ctx["repeats"]):
        t0 = time.perf_counter()
        fetch_weatherbench(_spec(url, ctx["variables"]), out, max_gib=1.0)
        seconds.append(time.perf_counter() - t0)
        log(f"  repeat {i + 1}: {seconds[-1]:.3f} s")
    median = statistics.median(seconds)
    nbytes = FRAMES * len(ctx["variables"]) * 32 * 64 * 4
    return {
        "frames": FRAMES,
        "channels": len(ctx["variables"]),
        "seconds": seconds,
        "seconds_median": median,
        "frames_per_second_median": FRAMES / median,
        "mb_per_second_median": nbytes / 1e6 / median,
        "output_bytes": out.stat().st_size,
    }


def stage_fetch(ctx: Context) -> dict[str, Any]:
    """Fetch the year from the store's local path; leaves the raw file in ``ctx["raw"]``."""
    out = ctx["workdir"] / "raw.h5"
    result = _timed_fetch(ctx, str(ctx["store"]), out)
    ctx["raw"] = out
    return result


def stage_fetch_http(ctx: Context) -> dict[str, Any]:
    """Fetch the year through a loopback HTTP server (fsspec + aiohttp in the path)."""
    with serve_tree(ctx["store"].parent) as server:
        return _timed_fetch(ctx, server.url(ctx["store"].name), ctx["workdir"] / "raw_http.h5")


def stage_preprocess(ctx: Context) -> dict[str, Any]:
    """Preprocess the fetched year (a dataset block as `sdkd check-config` fills it)."""
    dataset = {
        "source": "download", "download": _spec(str(ctx["store"]), ctx["variables"]),
        "split": {"train": [f"{YEAR}-01", f"{YEAR}-09"], "val": [f"{YEAR}-10", f"{YEAR}-11"],
                  "test": [f"{YEAR}-12", f"{YEAR}-12"]},
        "in_steps": 4, "out_steps": 4, "window_stride": 1, "max_trajectories": None,
        "temporal_stride": 1, "spatial_stride": 1, "grid": {"policy": "exact"},
    }
    out = ctx["workdir"] / "canonical.h5"
    seconds = []
    for i in range(ctx["repeats"]):
        t0 = time.perf_counter()
        preprocess(ctx["raw"], out, dataset, name="weather")
        seconds.append(time.perf_counter() - t0)
        log(f"  repeat {i + 1}: {seconds[-1]:.3f} s")
    median = statistics.median(seconds)
    return {"frames": FRAMES, "seconds": seconds, "seconds_median": median,
            "frames_per_second_median": FRAMES / median, "output_bytes": out.stat().st_size}


def stage_total(ctx: Context) -> dict[str, Any]:
    """Store → canonical file: the sum of the fetch and preprocess medians."""
    stages = ctx["report"]
    seconds = stages["fetch"]["seconds_median"] + stages["preprocess"]["seconds_median"]
    return {"frames": FRAMES, "seconds_median": seconds,
            "frames_per_second_median": FRAMES / seconds}


STAGES: dict[str, Stage] = {"fetch": stage_fetch, "fetch_http": stage_fetch_http,
                            "preprocess": stage_preprocess, "total": stage_total}


def host_info() -> dict[str, Any]:
    """The machine and the library versions (no torch: this benchmark does not use it)."""
    import h5py
    import numpy
    import xarray
    import zarr

    from sdkd.machine import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "xarray": xarray.__version__,
        "zarr": zarr.__version__,
        "h5py": h5py.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--variables", default="2m_temperature,geopotential@500",
                        help="comma-separated channels fetched (1–2 keeps it short)")
    parser.add_argument("--http", action="store_true", help="also time a loopback HTTP fetch")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the store here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "benchmark": "preprocess_weatherbench",
            "host": {**host_info(), "loadavg_start": loadavg()},
            "store": {"frames": FRAMES, "grid": "64x32", "step_hours": 6, "year": YEAR},
            "stages": {},
        }
        t0 = time.perf_counter()
        ctx: Context = {"workdir": workdir, "store": build_store(workdir),
                        "repeats": args.repeats, "variables": args.variables.split(","),
                        "report": report["stages"]}
        report["store"]["build_seconds"] = time.perf_counter() - t0
        for name, stage in STAGES.items():
            if name == "fetch_http" and not args.http:
                continue
            log(f"stage {name}")
            report["stages"][name] = stage(ctx)
        report["host"]["loadavg_end"] = loadavg()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
