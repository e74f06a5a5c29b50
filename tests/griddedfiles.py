"""Small gridded files in the formats users bring: NetCDF-3, NetCDF-4, Zarr, .npy, .npz.

The xarray writers store what a weather file has: named dimensions (``time``, ``lat``,
``lon``), a CF time coordinate ("hours since ..."), latitude and longitude coordinates
with their CF attributes, and a ``units`` attribute per variable. Each writer returns
the values a correct reader must produce, as (N, T, C, H, W) in the file's dtype (for
an .npz, one such array per key).

Values differ along every axis (an offset per frame, row and column, and per channel),
so a reader that transposes or shifts an axis fails the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# CF attributes of the grid coordinates, as ERA5 and most reanalyses write them.
LATITUDE_ATTRS = {"units": "degrees_north", "standard_name": "latitude"}
LONGITUDE_ATTRS = {"units": "degrees_east", "standard_name": "longitude"}
UNITS = {"t2m": "K", "u10": "m s**-1", "v10": "m s**-1", "tp": "m"}


def field_values(shape: Sequence[int], seed: int = 0, dtype: str = "float32") -> np.ndarray:
    """Random values of ``shape`` with a different offset along each axis."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape)
    for axis, size in enumerate(shape):
        offset = np.arange(size, dtype=np.float64) * 10.0 ** (axis - 2)
        values += offset.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return values.astype(dtype)


def weather_dataset(
    t: int = 6,
    h: int = 8,
    w: int = 16,
    variables: Sequence[str] = ("t2m",),
    start: str = "2020-01-01T00:00",
    step_hours: int = 6,
    seed: int = 0,
    dtype: str = "float32",
):
    """An xarray Dataset of variables (time, lat, lon) and its (1, T, C, H, W) values.

    Latitude runs north to south (as in ERA5) over 2° rows; longitude east over 1.5°.
    """
    import xarray as xr

    times = np.datetime64(start, "s") + np.arange(t) * np.timedelta64(step_hours, "h")
    data_vars = {}
    channels = []
    for k, name in enumerate(variables):
        values = field_values((t, h, w), seed=seed + k, dtype=dtype) + np.asarray(
            100 * k, dtype=dtype
        )
        attrs = {"units": UNITS.get(name, "1"), "long_name": name}
        data_vars[name] = (("time", "lat", "lon"), values, attrs)
        channels.append(values)
    dataset = xr.Dataset(
        data_vars,
        coords={
            "time": ("time", times.astype("datetime64[ns]"), {"standard_name": "time"}),
            "lat": ("lat", 60.0 - 2.0 * np.arange(h), LATITUDE_ATTRS),
            "lon": ("lon", 1.5 * np.arange(w), LONGITUDE_ATTRS),
        },
    )
    encoding = {"time": {"units": f"hours since {start.replace('T', ' ')}", "dtype": "int32"}}
    return dataset, np.stack(channels, axis=1)[None], encoding


def write_netcdf3(path: str | Path, **kwargs) -> np.ndarray:
    """A NetCDF-3 (classic, 64-bit offset) file through xarray's scipy engine."""
    dataset, expected, encoding = weather_dataset(**kwargs)
    dataset.to_netcdf(path, engine="scipy", encoding=encoding)
    return expected


def write_netcdf4(path: str | Path, **kwargs) -> np.ndarray:
    """A NetCDF-4 file through xarray's h5netcdf engine."""
    dataset, expected, encoding = weather_dataset(**kwargs)
    dataset.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return expected


def write_zarr(
    path: str | Path, zarr_format: int = 3, consolidated: bool = True, **kwargs
) -> np.ndarray:
    """A Zarr directory store, format 2 or 3, with or without consolidated metadata."""
    import warnings

    dataset, expected, encoding = weather_dataset(**kwargs)
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet in the format 3 spec.
        warnings.simplefilter("ignore")
        dataset.to_zarr(path, mode="w", zarr_format=zarr_format, consolidated=consolidated,
                        encoding=encoding)
    return expected


def _shape(axes: str, n: int, t: int, c: int, h: int, w: int) -> tuple[int, ...]:
    sizes = {"N": n, "T": t, "C": c, "H": h, "W": w}
    return tuple(sizes[a] for a in axes.split())


def as_ntchw(values: np.ndarray, axes: str) -> np.ndarray:
    """An array stored in order ``axes`` as (N, T, C, H, W)."""
    labels = axes.split()
    if "N" not in labels:
        values, labels = values[None], ["N", *labels]
    if "C" not in labels:
        values, labels = values[:, :, None], [*labels[:2], "C", *labels[2:]]
    return values


def write_npy(
    path: str | Path, axes: str = "T H W", n: int = 3, t: int = 5, c: int = 2, h: int = 8,
    w: int = 16, seed: int = 0, dtype: str = "float32",
) -> np.ndarray:
    """A .npy array stored in order ``axes``; sizes of axes not in it are ignored."""
    values = field_values(_shape(axes, n, t, c, h, w), seed=seed, dtype=dtype)
    np.save(path, values)
    return as_ntchw(values, axes)


def write_npz(
    path: str | Path, keys: Sequence[str] = ("u",), axes: str = "T H W", n: int = 3,
    t: int = 5, c: int = 2, h: int = 8, w: int = 16, compressed: bool = True, seed: int = 0,
) -> dict[str, np.ndarray]:
    """An .npz archive of one array per key, each in order ``axes``.

    Returns:
        Each key's array as (N, T, C, H, W).
    """
    arrays = {
        key: field_values(_shape(axes, n, t, c, h, w), seed=seed + k)
        for k, key in enumerate(keys)
    }
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return {key: as_ntchw(values, axes) for key, values in arrays.items()}
