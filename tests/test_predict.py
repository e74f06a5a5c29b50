"""sdkd predict: the forecast file equals the model's forward pass de-normalised, on the
input's coordinates, and every input the model does not take ends with one line."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from griddedfiles import UNITS, weather_dataset
from helpers import assert_clean_failure, experiment, file_dataset, leftovers

from sdkd.checksum import sha256sum
from sdkd.config import validate
from sdkd.data.preprocess import preprocess
from sdkd.errors import SdkdError
from sdkd.models import build_from_spec
from sdkd.predict import predict
from sdkd.train.checkpoint import load_checkpoint, sub_state_dict
from sdkd.train.jobs import distill_student, train_teacher

xr = pytest.importorskip("xarray")

VARIABLES = ("t2m", "u10")
# The input grid: every 2nd point kept (6 × 14), padded to the models' 8 × 16 with one
# line of edge values on each side; two model steps of 2 frames each, 6-hourly frames.
H0, W0, STRIDE, STEP_HOURS = 12, 28, 2, 6
PAD = 1


def _netcdf(path, t, start="2020-01-01T00:00", seed=0):
    """A NetCDF-4 file of t2m and u10 (time, lat, lon); returns its values (T, C, H, W)
    and its dataset (times and coordinates)."""
    dataset, values, encoding = weather_dataset(t=t, h=H0, w=W0, variables=VARIABLES,
                                                start=start, step_hours=STEP_HOURS, seed=seed)
    dataset.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return values[0], dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A teacher and a student (one epoch each) of a padded, strided two-channel dataset."""
    tmp = tmp_path_factory.mktemp("predict")
    _netcdf(tmp / "train.nc", t=40)
    block = file_dataset(tmp / "train.nc", variable=list(VARIABLES), axes="T H W",
                         split={"train": 0.6, "val": 0.2, "test": 0.2}, spatial_stride=STRIDE,
                         temporal_stride=2, grid={"policy": "pad"})
    config = validate(experiment({"wx": block}))
    data = preprocess(None, tmp / "wx.h5", config["datasets"]["wx"], name="wx")
    teacher, student = tmp / "teacher", tmp / "student"
    train_teacher(config, "wx", data, teacher, device="cpu")
    distill_student(config, "wx", data, None, "unet-s", "none", 0, student, device="cpu")
    values, dataset = _netcdf(tmp / "latest.nc", t=7, start="2021-03-01T00:00", seed=5)
    return {"data": data, "teacher": teacher, "student": student, "tmp": tmp,
            "input": tmp / "latest.nc", "values": values, "dataset": dataset}


def forward_pass(run, data, frames):
    """The forecast computed without sdkd.predict: strided, edge-padded and normalised
    frames (T_in, C, H0, W0) through the checkpoint's model, de-normalised, unpadded."""
    ckpt = load_checkpoint(run / "best.pt")
    meta = ckpt["meta"]
    model = build_from_spec(meta["model"])
    model.load_state_dict(ckpt["model"] if meta["role"] == "teacher"
                          else sub_state_dict(ckpt["model"], "student"))
    model.eval()
    with h5py.File(data) as f:
        mean = np.asarray(f.attrs["mean"])[:, None, None]
        std = np.asarray(f.attrs["std"])[:, None, None]
    x = np.pad(frames[:, :, ::STRIDE, ::STRIDE].astype(np.float64),
               [(0, 0), (0, 0), (PAD, PAD), (PAD, PAD)], mode="edge")
    with torch.no_grad():
        p = model(torch.tensor((x - mean) / std, dtype=torch.float32)[None]).prediction[0]
    return (p.double().numpy() * std + mean)[..., PAD:-PAD, PAD:-PAD]


def _read(path):
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        return dataset.load()


def _assert_forecast(forecast, expected):
    for c, name in enumerate(VARIABLES):
        np.testing.assert_allclose(forecast[name].values, expected[:, c], rtol=1e-5, atol=1e-4)
        assert forecast[name].attrs["units"] == UNITS[name]


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_netcdf_forecast_is_the_forward_pass_on_the_inputs_coordinates(runs, role, sdkd_cli):
    out = runs["tmp"] / f"{role}.nc"
    status, err = sdkd_cli("predict", "--run", runs[role], "--data", runs["data"],
                           "--input", runs["input"], "--out", out, "--device", "cpu")
    assert status == 0, err
    forecast = _read(out)
    used = [4, 6]  # the last frame and the one a model step (2 frames) before it
    _assert_forecast(forecast, forward_pass(runs[role], runs["data"], runs["values"][used]))
    assert list(forecast["t2m"].dims) == ["time", "latitude", "longitude"]
    np.testing.assert_array_equal(forecast["latitude"], runs["dataset"]["lat"].values[::STRIDE])
    np.testing.assert_array_equal(forecast["longitude"], runs["dataset"]["lon"].values[::STRIDE])
    last = np.datetime64("2021-03-01T00:00") + np.timedelta64(6 * STEP_HOURS, "h")
    expected_times = last + np.arange(1, 3) * np.timedelta64(2 * STEP_HOURS, "h")
    np.testing.assert_array_equal(forecast["time"].values, expected_times.astype("M8[ns]"))
    np.testing.assert_array_equal(forecast["lead_step"], [1, 2])

    attrs = forecast.attrs
    ckpt = runs[role] / "best.pt"
    assert attrs["model"] == ("teacher-tiny" if role == "teacher" else "unet-s")
    assert attrs["role"] == role and attrs["dataset"] == "wx"
    assert attrs["checkpoint"] == str(ckpt.resolve())
    assert attrs["checkpoint_sha256"] == sha256sum(ckpt)
    assert attrs["run_id"] == load_checkpoint(ckpt)["run_id"]
    assert attrs["input"] == str(runs["input"])
    assert list(attrs["input_frames"]) == used
    assert attrs["input_times"] == "2021-03-02T00:00:00, 2021-03-02T12:00:00"
    assert attrs["created_with"].startswith("sdkd ") and attrs["device"] == "cpu"
    assert leftovers(out.parent).count(out.name) == 1 and not list(out.parent.glob(".*.part"))


def test_npy_input_without_time_stamps_gets_lead_steps(runs, tmp_path):
    frames = runs["values"][:5] + 1.0
    np.save(tmp_path / "frames.npy", frames)
    out = predict(runs["teacher"], runs["data"], tmp_path / "frames.npy", tmp_path / "f.nc",
                  axes="T C H W", frame=-2, device="cpu")
    forecast = _read(out)
    _assert_forecast(forecast, forward_pass(runs["teacher"], runs["data"], frames[[1, 3]]))
    assert list(forecast["t2m"].dims) == ["time", "y", "x"]
    np.testing.assert_array_equal(forecast["time"], [1, 2])
    assert list(forecast.attrs["input_frames"]) == [1, 3] and "input_times" not in forecast.attrs


def test_a_trajectory_of_an_input_with_an_n_axis(runs, tmp_path, sdkd_cli):
    frames = np.stack([runs["values"][:5], runs["values"][2:] * 0.5])  # N T C H W
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "f.nc"
    status, err = sdkd_cli("predict", "--run", runs["teacher"], "--data", runs["data"],
                           "--input", tmp_path / "frames.npy", "--axes", "N T C H W",
                           "--trajectory", "1", "--frame", "-2", "--out", out,
                           "--device", "cpu")
    assert status == 0, err
    forecast = _read(out)
    _assert_forecast(forecast, forward_pass(runs["teacher"], runs["data"], frames[1, [1, 3]]))
    assert forecast.attrs["input_trajectory"] == 1


def test_time_names_the_last_input_frame(runs, tmp_path):
    out = predict(runs["teacher"], runs["data"], runs["input"], tmp_path / "f.nc",
                  time="2021-03-01T18:00", device="cpu")
    forecast = _read(out)
    _assert_forecast(forecast, forward_pass(runs["teacher"], runs["data"],
                                            runs["values"][[1, 3]]))
    assert str(forecast["time"].values[0])[:16] == "2021-03-02T06:00"


def test_other_units_are_named_in_a_warning(runs, tmp_path, caplog):
    dataset = runs["dataset"].copy()
    dataset["t2m"].attrs["units"] = "degC"
    dataset.to_netcdf(tmp_path / "celsius.nc", engine="h5netcdf")
    predict(runs["teacher"], runs["data"], tmp_path / "celsius.nc", tmp_path / "f.nc",
            device="cpu")
    assert "channel t2m is in 'degC', the model was trained on 'K'" in caplog.text


def test_a_forecast_holds_a_gpu_lease_under_auto(runs, tmp_path, monkeypatch):
    import sdkd.predict as predict_module
    from sdkd.train.lease import gpu_lease

    monkeypatch.setenv("SDKD_FAKE_GPUS", "0")
    monkeypatch.setenv("SDKD_GPU_LOCK_DIR", str(tmp_path / "locks"))
    real, held = predict_module.forecast, []

    def forecast_and_probe(*args):
        with pytest.raises(SdkdError, match="all GPUs busy"), gpu_lease(timeout=0):
            pass
        held.append(True)
        return real(*args)

    monkeypatch.setattr(predict_module, "forecast", forecast_and_probe)
    predict(runs["teacher"], runs["data"], runs["input"], tmp_path / "f.nc")
    assert held == [True]


@pytest.fixture
def bad_inputs(runs, tmp_path):
    """Inputs the model does not take, and a data file it was not trained on."""
    values = runs["values"]
    np.save(tmp_path / "grid.npy", np.zeros((5, 2, 16, 16), "f4"))
    np.save(tmp_path / "one_channel.npy", values[:, 0])
    np.save(tmp_path / "short.npy", values[:2])
    other = tmp_path / "other.h5"
    other.write_bytes(runs["data"].read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["mean"] = np.asarray(f.attrs["mean"]) + 1.0
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint" * 10)
    # frame 5 (30 h) dropped: the last frame (36 h) and the one a model step before it
    # (12 h) are 18 h apart
    runs["dataset"].drop_isel(time=5).to_netcdf(tmp_path / "gap.nc", engine="h5netcdf")
    return tmp_path


@pytest.mark.parametrize("case, args, fragments", [
    ("grid", ["--input", "{tmp}/grid.npy", "--axes", "T C H W"],
     ["grid.npy", "16×16 grid", "8×8 with spatial_stride 2", "6×14"]),
    ("channels", ["--input", "{tmp}/one_channel.npy", "--axes", "T H W"],
     ["one_channel.npy", "1 channel(s)", "takes 2: t2m, u10"]),
    ("frames", ["--input", "{tmp}/short.npy", "--axes", "T C H W"],
     ["short.npy", "has 2 frames", "in_steps = 2", "too few input frames"]),
    ("frames before --frame", ["--input", "{input}", "--frame", "1"],
     ["latest.nc", "ending at frame 1", "too few input frames"]),
    ("variable", ["--input", "{input}", "--variable", "nope"],
     ["latest.nc", "no variable 'nope'"]),
    ("channel order", ["--input", "{input}", "--variable", "u10", "--variable", "t2m",
                       "--axes", "T H W"],
     ["latest.nc", "order u10, t2m", "t2m, u10"]),
    ("trajectory", ["--input", "{input}", "--trajectory", "1"],
     ["latest.nc", "holds 1 trajectories", "--trajectory 1"]),
    ("gap", ["--input", "{tmp}/gap.nc"],
     ["gap.nc", "cross a gap", "2021-03-01T18:00:00 → 2021-03-02T12:00:00"]),
    ("time", ["--input", "{input}", "--time", "2030-01-01"],
     ["latest.nc", "no frame is stamped 2030-01-01T00:00:00"]),
    ("time without stamps", ["--input", "{tmp}/short.npy", "--axes", "T C H W", "--time", "2021"],
     ["short.npy", "no time stamps"]),
    ("canonical input", ["--input", "{data}"],
     ["wx.h5", "is a canonical dataset", "not an input", "raw file"]),
    ("checkpoint", ["--input", "{input}", "--run", "{tmp}/garbage.pt"],
     ["garbage.pt", "corrupt or unreadable checkpoint"]),
    ("data", ["--input", "{input}", "--data", "{tmp}/other.h5"],
     ["other.h5", "not the dataset file", "trained on"]),
])
def test_what_the_model_does_not_take(runs, bad_inputs, sdkd_cli, case, args, fragments):
    given = [a.format(tmp=bad_inputs, input=runs["input"], data=runs["data"]) for a in args]
    defaults = {"--run": runs["teacher"], "--data": runs["data"]}
    for key, value in defaults.items():
        if key not in given:
            given += [key, value]
    out_dir = bad_inputs / "out"
    status, err = sdkd_cli("predict", *given, "--out", out_dir / "f.nc", "--device", "cpu")
    assert_clean_failure(status, err, *fragments, out_dir=out_dir)


def test_a_failed_write_leaves_the_earlier_forecast(runs, tmp_path, sdkd_cli, monkeypatch):
    out = tmp_path / "forecast.nc"
    args = ("predict", "--run", runs["teacher"], "--data", runs["data"], "--input",
            runs["input"], "--out", out, "--device", "cpu")
    assert sdkd_cli(*args)[0] == 0
    before = out.read_bytes()

    def disk_full(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", disk_full)
    status, err = sdkd_cli(*args)
    assert_clean_failure(status, err, "forecast.nc", "cannot write the forecast",
                         "No space left on device")
    assert out.read_bytes() == before and leftovers(tmp_path) == ["forecast.nc"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forecast_matches_the_cpu(runs, tmp_path):
    cpu = _read(predict(runs["student"], runs["data"], runs["input"], tmp_path / "cpu.nc",
                        device="cpu"))
    gpu = _read(predict(runs["student"], runs["data"], runs["input"], tmp_path / "gpu.nc",
                        device="cuda"))
    assert gpu.attrs["device"].startswith("cuda")
    for name in VARIABLES:  # convolutions may run in TF32 on the GPU
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-2, atol=1e-2)
