"""Where a dataset's frames come from, and the catalogue of named public sources.

Routes (the config's ``source`` and its block):

``simulate``
    The solvers write an ``sdkd`` raw file (:mod:`sdkd.data.acquire`).
``download``
    A named public file (PDEBench), any checksummed URL in a known layout (PDEBench,
    FNO ``.mat``, TaxiBJ), or a slice of WeatherBench 2's ERA5 Zarr store, fetched to
    the dataset's raw folder (``resources/raw/{dataset}/``, a named experiment's
    ``resources/shared/``: :func:`sdkd.plan.raw_dir`; :mod:`sdkd.data.download`,
    :mod:`sdkd.data.weatherbench`).
``file``
    The user's own data, read where it is: a plain HDF5 file through h5py (with its
    axis-order checks, :mod:`sdkd.data.raw`); NetCDF-3/4, Zarr, NumPy and several files
    of a glob through xarray or NumPy (:mod:`sdkd.data.gridded`); TaxiBJ's DeepST files
    through :mod:`sdkd.data.taxibj`.

:func:`open_source` gives every route the same :class:`~sdkd.data.raw.RawSeries`, so
preprocessing does not know where data came from. :func:`catalogue` lists the named
sources for ``sdkd sources``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdkd.data.paths import data_paths, file_pattern
from sdkd.errors import SdkdError

# The config checks import this module for WEATHERBENCH, and the Snakefile imports the
# config checks: the readers (h5py, xarray) are imported only when data is opened.
if TYPE_CHECKING:
    from sdkd.data.raw import RawSeries

WEATHERBENCH = "weatherbench2_era5_64x32"


# The default experiment's real climate data, which ships in a wheel (see the README); the
# file says "Data from Met Office Unified Model 6.05".
HADGEM2 = {
    "layout": "netcdf",
    "size": "1.8 MB (sample_data/A1B_north_america.nc in the iris-sample-data wheel)",
    "licence": "Open Government (the iris-sample-data package metadata, SciTools)",
    "description": (
        "HadGEM2-AO climate model, A1B scenario: annual-mean near-surface air temperature "
        "(K) over North America, 1860-2099 (240 frames), 37 × 49 grid of 1.25° × 1.875°; "
        "model output, not observations"
    ),
}


def is_weatherbench(dataset: Mapping[str, Any]) -> bool:
    """Whether a dataset fetches a slice of the WeatherBench 2 store."""
    return dataset["source"] == "download" and dataset["download"].get("name") == WEATHERBENCH


def _plain_hdf5(path: Path, variable: str) -> bool:
    """Whether h5py's reader (with its axis-order checks) takes the file: HDF5 whose
    variable has no dimension scales, and a file that cannot be read at all, whose error
    that reader names. NetCDF-4 attaches a scale to each dimension; xarray reads those
    files (:mod:`sdkd.data.gridded`), keeping their time stamps, coordinates and units."""
    import h5py

    if not path.is_file():
        return False
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            data = f.get(variable)
            if not isinstance(data, h5py.Dataset):
                return True
            return not any(len(dim) for dim in data.dims)
    except Exception:  # h5py raises OSError, KeyError, RuntimeError on damaged files
        return True


@contextlib.contextmanager
def open_source(
    dataset: Mapping[str, Any], raw: str | Path | None, *, max_gib: float | None = None
) -> Iterator[RawSeries]:
    """Open a dataset's frames, whatever the route.

    Args:
        dataset: the validated config block of the dataset.
        raw: the file ``sdkd acquire`` wrote (simulate and download routes); None for
            a ``file`` source, which is read where the config says.
        max_gib: ``limits.max_array_gib``, the largest trajectory that may be read
            (None: the schema's default).
    """
    from sdkd.data.limits import DEFAULT_MAX_GIB
    from sdkd.data.raw import open_raw

    max_gib = DEFAULT_MAX_GIB if max_gib is None else max_gib
    source = dataset["source"]
    if source == "file":
        spec = dataset["file"]
        paths = data_paths(file_pattern(spec))
        if spec["layout"] == "taxibj":
            from sdkd.data.taxibj import open_taxibj

            with open_taxibj(paths, max_gib=max_gib) as series:
                yield series
            return
        variable = spec.get("variable")
        options = {"channels": spec.get("channels"), "dt": spec["dt"], "dx": spec["dx"]}
        if "axes" not in spec:
            raise SdkdError(f"file {spec['path']}: give `axes`, the variable's axis order")
        if len(paths) == 1 and isinstance(variable, str) and _plain_hdf5(paths[0], variable):
            with open_raw(paths[0], "array", max_gib=max_gib, variable=variable,
                          axes=spec["axes"], **options) as series:
                yield series
            return
        from sdkd.data.gridded import open_gridded

        with open_gridded(paths, variable=variable, axes=spec["axes"], max_gib=max_gib,
                          **options) as series:
            yield series
        return
    if raw is None:
        raise SdkdError(f"a {source} source reads the file `sdkd acquire` wrote: give --raw")
    if source == "simulate" or is_weatherbench(dataset):
        layout, options = "sdkd", {}
    else:
        from sdkd.data.download import resolve

        remote = resolve(dataset["download"])
        if remote.layout == "taxibj":
            from sdkd.data.taxibj import open_taxibj

            with open_taxibj([Path(raw)], max_gib=max_gib) as series:
                yield series
            return
        layout = remote.layout
        options = {"variable": dataset["download"]["variable"]} if layout == "fno_mat" else {}
    with open_raw(raw, layout, max_gib=max_gib, **options) as series:
        yield series


def catalogue() -> list[dict[str, str]]:
    """Every named source: name, route, layout, size, licence and a description."""
    from sdkd.data import taxibj, weatherbench
    from sdkd.data.download import REGISTRY

    rows = [
        {"name": entry.name, "route": "download", "layout": entry.layout, "size": entry.size,
         "licence": entry.licence, "description": entry.description}
        for entry in REGISTRY.values()
    ]
    for name, route, info in ((WEATHERBENCH, "download", weatherbench.SOURCE),
                              ("taxibj", "download url / file", taxibj.SOURCE),
                              ("hadgem2_a1b_north_america", "file, package iris_sample_data",
                               HADGEM2)):
        rows.append({"name": name, "route": route, "layout": info["layout"],
                     "size": info["size"], "licence": info["licence"],
                     "description": info["description"]})
    return rows
