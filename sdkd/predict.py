"""Forecast with a trained run: the last frames of a file in, a NetCDF forecast out.

    from sdkd.predict import predict

    predict("results/students/climate/unet-s/dual/seed-0", "results/data/climate.h5",
            "data/latest.nc", "forecast.nc")

**Where the normalisation comes from.** A checkpoint holds the weights, the model spec
and ``meta`` (dataset, channels, T_in, T_out, grid), but not the statistics the model
was trained with: those are the train split's per-channel mean and std, stored once in
the dataset's canonical file (``results/data/D.h5``) beside its grid policy
(``grid_policy``, ``source_grid``, ``grid_before``), channel names and units. So
prediction takes that file too (``--data``) and checks it is the very file the run was
trained on: its :func:`~sdkd.data.dataset.fingerprint` must equal the one in the
checkpoint's run identity (``identity.inputs.data``), which every checkpoint with a run
identity already carries, so existing checkpoints work unchanged. The identity's data
spec gives the rest: the spatial and temporal strides of preprocessing and, for a
``file`` dataset, the variable, axis order and layout that are the defaults for the
input.

**Steps.** (1) Load the run (model in eval mode, :func:`sdkd.evaluate.run.load_model`)
and check it against the canonical file; (2) open the input lazily with the reader of
the data steps (:func:`sdkd.data.sources.open_source`: NetCDF-3/4, HDF5, Zarr, ``.npy``,
``.npz``, a glob), every size bounded by ``max_gib`` before it is read; (3) take the
``in_steps`` frames the model reads, every ``temporal_stride``-th, ending at the chosen
frame (the last by default), keep every ``spatial_stride``-th grid point and crop or pad
the grid as preprocessing did; (4) normalise with the train statistics, run the model
(no gradients) on the device (:func:`sdkd.evaluate.run.evaluation_device`: ``auto``
leases a free GPU like the pipeline's jobs), de-normalise and drop the padding; (5)
write one NetCDF-4 variable per channel, (time, y, x), in the units of the training
data, with the input's grid coordinates and time stamps continued at its step, and the
model's provenance in the global attributes, atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

import sdkd
from sdkd.atomic import atomic_path
from sdkd.checksum import sha256sum
from sdkd.data.calendar import regular_step
from sdkd.data.dataset import ForecastWindows, fingerprint
from sdkd.data.grid import GridFit
from sdkd.data.limits import DEFAULT_MAX_GIB, FLOAT32, check_free_space, first_line
from sdkd.data.preprocess import SPLITS
from sdkd.data.raw import RawSeries
from sdkd.data.sources import open_source
from sdkd.errors import SdkdError
from sdkd.evaluate.run import TrainedRun, evaluation_device, load_model, resolve_checkpoint
from sdkd.models.base import ForecastModel

log = logging.getLogger(__name__)

_POLICIES = ("exact", "crop", "pad")
# CF attributes of the grid coordinates the data readers name latitude and longitude.
_CF_GRID = {
    "latitude": {"standard_name": "latitude", "units": "degrees_north"},
    "longitude": {"standard_name": "longitude", "units": "degrees_east"},
}


@dataclass(frozen=True)
class TrainingData:
    """What the run's canonical file and data spec fix about any input.

    Attributes:
        windows: the train split, for its statistics (``normalize``/``denormalize``,
            per channel on dim −3) and shape.
        dataset: the dataset's name.
        channels: channel names, length C.
        units: physical units per channel ("" where unknown), length C.
        fit: how the grid after ``spatial_stride`` (``fit.source``) became the models'
            (``fit.shape``).
        spatial_stride: every k-th grid point kept by preprocessing.
        temporal_stride: every k-th frame kept: one model step is this many input frames.
        file_block: the ``file`` block of a ``file`` dataset, else empty.
    """

    windows: ForecastWindows
    dataset: str
    channels: list[str]
    units: list[str]
    fit: GridFit
    spatial_stride: int
    temporal_stride: int
    file_block: dict[str, Any]


def predict(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    variable: Sequence[str] | None = None,
    axes: str | None = None,
    trajectory: int = 0,
    frame: int | None = None,
    time: str | None = None,
    device: str = "auto",
    max_gib: float = DEFAULT_MAX_GIB,
) -> Path:
    """Forecast ``out_steps`` frames from the frames of ``input_path``; write ``out``.

    Args:
        run: a run folder (its ``best.pt``) or a checkpoint of a teacher or student.
        data: the canonical HDF5 the run was trained on (its statistics and grid).
        input_path: a file, Zarr store or glob in any format the data steps read.
        out: the NetCDF-4 file to write; replaced only when the forecast is complete.
        variable: the variable(s) to read, one per channel (default: the training file
            block's when neither this nor ``axes`` is given, else the file's only one).
        axes: the stored axis order (``T H W``, ``T C H W``, ``N T H W``, ``N T C H W``;
            default: the training file block's, else ``T H W`` for one channel and
            ``T C H W`` for more).
        trajectory: which trajectory of an input with an N axis.
        frame: index of the last input frame (negative: from the end; default −1).
        time: ISO time stamp of the last input frame instead of ``frame``.
        device: ``auto`` (a leased GPU when there is one, else the CPU), ``cpu`` or
            ``cuda[:N]``.
        max_gib: the largest input trajectory (GiB as float32) that may be read, and
            the largest model the checkpoint's spec may build.

    Returns:
        ``out``.

    Raises:
        SdkdError: one line naming the file at fault: an unreadable checkpoint, a data
            file the run was not trained on, a canonical dataset given as the input, an
            unknown variable, a grid, channel count or number of frames the model does
            not take, a time stamp not in the input, non-finite input or forecast, an
            output that cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise SdkdError(f"{out}: is a directory; expected the path of the forecast file")
    ckpt = resolve_checkpoint(run)
    training = training_data(data)
    windows = training.windows
    channels, height, width = windows.frame_shape
    expect = {"dataset": training.dataset, "channels": channels, "in_steps": windows.in_steps,
              "out_steps": windows.out_steps, "grid": [height, width]}
    trained = load_model(ckpt, expect, max_gib=max_gib)
    check_same_data(trained, data, ckpt)
    training = with_run_spec(training, trained, ckpt)

    with _open_input(input_path, training, variable, axes, max_gib) as raw:
        used = input_frames(raw, training, windows.in_steps, trajectory, frame, time)
        _warn_about_units(raw, training)
        frames = _model_grid(raw, raw.trajectory(trajectory)[used], training, ckpt, used)
        grid = grid_coordinates(raw, training)
        times = forecast_times(raw, used, training.temporal_stride, windows.out_steps)
        source = {"input": str(input_path), "input_variable": raw.variable,
                  "input_trajectory": trajectory, "input_frames": used,
                  "input_times": [str(t) for t in raw.times[used]] if raw.times is not None
                  else None}

    x = windows.normalize(torch.from_numpy(frames))[None]  # (1, T_in, C, H, W)
    with evaluation_device(device) as lease:
        prediction = forecast(trained.model, x, lease.device)
        used_device = str(lease.device)
    physical = without_padding(windows.denormalize(prediction[0]), training.fit)
    if not torch.isfinite(physical).all():
        raise SdkdError(f"checkpoint {ckpt}: the model predicts NaN or Inf from {input_path}; "
                        "expected a finite forecast")
    attrs = provenance(trained, ckpt, data, training, source, used_device)
    write_forecast(out, physical.numpy(), training, times, grid, attrs)
    log.info("%s: %d steps from frames %s of %s → %s", trained.meta["model"]["name"],
             windows.out_steps, used.tolist(), input_path, out)
    return out


# ---------------------------------------------------------------------------- the run


def training_data(data: str | os.PathLike[str]) -> TrainingData:
    """The statistics, channels, units and grid fit of a canonical file (strides 1 and no
    file block until :func:`with_run_spec` adds the run's)."""
    path = Path(data)
    windows = ForecastWindows(path, "train")  # checks the file, its statistics and mask
    channels = len(windows.channels)
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    name = attrs.get("dataset")
    if name is None:
        raise _not_canonical(path, "no attribute dataset")
    units = np.asarray(attrs.get("units", [""] * channels))
    if units.shape != (channels,):
        raise _not_canonical(path, f"attribute units is {units.tolist()!r}, expected "
                             f"{channels}, one per channel")
    return TrainingData(windows, _text(name), list(windows.channels), list(map(_text, units)),
                        _grid_fit(attrs, windows), 1, 1, {})


def check_same_data(trained: TrainedRun, data: str | os.PathLike[str], ckpt: Path) -> None:
    """Refuse a canonical file other than the one the run was trained on: other
    statistics would de-normalise the forecast wrongly without a sign of it."""
    if fingerprint(data) != trained.identity["inputs"]["data"]:
        raise SdkdError(
            f"{data}: not the dataset file checkpoint {ckpt} was trained on (its fingerprint "
            "differs from the run identity's); give the canonical file of that run, "
            "preprocessed from the same data with the same settings"
        )


def with_run_spec(training: TrainingData, trained: TrainedRun, ckpt: Path) -> TrainingData:
    """``training`` with the strides and file block of the run's data spec."""
    spec = trained.identity["spec"].get("data")
    spec = spec if isinstance(spec, Mapping) else {}
    strides = []
    for key in ("spatial_stride", "temporal_stride"):
        value = spec.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SdkdError(f"checkpoint {ckpt}: identity.spec.data.{key} is {value!r}, "
                            "expected a positive integer")
        strides.append(value)
    block = spec.get("file") if spec.get("source") == "file" else None
    return replace(training, spatial_stride=strides[0], temporal_stride=strides[1],
                   file_block=dict(block) if isinstance(block, Mapping) else {})


def _not_canonical(path: Path, what: str) -> SdkdError:
    return SdkdError(f"{path}: not a canonical sdkd dataset ({what}); run `sdkd preprocess` again")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _grid_fit(attrs: Mapping[str, Any], windows: ForecastWindows) -> GridFit:
    """The canonical file's grid fit; a file without one (written before grid policies)
    was not fitted."""
    shape = tuple(windows.frame_shape[1:])
    policy = _text(attrs.get("grid_policy", "exact"))
    source = np.asarray(attrs.get("source_grid", shape))
    before = np.asarray(attrs.get("grid_before", (0, 0)))
    sound = (
        policy in _POLICIES and source.shape == (2,) and before.shape == (2,)
        and source.dtype.kind in "iu" and before.dtype.kind in "iu"
        and (source > 0).all() and (before >= 0).all()
    )
    if sound:
        fit = GridFit(policy, tuple(map(int, source)), shape, tuple(map(int, before)))
        if fit.shape == fit.source:
            return fit
        # the smaller grid lies inside the larger one: the data inside the padding, the
        # crop inside the data
        inner, outer = (fit.source, fit.shape) if fit.padded else (fit.shape, fit.source)
        if policy != "exact" and all(
            b + n <= m for b, n, m in zip(fit.before, inner, outer, strict=True)
        ):
            return fit
    raise _not_canonical(windows.path, f"grid attributes grid_policy={policy!r}, source_grid="
                         f"{source.tolist()}, grid_before={before.tolist()} do not describe "
                         f"its {shape} grid")


# ---------------------------------------------------------------------------- the input


def _refuse_canonical(path: str | os.PathLike[str]) -> None:
    """A canonical dataset (``sdkd preprocess``'s normalised windows) given as the input
    would otherwise fail as a file of no variables: say what it is and what to give."""
    if not (Path(path).is_file() and h5py.is_hdf5(path)):
        return
    with h5py.File(path, "r") as f:
        canonical = set(SPLITS) <= set(f) and "raw_sha256" in f.attrs
    if canonical:
        raise SdkdError(
            f"{path}: is a canonical dataset (preprocessed, normalised windows), not an "
            "input; give the series to forecast from in its own units, e.g. the "
            "dataset's raw file under resources/ (--data takes the canonical one)"
        )


def _open_input(
    path: str | os.PathLike[str], training: TrainingData, variable: Sequence[str] | None,
    axes: str | None, max_gib: float,
) -> contextlib.AbstractContextManager[RawSeries]:
    """The input series, read by the data steps' reader of a ``file`` source.

    With neither ``variable`` nor ``axes``, a ``file`` dataset's own block says how to
    read it (the same kind of file as in training); otherwise the given variables (or the
    file's only one) in the given axis order (by default ``T H W`` for a model of one
    channel, ``T C H W`` for more).
    """
    _refuse_canonical(path)
    block = training.file_block if variable is None and axes is None else {}
    default_axes = "T H W" if len(training.channels) == 1 else "T C H W"
    names = block.get("variable") if variable is None else list(variable)
    spec = {
        "path": str(path),
        "layout": block.get("layout", "array"),
        "variable": names[0] if isinstance(names, list) and len(names) == 1 else names,
        "axes": axes or block.get("axes") or default_axes,
        "channels": None, "dt": None, "dx": None,
    }
    return open_source({"source": "file", "file": spec}, None, max_gib=max_gib)


def input_frames(
    raw: RawSeries, training: TrainingData, in_steps: int, trajectory: int,
    frame: int | None, time: str | None,
) -> np.ndarray:
    """Indices (in_steps,) into the input's time axis of the frames the model reads:
    every ``temporal_stride``-th, the last at ``frame`` or ``time`` (default the last).

    Checks first what the model takes: the trajectory, the channel count (and order, when
    the input names the training channels in another), the number of frames and, with
    time stamps, that the frames are one regular step apart (no gap between them).
    """
    n, t, c = raw.shape[:3]
    where = f"{raw.path} ({raw.variable})"
    if trajectory >= n:
        raise SdkdError(f"{where} holds {n} trajectories; --trajectory {trajectory} is not one")
    if c != len(training.channels):
        raise SdkdError(
            f"{where} has {c} channel(s) ({', '.join(raw.channels)}), but the model takes "
            f"{len(training.channels)}: {', '.join(training.channels)}; give one --variable "
            "per channel, or --axes with a C axis"
        )
    if raw.channels != training.channels and sorted(raw.channels) == sorted(training.channels):
        raise SdkdError(
            f"{where} has channels in the order {', '.join(raw.channels)}, but the model "
            f"takes {', '.join(training.channels)}; give --variable in that order"
        )
    last = _last_frame(raw, frame, time)
    stride = training.temporal_stride
    used = last - stride * np.arange(in_steps - 1, -1, -1, dtype=np.int64)
    if used[0] < 0:
        apart = f", {stride} frames apart (temporal_stride)," if stride > 1 else ""
        raise SdkdError(
            f"{where} has {t} frames; the model reads in_steps = {in_steps} frames{apart} "
            f"ending at frame {last}, which takes {last - used[0] + 1} frames up to it: too "
            "few input frames (give a longer input, or a later --frame or --time)"
        )
    if raw.times is not None and t >= 2 and in_steps >= 2:
        step = regular_step(raw.times) * stride
        gaps = np.flatnonzero(np.diff(raw.times[used]) != step)
        if len(gaps):
            k = int(used[gaps[0]])
            raise SdkdError(
                f"{where}: the frames the model reads cross a gap in the time stamps "
                f"({raw.times[k]} → {raw.times[k + stride]}, the step is {step}); choose "
                "another --time or --frame"
            )
    return used


def _warn_about_units(raw: RawSeries, training: TrainingData) -> None:
    """Log the channels whose units the input names otherwise than the training data: a
    forecast from °C with a model of K is wrong, but spellings differ (m/s, m s**-1), so
    it is no error."""
    for channel, given, trained in zip(training.channels, raw.units or [], training.units,
                                       strict=False):
        if given and trained and given != trained:
            log.warning("%s: channel %s is in %r, the model was trained on %r; convert the "
                        "input if these differ", raw.path, channel, given, trained)


def _last_frame(raw: RawSeries, frame: int | None, time: str | None) -> int:
    """The index of the last input frame: ``frame``, the frame stamped ``time``, or −1."""
    t = raw.shape[1]
    if time is not None:
        try:
            wanted = np.datetime64(time.strip().replace(" ", "T")).astype("datetime64[s]")
        except ValueError:
            raise SdkdError(f"--time {time!r}: not an ISO time (e.g. 2020-01-31T18:00)") from None
        if raw.times is None:
            raise SdkdError(f"{raw.path}: has no time stamps, so --time {time!r} names no "
                            "frame; give --frame INDEX")
        found = np.flatnonzero(raw.times == wanted)
        if not len(found):
            raise SdkdError(f"{raw.path}: no frame is stamped {wanted} (its {t} frames run "
                            f"from {raw.times[0]} to {raw.times[-1]})")
        return int(found[0])
    index = -1 if frame is None else frame
    if not -t <= index < t:
        raise SdkdError(f"{raw.path}: --frame {index} is not one of its {t} frames")
    return index % t


def _model_grid(
    raw: RawSeries, frames: np.ndarray, training: TrainingData, ckpt: Path, used: np.ndarray,
) -> np.ndarray:
    """Input frames (T_in, C, H₀, W₀) → (T_in, C, H, W) on the models' grid: strided,
    then cropped or padded as preprocessing did. Refuses another grid or a missing value."""
    stride = training.spatial_stride
    kept = frames[..., ::stride, ::stride]
    if tuple(kept.shape[-2:]) != training.fit.source:
        (h, w), (h0, w0) = kept.shape[-2:], training.fit.source
        strided = f" ({h}×{w} with spatial_stride {stride})" if stride > 1 else ""
        raise SdkdError(
            f"{raw.path} ({raw.variable}) has a {raw.shape[3]}×{raw.shape[4]} grid{strided}, "
            f"but checkpoint {ckpt} takes the {h0}×{w0} grid of dataset "
            f"{training.dataset!r} ({training.fit.describe()}); give that region at that "
            "resolution"
        )
    bad = ~np.isfinite(kept).reshape(len(kept), -1).all(axis=1)
    if bad.any():
        raise SdkdError(f"{raw.path}: frame {int(used[np.argmax(bad)])} of {raw.variable} "
                        "holds NaN or Inf (missing values); the model needs finite input")
    return np.ascontiguousarray(training.fit.apply(kept), dtype=np.float32)


def grid_coordinates(raw: RawSeries, training: TrainingData) -> list[tuple[str, np.ndarray | None]]:
    """(dimension name, coordinate values or None) of the forecast's y and x axes: the
    input's coordinates of the points kept (both axes' or none), else ``y`` and ``x``."""
    if len(raw.coords) != 2:
        return [("y", None), ("x", None)]
    fit, stride = training.fit, training.spatial_stride
    coords = []
    for axis, (name, values) in enumerate(raw.coords.items()):
        kept = np.asarray(values)[::stride]
        if fit.policy == "crop":
            kept = kept[fit.before[axis]: fit.before[axis] + fit.shape[axis]]
        coords.append((name, kept))
    return coords


def forecast_times(raw: RawSeries, used: np.ndarray, stride: int, steps: int
                   ) -> np.ndarray | None:
    """Time stamps (steps,) ``datetime64[s]`` of the forecast frames: the last input
    frame's, continued at the input's regular step × ``stride``; None without stamps."""
    if raw.times is None or raw.shape[1] < 2:
        return None
    step = regular_step(raw.times) * stride
    return raw.times[used[-1]] + step * np.arange(1, steps + 1)


# ---------------------------------------------------------------------------- the model


def forecast(model: ForecastModel, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's forecast (B, T_out, C, H, W), float32 on the CPU, of normalised
    ``x`` (B, T_in, C, H, W), run on ``device`` without gradients."""
    model.to(device)
    with torch.inference_mode():
        return model(x.to(device)).prediction.float().cpu()


def without_padding(frames: torch.Tensor, fit: GridFit) -> torch.Tensor:
    """(..., H, W) on the models' grid → (..., H₀, W₀) of the data: a padded edge is not
    data, so it is dropped (a cropped grid stays cropped)."""
    if not fit.padded:
        return frames
    (top, left), (h, w) = fit.before, fit.source
    return frames[..., top: top + h, left: left + w]


# ---------------------------------------------------------------------------- the file


def provenance(
    trained: TrainedRun, ckpt: Path, data: str | os.PathLike[str], training: TrainingData,
    source: Mapping[str, Any], device: str,
) -> dict[str, Any]:
    """The forecast file's global attributes: the model, checkpoint, training data and
    input it was made from (NetCDF attributes: strings, numbers, arrays of numbers)."""
    meta = trained.meta
    attrs: dict[str, Any] = {
        "title": f"sdkd forecast of {training.dataset}",
        "model": meta["model"]["name"],
        "model_spec": json.dumps(meta["model"], sort_keys=True),
        "role": meta["role"],
        "checkpoint": str(Path(ckpt).resolve()),
        "checkpoint_sha256": sha256sum(ckpt),
        "weights_sha256": trained.weights_sha256,
        "run_id": trained.run_id,
        "dataset": training.dataset,
        "training_data": str(Path(data).resolve()),
        "training_data_fingerprint": trained.identity["inputs"]["data"],
        "in_steps": int(meta["in_steps"]),
        "out_steps": int(meta["out_steps"]),
        "temporal_stride": training.temporal_stride,
        "spatial_stride": training.spatial_stride,
        "grid_policy": training.fit.policy,
        "device": device,
        "created_with": f"sdkd {sdkd.__version__}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if meta["role"] == "student":
        attrs["bands"] = str(meta.get("bands"))
    for key, value in source.items():
        if value is not None:
            attrs[key] = ", ".join(value) if isinstance(value, list) else value
    return attrs


def write_forecast(
    out: Path, values: np.ndarray, training: TrainingData, times: np.ndarray | None,
    grid: list[tuple[str, np.ndarray | None]], attrs: Mapping[str, Any],
) -> None:
    """Write ``values`` (T_out, C, H, W), physical units, as one NetCDF-4 variable per
    channel with dims (time, y, x), atomically: a failure leaves no file, and an earlier
    file at ``out`` as it was."""
    import xarray as xr  # slow to import; only the writer needs it

    steps = len(values)
    leads = np.arange(1, steps + 1)
    lead_attrs = {"long_name": "lead time in model steps after the last input frame"}
    coords: dict[str, Any] = {"lead_step": ("time", leads, lead_attrs)}
    if times is None:
        coords["time"] = ("time", leads, lead_attrs)
    else:
        coords["time"] = ("time", times.astype("datetime64[ns]"), {"standard_name": "time"})
    dims = ("time", *(name for name, _ in grid))
    for name, kept in grid:
        if kept is not None:
            coords[name] = (name, kept, _CF_GRID.get(name, {}))
    variables = {}
    for c, (channel, unit) in enumerate(zip(training.channels, training.units, strict=True)):
        name = _variable_name(channel, c, taken=[*coords, *variables])
        var_attrs = {"long_name": f"forecast of {channel}", "channel": channel}
        if unit:
            var_attrs["units"] = unit
        variables[name] = (dims, values[:, c], var_attrs)
    dataset = xr.Dataset(variables, coords=coords, attrs=dict(attrs))
    with atomic_path(out) as tmp:
        check_free_space(tmp.parent, values.size * FLOAT32, out)
        try:
            dataset.to_netcdf(tmp, engine="h5netcdf")
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise SdkdError(f"{out}: cannot write the forecast ({first_line(exc)}); "
                            "nothing was written there") from None


def _variable_name(channel: str, index: int, taken: Sequence[str]) -> str:
    """A NetCDF variable name for a channel: its name, without the group separator, and
    apart from the coordinates and the other channels."""
    name = channel.replace("/", "_") or f"c{index}"
    return f"{name}_{index}" if name in taken else name
