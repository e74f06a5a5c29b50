"""Reading users' gridded files (NetCDF-3/4, HDF5, Zarr, .npy, .npz, globs of them)."""

from __future__ import annotations

import importlib.util
import os
import re
import zipfile

import h5py
import numpy as np
import pytest
from griddedfiles import (
    as_ntchw,
    field_values,
    weather_dataset,
    write_netcdf3,
    write_netcdf4,
    write_npy,
    write_npz,
    write_zarr,
)

from sdkd.data import paths as paths_module
from sdkd.data.gridded import open_gridded
from sdkd.data.paths import data_paths, input_files
from sdkd.data.raw import AXIS_ORDERS
from sdkd.errors import SdkdError

XARRAY_WRITERS = {
    "netcdf3": (write_netcdf3, "a.nc", "netcdf"),
    "netcdf4": (write_netcdf4, "a.nc", "netcdf"),
    "zarr3": (write_zarr, "a.zarr", "zarr"),
    "zarr3-unconsolidated": (lambda p, **k: write_zarr(p, consolidated=False, **k), "a.zarr",
                             "zarr"),
    "zarr2": (lambda p, **k: write_zarr(p, zarr_format=2, **k), "a.zarr", "zarr"),
    "zarr2-unconsolidated": (
        lambda p, **k: write_zarr(p, zarr_format=2, consolidated=False, **k), "a.zarr", "zarr"
    ),
}


def read_all(paths, **options):
    """Every trajectory as float32 (N, T, C, H, W), and the series."""
    with open_gridded(paths, **options) as raw:
        frames = np.stack([raw.trajectory(i) for i in range(len(raw))])
    return frames, raw


def expected_times(t, start="2020-01-01T00:00", step_hours=6):
    return np.datetime64(start, "s") + np.arange(t) * np.timedelta64(step_hours, "h")


def one_line_error(paths, *names, **options) -> str:
    """The SdkdError message of opening and reading ``paths``; it names ``names``."""
    with pytest.raises(SdkdError) as caught:
        read_all(paths, **options)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, message
    return message


# ------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", XARRAY_WRITERS)
def test_xarray_formats_round_trip(tmp_path, kind):
    writer, name, family = XARRAY_WRITERS[kind]
    expected = writer(tmp_path / name, t=7)
    frames, raw = read_all([tmp_path / name], variable="t2m", axes="T H W")
    assert np.array_equal(frames, expected)
    assert raw.shape == (1, 7, 1, 8, 16)
    assert raw.channels == ["t2m"]
    assert raw.units == ["K"]
    assert raw.source == f"{family}:t2m"
    assert np.array_equal(raw.times, expected_times(7))
    assert raw.times.dtype == np.dtype("datetime64[s]")
    assert set(raw.coords) == {"latitude", "longitude"}
    assert np.array_equal(raw.coords["latitude"], 60.0 - 2.0 * np.arange(8))
    assert np.array_equal(raw.coords["longitude"], 1.5 * np.arange(16))
    assert raw.dt == 6.0  # hours between the time stamps
    assert raw.dx == 1.5  # degrees of longitude


@pytest.mark.parametrize("kind", ["netcdf3", "netcdf4", "zarr3"])
def test_variables_become_channels(tmp_path, kind):
    writer, name, _ = XARRAY_WRITERS[kind]
    expected = writer(tmp_path / name, variables=("t2m", "u10", "v10"))
    frames, raw = read_all([tmp_path / name], variable=["u10", "t2m"], axes="T H W")
    assert np.array_equal(frames, expected[:, :, [1, 0]])
    assert raw.channels == ["u10", "t2m"]
    assert raw.units == ["m s**-1", "K"]
    _, named = read_all([tmp_path / name], variable=["u10", "t2m"], axes="T H W",
                        channels=["u", "T"], dt=0.25, dx=0.1)
    assert (named.channels, named.dt, named.dx) == (["u", "T"], 0.25, 0.1)


def test_glob_joins_files_in_time(tmp_path):
    parts = [
        write_netcdf4(tmp_path / f"era5_2020-01-0{day}.nc", t=4, start=f"2020-01-0{day}T00:00",
                      seed=day)
        for day in (3, 1, 2)
    ]
    paths = data_paths(str(tmp_path / "era5_*.nc"))
    assert [p.name for p in paths] == [f"era5_2020-01-0{d}.nc" for d in (1, 2, 3)]
    frames, raw = read_all(paths, variable="t2m", axes="T H W")
    assert np.array_equal(frames, np.concatenate([parts[1], parts[2], parts[0]], axis=1))
    assert raw.shape == (1, 12, 1, 8, 16)
    assert raw.stored_shape == (12, 8, 16)
    assert (np.diff(raw.times) > np.timedelta64(0, "s")).all()
    assert raw.times[0] == np.datetime64("2020-01-01T00:00", "s")


def test_glob_of_npy_with_trajectories(tmp_path):
    # .npy files have no time stamps; with an N axis, N stays and T adds up.
    first = write_npy(tmp_path / "p0.npy", axes="N T H W", n=2, t=3, seed=1)
    second = write_npy(tmp_path / "p1.npy", axes="N T H W", n=2, t=2, seed=2)
    frames, raw = read_all(data_paths(str(tmp_path / "p?.npy")), variable=None,
                           axes="N T H W")
    assert np.array_equal(frames, np.concatenate([first, second], axis=1))
    assert raw.times is None and raw.coords == {} and raw.units is None
    assert (raw.dt, raw.dx, raw.source) == (1.0, 1.0, "npy")


@pytest.mark.parametrize("axes", AXIS_ORDERS)
def test_npy_in_each_axis_order(tmp_path, axes):
    expected = write_npy(tmp_path / "x.npy", axes=axes, dtype="float64")
    frames, raw = read_all([tmp_path / "x.npy"], variable=None, axes=axes)
    assert np.array_equal(frames, expected.astype(np.float32))
    assert raw.channels == [f"c{i}" for i in range(expected.shape[2])]


@pytest.mark.parametrize("compressed", [True, False], ids=["deflated", "stored"])
@pytest.mark.parametrize("axes", AXIS_ORDERS)
def test_npz_in_each_axis_order(tmp_path, axes, compressed):
    expected = write_npz(tmp_path / "x.npz", keys=("u", "other"), axes=axes,
                         compressed=compressed)
    frames, raw = read_all([tmp_path / "x.npz"], variable="u", axes=axes)
    assert np.array_equal(frames, expected["u"])
    assert raw.source == "npz:u"
    assert raw.channels == (["u"] if "C" not in axes else ["c0", "c1"])


def test_npz_keys_become_channels(tmp_path):
    expected = write_npz(tmp_path / "x.npz", keys=("u", "v"), axes="N T H W", n=4)
    frames, raw = read_all([tmp_path / "x.npz"], variable=["u", "v"], axes="N T H W")
    assert np.array_equal(frames, np.concatenate([expected["u"], expected["v"]], axis=2))
    assert raw.channels == ["u", "v"]


@pytest.mark.parametrize("compressed", [True, False], ids=["deflated", "stored"])
def test_npz_trajectories_in_any_order(tmp_path, compressed):
    # Deflated members are streamed (kept open between reads), stored ones mapped.
    expected = write_npz(tmp_path / "x.npz", keys=("a", "u"), axes="N T H W", n=6,
                         compressed=compressed)["u"]
    with open_gridded([tmp_path / "x.npz"], variable="u", axes="N T H W") as raw:
        for i in (4, 5, 0, 3, 3, 1):
            assert np.array_equal(raw.trajectory(i), expected[i])


def test_npz_fortran_order_and_single_key_default(tmp_path):
    values = np.asfortranarray(field_values((3, 5, 8, 16)))
    np.savez(tmp_path / "f.npz", values)  # the key is arr_0
    frames, raw = read_all([tmp_path / "f.npz"], variable=None, axes="N T H W")
    assert np.array_equal(frames, as_ntchw(values, "N T H W"))
    assert raw.channels == ["arr_0"]


def test_plain_hdf5_with_groups_and_no_dimension_scales(tmp_path):
    values = field_values((2, 6, 8, 12), dtype="int16")
    with h5py.File(tmp_path / "sim.h5", "w") as f:
        f.create_group("fields").create_dataset("u", data=values)
    frames, raw = read_all([tmp_path / "sim.h5"], variable="/fields/u", axes="N T H W")
    assert np.array_equal(frames, as_ntchw(values, "N T H W").astype(np.float32))
    assert raw.times is None and raw.coords == {}
    assert raw.source == "netcdf:/fields/u"
    assert raw.channels == ["u"]
    one_line_error([tmp_path / "sim.h5"], "sim.h5", "'/fields/u'", "rank 3",
                   variable="/fields/u", axes="T H W")


def test_channel_labels_packing_and_cf_named_time_axis(tmp_path):
    import xarray as xr

    values = field_values((5, 2, 8, 16))
    packed = np.round(values * 100).astype("int16")
    dataset = xr.Dataset(
        {"wind": (("valid_time", "component", "y", "x"), packed,
                  {"units": "m/s", "scale_factor": 0.01, "add_offset": 1.0})},
        coords={
            "valid_time": ("valid_time", np.arange(5),
                           {"units": "days since 1999-12-31", "standard_name": "time"}),
            "component": ("component", ["u", "v"]),
            "x": ("x", np.arange(16) * 250.0, {"units": "m"}),
        },
    )
    dataset.to_netcdf(tmp_path / "w.nc", engine="h5netcdf")
    frames, raw = read_all([tmp_path / "w.nc"], variable="wind", axes="T C H W")
    # CF unpacking, as xarray does it: in float64 (the attributes' type), then float32.
    assert np.array_equal(frames[0], (packed * 0.01 + 1.0).astype(np.float32))
    assert raw.channels == ["u", "v"]
    assert raw.units == ["m/s", "m/s"]
    assert raw.dt == 24.0 and raw.dx == 250.0
    assert list(raw.coords) == ["x"]
    assert raw.times[0] == np.datetime64("1999-12-31", "s")
    message = one_line_error([tmp_path / "w.nc"], "w.nc", "valid_time", variable="wind",
                             axes="N T H W")
    assert "time dimension" in message


def test_calendar_without_cftime_keeps_the_data(tmp_path, caplog):
    import xarray as xr

    if importlib.util.find_spec("cftime") is not None:
        pytest.skip("cftime decodes this calendar")
    values = field_values((5, 8, 16))
    time = ("time", np.arange(5), {"units": "days since 2000-02-27", "calendar": "noleap"})
    xr.Dataset({"tas": (("time", "lat", "lon"), values)}, coords={"time": time}).to_netcdf(
        tmp_path / "model.nc", engine="h5netcdf"
    )
    frames, raw = read_all([tmp_path / "model.nc"], variable="tas", axes="T H W")
    assert np.array_equal(frames[0, :, 0], values)
    assert raw.times is None and raw.dt == 1.0
    assert "model.nc: its times cannot be decoded" in caplog.text


# ------------------------------------------------------------------------ paths


def test_data_paths(tmp_path, monkeypatch):
    for name in ("b.nc", "a.nc", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    write_zarr(tmp_path / "s.zarr", t=2)
    assert data_paths(str(tmp_path / "*.nc")) == [tmp_path / "a.nc", tmp_path / "b.nc"]
    assert data_paths(str(tmp_path / "s.zarr")) == [tmp_path / "s.zarr"]
    assert data_paths(str(tmp_path / "*.zarr")) == [tmp_path / "s.zarr"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_paths("~/a.nc") == [tmp_path / "a.nc"]
    with pytest.raises(SdkdError, match=r"\*\.grib: no file matches this glob"):
        data_paths(str(tmp_path / "*.grib"))
    with pytest.raises(SdkdError, match=r"missing\.nc: file not found"):
        data_paths(str(tmp_path / "missing.nc"))
    (tmp_path / "[weird].nc").write_bytes(b"")  # a name with glob characters exists
    assert data_paths(str(tmp_path / "[weird].nc")) == [tmp_path / "[weird].nc"]
    monkeypatch.setattr(paths_module, "MAX_MATCHES", 2)
    with pytest.raises(SdkdError, match="more than 2 paths"):
        data_paths(str(tmp_path / "*"))


def test_input_files_lists_zarr_stores(tmp_path, monkeypatch):
    write_zarr(tmp_path / "s.zarr", zarr_format=2, t=2)
    (tmp_path / "x.npy").write_bytes(b"")
    files = input_files(str(tmp_path / "s.zarr"))
    assert files == sorted(files)
    assert all(f.is_file() for f in files)
    names = {f.relative_to(tmp_path / "s.zarr").as_posix() for f in files}
    assert {".zgroup", ".zmetadata", "t2m/.zarray"} <= names
    assert any(re.fullmatch(r"t2m/\d+\.\d+\.\d+", n) for n in names)
    assert input_files(str(tmp_path / "*")) == [*files, tmp_path / "x.npy"]
    monkeypatch.setattr(paths_module, "MAX_STORE_FILES", 3)
    with pytest.raises(SdkdError, match=r"s\.zarr: holds more than 3 files"):
        input_files(str(tmp_path / "s.zarr"))


# -------------------------------------------------------------------- bad input


def test_npy_of_the_wrong_rank(tmp_path):
    write_npy(tmp_path / "x.npy", axes="N T H W")
    message = one_line_error([tmp_path / "x.npy"], "x.npy", "rank 4", "'T H W'",
                             variable=None, axes="T H W")
    assert "needs rank 3" in message


def test_npz_without_the_key(tmp_path):
    write_npz(tmp_path / "x.npz", keys=("u", "v"))
    one_line_error([tmp_path / "x.npz"], "x.npz", "'w'", "keys: u, v", variable="w",
                   axes="T H W")
    one_line_error([tmp_path / "x.npz"], "x.npz", "u, v", variable=None, axes="T H W")


@pytest.mark.parametrize("kind", ["netcdf3", "netcdf4", "zarr3"])
def test_missing_variable_lists_the_variables(tmp_path, kind):
    writer, name, _ = XARRAY_WRITERS[kind]
    writer(tmp_path / name, variables=("t2m", "tp"))
    one_line_error([tmp_path / name], name, "'sst'", "variables: t2m, tp",
                   variable=["t2m", "sst"], axes="T H W")
    one_line_error([tmp_path / name], name, "t2m, tp", variable=None, axes="T H W")


def test_glob_of_different_grids(tmp_path):
    write_netcdf4(tmp_path / "d1.nc", t=3)
    write_netcdf4(tmp_path / "d2.nc", t=3, start="2020-01-02T00:00", h=12)
    one_line_error(data_paths(str(tmp_path / "d*.nc")), "d2.nc", "d1.nc", "axis H (lat)",
                   "12 points", variable="t2m", axes="T H W")
    # Same sizes, shifted longitudes.
    dataset, _, encoding = weather_dataset(t=3, start="2020-01-02T00:00")
    dataset = dataset.assign_coords(lon=dataset.lon + 0.5)
    dataset.to_netcdf(tmp_path / "d2.nc", engine="h5netcdf", encoding=encoding)
    one_line_error(data_paths(str(tmp_path / "d*.nc")), "d2.nc", "d1.nc", "'longitude'",
                   "entry 0", variable="t2m", axes="T H W")


def test_glob_of_overlapping_times(tmp_path):
    write_netcdf3(tmp_path / "a.nc", t=4)
    write_netcdf3(tmp_path / "b.nc", t=4, start="2020-01-01T12:00")
    one_line_error(data_paths(str(tmp_path / "*.nc")), "b.nc", "a.nc", "not after",
                   variable="t2m", axes="T H W")
    dataset, _, encoding = weather_dataset(t=4)
    dataset.isel(time=[0, 2, 1, 3]).to_netcdf(tmp_path / "c.nc", engine="scipy",
                                              encoding=encoding)
    one_line_error([tmp_path / "c.nc"], "c.nc", "not strictly increasing", "frame 2",
                   variable="t2m", axes="T H W")


def test_glob_of_mixed_formats_and_mixed_time_stamps(tmp_path):
    write_netcdf4(tmp_path / "a.nc", t=4)
    write_npy(tmp_path / "b.npy")
    one_line_error([tmp_path / "a.nc", tmp_path / "b.npy"], "b.npy", "a.nc", "one format",
                   variable="t2m", axes="T H W")
    dataset, _, _ = weather_dataset(t=4)
    dataset.drop_vars("time").to_netcdf(tmp_path / "c.nc", engine="scipy")
    one_line_error([tmp_path / "a.nc", tmp_path / "c.nc"], "c.nc", "no time stamps",
                   variable="t2m", axes="T H W")


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "name, write, damage",
    [
        ("a.nc", write_netcdf3, _truncate),
        ("a.nc", write_netcdf4, _truncate),
        ("a.nc", write_netcdf4, lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)),
        ("a.npy", write_npy, _truncate),
        ("a.npy", write_npy, lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage")),
        ("a.npz", write_npz, lambda p: _truncate(p, 0.7)),
        ("a.zarr", write_zarr, lambda p: (p / "zarr.json").write_text("{not json")),
        ("a.zarr", write_zarr, lambda p: next((p / "t2m").rglob("c/*/*/*")).write_bytes(b"xx")),
        ("a.nc", write_netcdf4, lambda p: p.write_text("time,t2m\n0,1\n")),
        ("a.nc", write_netcdf4, lambda p: p.write_bytes(b"")),
        ("a.nc", write_netcdf4, lambda p: p.write_bytes(b"CDF\x05" + b"\x00" * 32)),
    ],
    ids=["netcdf3-cut", "netcdf4-cut", "hdf5-garbage", "npy-cut", "npy-header", "npz-cut",
         "zarr-metadata", "zarr-chunk", "csv", "empty", "cdf5"],
)
def test_damaged_files(tmp_path, name, write, damage):
    path = tmp_path / name
    write(path)
    damage(path)
    variable = "u" if name.endswith(".npz") else "t2m"
    one_line_error([path], name, variable=variable, axes="T H W")


def test_not_real_numbers(tmp_path):
    np.save(tmp_path / "o.npy", np.empty((5, 8, 8), dtype=object), allow_pickle=True)
    np.save(tmp_path / "c.npy", np.zeros((5, 8, 8), dtype=np.complex64))
    np.savez(tmp_path / "s.npz", names=np.full((5, 8, 8), "ab"))
    np.save(tmp_path / "b.npy", np.zeros((5, 8, 8), dtype=bool))
    for name, dtype in [("o.npy", "object"), ("c.npy", "complex64"), ("s.npz", "<U2"),
                        ("b.npy", "bool")]:
        one_line_error([tmp_path / name], name, dtype, "expected real numbers",
                       variable="names" if name.endswith("npz") else None, axes="T H W")


def test_empty_and_too_small_axes(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 8, 8), dtype=np.float32))
    one_line_error([tmp_path / "e.npy"], "e.npy", "axis T has size 0", variable=None,
                   axes="T H W")
    np.save(tmp_path / "s.npy", np.zeros((5, 2, 8), dtype=np.float32))
    one_line_error([tmp_path / "s.npy"], "s.npy", "axis H has only 2 points", variable=None,
                   axes="T H W")


def test_axis_order_the_names_contradict(tmp_path):
    dataset, _, encoding = weather_dataset()
    dataset.transpose("lat", "lon", "time").to_netcdf(tmp_path / "t.nc", engine="h5netcdf",
                                                      encoding=encoding)
    one_line_error([tmp_path / "t.nc"], "t.nc", "'t2m'", "time dimension 'time' at axis 2",
                   "say 'H W T'", variable="t2m", axes="T H W")


def test_bad_options(tmp_path):
    write_netcdf4(tmp_path / "a.nc", variables=("t2m", "u10"))
    one_line_error([tmp_path / "a.nc"], "a.nc", "C axis", variable=["t2m", "u10"],
                   axes="T C H W")
    one_line_error([tmp_path / "a.nc"], "a.nc", "3 channel names", "2 channels",
                   variable=["t2m", "u10"], axes="T H W", channels=["a", "b", "c"])
    one_line_error([tmp_path / "a.nc"], "a.nc", "'H W'", variable="t2m", axes="H W")
    one_line_error([tmp_path / "a.nc"], "a.nc", "max_array_gib", variable="t2m",
                   axes="T H W", max_gib=1e-6)
    os.mkdir(tmp_path / "folder")
    one_line_error([tmp_path / "folder"], "folder", "not a Zarr store", variable="t2m",
                   axes="T H W")
    one_line_error([tmp_path / "none.nc"], "none.nc", "file not found", variable="t2m",
                   axes="T H W")
    write_netcdf4(tmp_path / "g.nc")
    one_line_error([tmp_path / "g.nc"], "g.nc", "'nogroup'", variable="/nogroup/t2m",
                   axes="T H W")


def test_npz_member_cut_short(tmp_path):
    # A well-formed archive whose member holds fewer bytes than its header promises.
    header = np.lib.format.header_data_from_array_1_0(np.zeros((5, 8, 8), np.float32))
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as zf, zf.open("u.npy", "w") as fp:
        np.lib.format.write_array_header_1_0(fp, header)
        fp.write(b"\x00" * 100)
    one_line_error([tmp_path / "z.npz"], "z.npz", "'u'", "truncated", variable="u",
                   axes="T H W")
