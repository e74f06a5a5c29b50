"""Hostile and faulty data files: each ends in one clean line and leaves nothing behind.

The tables are by category. A case builds its input under ``tmp_path`` and names the
fragments that the one ``sdkd: error:`` line must hold; the command must exit 2 with no
traceback and leave no output (the raw link of a ``file`` source aside).
``tests/test_bad_input.py`` has the first cases of the kind (missing file or variable,
wrong rank, NaN, checksum); these are the ones that used to crash, hang or mislead.
"""

from __future__ import annotations

import collections
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_clean_failure, experiment, file_dataset, leftovers, write_config
from rawfiles import write_pdebench

from sdkd.config import validate
from sdkd.data import limits
from sdkd.data.dataset import ForecastWindows, fingerprint
from sdkd.data.preprocess import preprocess
from sdkd.errors import SdkdError


def _frames(shape, dtype="f4"):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def _write(path, data=None, shape=None, labels=()):
    """``path`` with one variable ``u``: ``data``, or a never-written ``shape`` (no disk),
    its dimensions labelled with ``labels``."""
    with h5py.File(path, "w") as f:
        if data is None:
            u = f.create_dataset("u", shape=shape, dtype="f4", chunks=True)
        else:
            u = f.create_dataset("u", data=data)
        for dim, label in zip(u.dims, labels, strict=False):
            dim.label = label
    return path


def _run_file_source(sdkd_cli, tmp_path, dataset):
    """``sdkd acquire`` (it checks the file) then ``preprocess``; (status, stderr)."""
    config = write_config(tmp_path, {"toy": dataset})
    out = tmp_path / "out"
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "toy")
    if status:
        return status, err
    return sdkd_cli("preprocess", "--config", config, "--dataset", "toy",
                    "--out", out / "data" / "toy.h5")


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _overwrite(path, start, stop):
    data = bytearray(path.read_bytes())
    data[start:stop] = b"\xff" * (stop - start)
    path.write_bytes(bytes(data))
    return path


def _fifo(path):
    os.mkfifo(path)
    return path


def _loop(path):
    os.symlink(path.name, path)
    return path


def _broken_link(path):
    os.symlink(path.with_name("gone.h5"), path)
    return path


def _nan_in_validation_part(path):
    data = _frames((30, 8, 8))
    data[20, 3, 3] = np.nan  # frame 20 lies in the validation part (frames 18-23)
    return _write(path, data)


def _beyond_float32(path):
    data = _frames((6, 6, 8, 8), "f8")
    data[2, 4, 0, 0] = 1e300
    return _write(path, data)


def _group(path):
    with h5py.File(path, "w") as f:
        f.create_group("u").create_dataset("v", data=_frames((6, 6, 8, 8)))
    return path


def _good(path):
    return _write(path, _frames((6, 6, 8, 8)))


SERIES = {"axes": "T H W", "split": {"train": 0.6, "val": 0.2, "test": 0.2}}

# (build the file at the given path, dataset keys, fragments of the message)
CONTENTS = {
    "compound dtype": (
        lambda p: _write(p, np.zeros((6, 6, 8, 8), [("re", "f4"), ("im", "f4")])), {},
        ["data.h5", "'u'", "dtype", "expected real numbers"]),
    "complex dtype": (lambda p: _write(p, _frames((6, 6, 8, 8), "c8")), {},
                      ["'u'", "complex64", "expected real numbers"]),
    "strings": (lambda p: _write(p, np.full((6, 6, 8, 8), b"ab")), {},
                ["'u'", "|S2", "expected real numbers"]),
    "empty dataspace": (lambda p: _write(p, h5py.Empty("f4")), {}, ["'u'", "holds no data"]),
    "zero frames": (lambda p: _write(p, shape=(6, 0, 8, 8)), {},
                    ["'u'", "(6, 0, 8, 8)", "holds no frames"]),
    "zero trajectories": (lambda p: _write(p, shape=(0, 6, 8, 8)), {},
                          ["'u'", "holds no trajectories"]),
    "zero grid": (lambda p: _write(p, shape=(6, 6, 0, 8)), {},
                  ["'u'", "axis H has only 0 points"]),
    "variable is a group": (_group, {}, ["no variable 'u'", "is a group"]),
    "NaN in a later part of a series": (_nan_in_validation_part, SERIES,
                                        ["NaN or Inf", "first at frame 20 "]),
    "float64 beyond float32": (_beyond_float32, {}, ["trajectory 2", "beyond float32's range",
                                                     "frame 4"]),
    "cut in the superblock": (lambda p: _cut(_good(p), 0.004), {},
                              ["data.h5", "corrupt or truncated", "truncated file"]),
    "cut in the metadata": (lambda p: _cut(_good(p), 0.1), {}, ["data.h5", "truncated file"]),
    "cut in the data": (lambda p: _cut(_good(p), 0.6), {}, ["data.h5", "truncated file"]),
    "local heap overwritten": (lambda p: _overwrite(_good(p), 600, 800), {},
                               ["data.h5", "corrupt or truncated"]),
    "symbol table overwritten": (lambda p: _overwrite(_good(p), 1000, 1400), {},
                                 ["data.h5", "corrupt or truncated"]),
}

PATHS = {
    "symlink loop": (_loop, {}, ["data.h5", "Too many levels of symbolic links"]),
    "broken link": (_broken_link, {}, ["data.h5", "file not found", "broken link", "gone.h5"]),
    "directory": (lambda p: (p.mkdir(), p)[1], {}, ["data.h5", "a directory",
                                                    "not a Zarr store"]),
    "named pipe": (_fifo, {}, ["data.h5", "not a regular file"]),
    "through a file": (lambda p: _good(p) / "u.h5", {}, ["u.h5", "Not a directory"]),
}

AXES_REFUSED = {
    # stored H W T N, declared N T H W: the grid lands on T and N (20 × 40)
    "grid on N and T": (lambda p: _write(p, shape=(16, 16, 10, 40)), {},
                        ["axes 'N T H W'", "(16, 16, 10, 40)", "10 × 40 grid",
                         "axes 0 and 1 (16 × 16)", "'H W N T' or 'H W T N'"]),
    # a series stored H W T, declared T H W
    "time last": (lambda p: _write(p, shape=(24, 24, 6)), {"axes": "T H W"},
                  ["axes 'T H W'", "24 × 6 grid", "looks like 'H W T'"]),
    # a squarish declared grid smaller than N and T, which are exactly square
    "grid smaller than N and T": (lambda p: _write(p, shape=(32, 32, 24, 20)), {},
                                  ["24 × 20 grid", "axes 0 and 1 (32 × 32)"]),
    "dimension labels": (lambda p: _write(p, shape=(8, 8, 30), labels=("y", "x", "time")),
                         {"axes": "T H W"},
                         ["time dimension 'time' at axis 2", "say 'H W T'"]),
    "trajectory label": (
        lambda p: _write(p, shape=(6, 5, 8, 8), labels=("time", "sample", "y", "x")), {},
        ["time dimension 'time' at axis 0", "puts N there", "say 'T N H W'"]),
}

# Shapes the order check must accept as declared (the file is only linked, not read).
AXES_ACCEPTED = {
    "tiny test array": ((6, 6, 8, 8), "N T H W", ()),
    "small grid, few trajectories": ((6, 7, 5, 8), "N T H W", ()),
    "grid smaller than N and T": ((9, 12, 8, 8), "N T H W", ()),
    "many long trajectories": ((1000, 101, 32, 32), "N T H W", ()),
    "long rollouts": ((500, 400, 64, 64), "N T H W", ()),
    "hourly year, 2:1 grid": ((8760, 32, 64), "T H W", ()),
    "2:1 grid as long as the series": ((128, 64, 128), "T H W", ()),
    "channels": ((40, 3, 16, 16), "T C H W", ()),
    "names overrule sizes": ((16, 16, 10, 40), "N T H W", ("sample", "time", "y", "x")),
}


def _case_ids(table):
    return pytest.mark.parametrize("build, keys, fragments", table.values(), ids=list(table))


@_case_ids(CONTENTS)
def test_bad_contents(sdkd_cli, tmp_path, build, keys, fragments):
    path = build(tmp_path / "data.h5")
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(path, **keys))
    assert_clean_failure(status, err, *fragments, out_dir=tmp_path / "out")


@_case_ids(PATHS)
def test_bad_paths(sdkd_cli, tmp_path, build, keys, fragments):
    path = build(tmp_path / "data.h5")
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(path, **keys))
    assert_clean_failure(status, err, *fragments, out_dir=tmp_path / "out")


@_case_ids(AXES_REFUSED)
def test_implausible_axis_order(sdkd_cli, tmp_path, build, keys, fragments):
    path = build(tmp_path / "data.h5")
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(path, **keys))
    assert_clean_failure(status, err, "data.h5", "'u'", *fragments, out_dir=tmp_path / "out")


@pytest.mark.parametrize("shape, axes, labels", AXES_ACCEPTED.values(), ids=list(AXES_ACCEPTED))
def test_plausible_axis_order(sdkd_cli, tmp_path, caplog, shape, axes, labels):
    path = _write(tmp_path / "data.h5", shape=shape, labels=labels)
    config = write_config(tmp_path, {"toy": file_dataset(path, axes=axes)})
    with caplog.at_level("INFO", logger="sdkd.data.raw"):
        status, err = sdkd_cli("acquire", "--config", config, "--dataset", "toy")
    assert status == 0, err
    basis = "dimension names" if labels else "the declared axes"
    sizes = " ".join(f"{a}={n}" for a, n in zip(axes.split(), shape, strict=True))
    assert f"read as {sizes}, from {basis}" in caplog.text


def _pdebench_with_seed(path, seed_shape):
    """A PDEBench file whose second seed holds a never-written array of ``seed_shape``."""
    write_pdebench(path, n_seeds=6, t=6, n=8, channels=2)
    with h5py.File(path, "r+") as f:
        del f["0001/data"]
        f.create_dataset("0001/data", shape=seed_shape, dtype="f4", chunks=True)
    return path


def _pdebench_time_backwards(path):
    write_pdebench(path, n_seeds=6, t=6, n=8, channels=2)
    with h5py.File(path, "r+") as f:
        f["0000/grid/t"][...] = np.linspace(5.0, 0.0, 6)
    return path


def _simulation(path, frames_attrs):
    with h5py.File(path, "w") as f:
        f["frames"] = _frames((6, 6, 1, 16, 16))
        f["frames"].attrs.update(frames_attrs)
    return path


PDEBENCH = {"source": "download", "download": {"name": "pdebench_diff_react"}}
SIMULATE = {"source": "simulate",
            "simulate": {"equation": "diffusion_reaction", "n_trajectories": 6,
                         "resolution": 16}}

# Other raw layouts (preprocess --raw given directly): (build, block, fragments)
LAYOUTS = {
    "a seed 192 GiB large": (
        lambda p: _pdebench_with_seed(p, (12, 65536, 65536, 1)), PDEBENCH,
        ["0001/data has shape (12, 65536, 65536, 1)", "expected (6, 8, 8, 2)"]),
    "time running backwards": (_pdebench_time_backwards, PDEBENCH,
                               ["the step of 0000/grid/t", "expected a positive number"]),
    "negative dt": (lambda p: _simulation(p, {"dt": -0.5}), SIMULATE,
                    ["attribute frames.dt is -0.5", "positive number"]),
    "dt not a number": (lambda p: _simulation(p, {"dt": "soon"}), SIMULATE,
                        ["attribute frames.dt", "positive number"]),
    "channel names of another count": (lambda p: _simulation(p, {"channels": ["u", "v"]}),
                                       SIMULATE, ["attribute frames.channels",
                                                  "list of 1 channel name"]),
}


@_case_ids(LAYOUTS)
def test_bad_raw_layouts(sdkd_cli, tmp_path, build, keys, fragments):
    raw = build(tmp_path / "raw.h5")
    block = {**keys, "split": {"train": 4, "val": 1, "test": 1}, "in_steps": 2, "out_steps": 2}
    config = write_config(tmp_path, {"toy": block})
    out = tmp_path / "out" / "toy.h5"
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "toy", "--raw", raw,
                           "--out", out)
    assert_clean_failure(status, err, "raw.h5", *fragments, out_dir=out.parent)


# --- sizes: bounded before anything is allocated --------------------------------------


FRACTIONS = {"split": {"train": 0.8, "val": 0.1, "test": 0.1}}

# (shape claimed by a never-written array, dataset keys, fragments)
HUGE = {
    "a trajectory of 192 GiB": (
        (6, 12, 65536, 65536), {},
        ["variable 'u' of shape (6, 12, 65536, 65536): one trajectory", "192 GiB"]),
    "a billion trajectories": (  # split into a range, never into a list per trajectory
        (10**9, 4, 8, 8), FRACTIONS,
        ["the train split", "(800000000, 4, 1, 8, 8)", "763 GiB", "lower max_trajectories"]),
}


@pytest.mark.parametrize("shape, keys, fragments", HUGE.values(), ids=list(HUGE))
def test_huge_shapes_are_refused_before_reading(sdkd_cli, tmp_path, shape, keys, fragments):
    path = _write(tmp_path / "data.h5", shape=shape)
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(path, **keys))
    assert_clean_failure(status, err, "data.h5", *fragments, "limits.max_array_gib = 16",
                         out_dir=tmp_path / "out")


def _block(path, **keys):
    return validate(experiment({"toy": file_dataset(path, **keys)}))["datasets"]["toy"]


@pytest.mark.parametrize("max_gib, fragments", [
    (1e-5, ["variable 'u' of shape (6, 6, 32, 32): one trajectory", "(6, 1, 32, 32)"]),
    (5e-5, ["the train split", "(4, 6, 1, 32, 32)", "lower max_trajectories"]),
], ids=["trajectory", "split"])
def test_max_array_gib_bounds_preprocess(tmp_path, max_gib, fragments):
    path = _write(tmp_path / "data.h5", _frames((6, 6, 32, 32)))
    with pytest.raises(SdkdError) as error:
        preprocess(path, tmp_path / "out" / "toy.h5", _block(path), name="toy", max_gib=max_gib)
    for fragment in [*fragments, f"limits.max_array_gib = {max_gib:g}"]:
        assert fragment in str(error.value)
    assert leftovers(tmp_path / "out") == []


# --- outputs: disks fill, outputs collide with inputs ---------------------------------


def _disk_with_free(nbytes):
    usage = collections.namedtuple("usage", "total used free")
    return lambda path: usage(2**40, 2**40 - nbytes, nbytes)


def test_too_little_free_space(sdkd_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(limits.shutil, "disk_usage", _disk_with_free(100_000))
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(_good(tmp_path / "d.h5")))
    assert_clean_failure(status, err, "toy.h5", "needs up to 1.", "0.0954 MiB are free",
                         out_dir=tmp_path / "out")


def test_too_little_free_space_to_simulate(sdkd_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(limits.shutil, "disk_usage", _disk_with_free(100_000))
    block = {**SIMULATE, "split": {"train": 4, "val": 1, "test": 1}, "in_steps": 2,
             "out_steps": 2}
    config = write_config(tmp_path, {"dr": block})
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "dr",
                           "--out", tmp_path / "out" / "simulation.h5")
    assert_clean_failure(status, err, "simulation.h5", "needs up to", out_dir=tmp_path / "out")


def test_write_error_is_one_line(sdkd_cli, tmp_path, monkeypatch):
    def disk_full(self, key, value):
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: ...)")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", disk_full)
    status, err = _run_file_source(sdkd_cli, tmp_path, file_dataset(_good(tmp_path / "d.h5")))
    assert_clean_failure(status, err, "toy.h5", "No space left on device",
                         out_dir=tmp_path / "out")


_NO_PRECHECK = (
    "import collections, shutil, sys\n"
    "usage = collections.namedtuple('usage', 'total used free')\n"
    "shutil.disk_usage = lambda path: usage(2**40, 0, 2**40)\n"
    "from sdkd.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_disk_fills_while_writing(tmp_path):
    """A real full file system (a 256 KiB tmpfs in a user namespace), with the free-space
    check switched off so that HDF5 itself hits ENOSPC: it used to segfault (exit 139)."""
    if not shutil.which("unshare") or subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True, check=False
    ).returncode:
        pytest.skip("no unprivileged user and mount namespaces to mount a small tmpfs")
    raw = _write(tmp_path / "data.h5", _frames((6, 6, 64, 64)))
    config = write_config(tmp_path, {"toy": file_dataset(raw)})
    full = tmp_path / "full"
    full.mkdir()
    mount_then_run = ('mount -t tmpfs -o size=256k tmpfs "$1" && shift && "$@"; '
                      's=$?; ls -A "$0"; exit $s')
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", mount_then_run, full, full, sys.executable, "-c",
         _NO_PRECHECK, "preprocess", "--config", config, "--dataset", "toy", "--raw", raw,
         "--out", full / "toy.h5"],
        capture_output=True, text=True, check=False,
    )
    assert_clean_failure(result.returncode, result.stderr, "toy.h5", "No space left on device")
    assert result.stdout.strip() == ""  # the tmpfs held nothing afterwards


def test_permission_denied(tmp_path):
    """As root, permissions apply only inside a user namespace (no CAP_DAC_OVERRIDE)."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-U", "true"], capture_output=True, check=False
        ).returncode:
            pytest.skip("running as root without user namespaces: permissions do not apply")
        prefix = ["unshare", "-U"]
    path = _good(tmp_path / "data.h5")
    path.chmod(0)
    config = write_config(tmp_path, {"toy": file_dataset(path)})
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "sdkd", "acquire", "--config", config, "--dataset",
         "toy"],
        capture_output=True, text=True, check=False,
    )
    assert_clean_failure(result.returncode, result.stderr, "data.h5",
                         "cannot read it (Permission denied)")
    assert leftovers(tmp_path / "out") == []  # not even the link


def test_output_is_a_directory(sdkd_cli, tmp_path):
    raw = _good(tmp_path / "data.h5")
    config = write_config(tmp_path, {"toy": file_dataset(raw)})
    (tmp_path / "out" / "toy.h5").mkdir(parents=True)
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "toy", "--raw", raw,
                           "--out", tmp_path / "out" / "toy.h5")
    assert_clean_failure(status, err, "toy.h5", "is a directory", out_dir=tmp_path / "out")


def test_output_onto_its_own_input(sdkd_cli, tmp_path):
    """Neither step replaces the user's file with its output (or a link to itself)."""
    raw = _good(tmp_path / "data.h5")
    before = raw.read_bytes()
    config = write_config(tmp_path, {"toy": file_dataset(raw)})
    status, err = sdkd_cli("acquire", "--config", config, "--dataset", "toy", "--out", raw)
    assert_clean_failure(status, err, "data.h5", "acquire writes nothing")
    status, err = sdkd_cli("preprocess", "--config", config, "--dataset", "toy", "--raw", raw,
                           "--out", raw)
    assert_clean_failure(status, err, "data.h5", "is the raw file itself")
    assert not raw.is_symlink() and raw.read_bytes() == before
    assert leftovers(tmp_path) == ["config.yaml", "data.h5"]


# --- the canonical file: nothing ForecastWindows reads is trusted unchecked -----------


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("canonical")
    raw = _write(folder / "raw.h5", _frames((6, 7, 8, 8)))
    return preprocess(raw, folder / "toy.h5", _block(raw), name="toy")


def _set_attr(name, value):
    def damage(f):
        f.attrs[name] = value
    return damage


def _replace_frames(data):
    def damage(f):
        del f["train/frames"]
        f["train/frames"] = data
    return damage


def _frames_group(f):
    del f["train/frames"]
    f.create_group("train/frames")


CANONICAL = {
    "window_stride 0": (_set_attr("window_stride", 0), ["window_stride is 0", "positive integer"]),
    "negative in_steps": (_set_attr("in_steps", -2), ["in_steps is -2", "positive integer"]),
    "window_stride a string": (_set_attr("window_stride", "2"), ["window_stride is '2'"]),
    "mean of two channels": (_set_attr("mean", [0.0, 1.0]), ["mean", "expected 1 numbers"]),
    "std zero": (_set_attr("std", [0.0]), ["std positive"]),
    "std NaN": (_set_attr("std", [np.nan]), ["must be finite"]),
    "channels of two": (_set_attr("channels", ["u", "v"]), ["channels", "1 channel names"]),
    "frames of rank 4": (_replace_frames(_frames((4, 7, 8, 8))), ["(4, 7, 8, 8)",
                                                                 "(N, T, C, H, W)"]),
    "frames of strings": (_replace_frames(np.full((4, 7, 1, 8, 8), b"x")), ["|S1"]),
    "frames a group": (_frames_group, ["missing /train/frames"]),
}


@pytest.mark.parametrize("damage, fragments", CANONICAL.values(), ids=list(CANONICAL))
def test_bad_canonical_file(canonical, tmp_path, damage, fragments):
    path = tmp_path / "toy.h5"
    shutil.copy(canonical, path)
    with h5py.File(path, "r+") as f:
        damage(f)
    fingerprint(path)  # names the content without tripping over it
    with pytest.raises(SdkdError) as error:
        ForecastWindows(path, "train")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_split_too_large_to_hold_in_memory(canonical):
    lazy = ForecastWindows(canonical, "train", max_gib=1e-6)  # reads windows: no bound
    assert len(lazy) > 0
    with pytest.raises(SdkdError, match=r"read whole \(in_memory\).*limits.max_array_gib = 1e-06"
                       r".*in_memory: false"):
        ForecastWindows(canonical, "train", in_memory=True, max_gib=1e-6)


@pytest.mark.parametrize("in_memory", [False, True], ids=["lazy", "in_memory"])
def test_canonical_file_cut_short(canonical, tmp_path, in_memory):
    path = _cut(Path(shutil.copy(canonical, tmp_path / "toy.h5")), 0.5)
    with pytest.raises(SdkdError, match=r"toy\.h5: cannot") as error:
        ForecastWindows(path, "train", in_memory=in_memory)[0]
    assert "\n" not in str(error.value)
