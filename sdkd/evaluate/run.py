"""Evaluate one trained run (teacher or student) on the test split; write its JSON file.

    from sdkd.evaluate.run import evaluate_run

    evaluate_run(config, "navier_stokes", "results/data/navier_stokes.h5",
                 "results/students/navier_stokes/unet-s/dual/seed-0", "eval.json")

The file's layout is the contract of ``docs/evaluation-format.md``, owned by
:mod:`sdkd.evaluate.format` (which also reads it back).
The test split is streamed in batches of ``config["evaluate"]["batch_size"]`` windows:
only running sums are kept (see :mod:`sdkd.evaluate.metrics`), so memory does not grow
with the test set.

Steps: (1) read the dataset header, load the checkpoint, check its ``meta`` against the
dataset (name, channels, T_in, T_out, grid) and take its run identity (``run_id``,
``identity``) and the sha256 of its weights; (2) compute ``data_range`` = max − min of
the test split in physical units, overall and per channel, over the valid pixels (the
dataset's ``/mask``, if its grid was padded), one trajectory at a time; (3) predict
every test window, de-normalise prediction and truth with the train statistics and
accumulate every metric (overall, per lead time and per channel), the band errors and
the spectra, counting valid pixels only (:mod:`sdkd.evaluate.metrics`); (4) measure the
model's cost (parameters, FLOPs, latency at batch 1 and throughput at the evaluation
batch size: medians of up to :data:`TIMING_REPEATS` timed runs, fewer once they took
:data:`TIMING_BUDGET_S`, after :data:`TIMING_WARMUP` warm-up run, on the evaluation
device; a batch size that the evaluation loop has just run needs no warm-up run) and
read the training cost from the run's ``history.csv`` (nulls when it is absent); (5)
write the JSON atomically (:func:`sdkd.evaluate.format.write_evaluation`: non-finite
numbers, the PSNR of a perfect forecast or the SSIM on grids under 11 px, become
``null``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import statistics
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import sdkd
from sdkd.checksum import sha256sum
from sdkd.data.dataset import ForecastWindows
from sdkd.distill.bands import SpectralBands
from sdkd.errors import SdkdError
from sdkd.evaluate.format import (
    DATA_RANGE_DEFINITION,
    SCHEMA_VERSION,
    identity_problem,
    write_evaluation,
)
from sdkd.evaluate.metrics import ForecastMetrics, zero_padding
from sdkd.evaluate.spectra import SpectrumAccumulator
from sdkd.jsonfile import read_bounded
from sdkd.models import build_from_spec, count_parameters, flops_per_sample
from sdkd.models.base import ForecastModel
from sdkd.train.checkpoint import load_checkpoint, sub_state_dict, weights_sha256
from sdkd.train.lease import Lease, gpu_lease

log = logging.getLogger(__name__)

SPLIT = "test"
TIMING_WARMUP = 1
TIMING_REPEATS = 5
TIMING_BUDGET_S = 0.5
"""Per measurement (latency, throughput): timed runs stop once they have taken this long in
all; at least one. So the two cost about 1 s beyond their warm-ups, unless one forward pass
alone is longer (a big model on a CPU, e.g. teacher-small at batch 16 on 2 cores: ~2 s),
which is then timed once. (It was 10 s, which on a CPU made the timing most of an
evaluation's time.)"""

INFERENCE_PRECISION = "fp32"
"""The evaluation predicts, and times, in float32 with no autocast (``benchmarks/models.py``
times bf16 autocast on a GPU, its own figure under its own name)."""

# ---------------------------------------------------------------------------- helpers


def resolve_device(choice: str | torch.device = "auto") -> torch.device:
    """``auto`` → the current CUDA device if there is one, else the CPU; else as given.

    :func:`evaluate_run` leases a GPU for ``auto`` instead (:func:`evaluation_device`)."""
    if str(choice) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError):
        raise SdkdError(
            f"device: unknown device {choice!r}; expected auto, cpu or cuda[:N]"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SdkdError(f"device: {choice!r} asked for, but no CUDA device is available")
    return device


def device_name(device: torch.device) -> str:
    """Human description of a device, as in the training history: ``cpu (4 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def resolve_checkpoint(run_dir_or_checkpoint: str | os.PathLike[str]) -> Path:
    """``best.pt`` of a run folder, or the checkpoint file itself."""
    path = Path(run_dir_or_checkpoint)
    return path / "best.pt" if path.is_dir() else path


def dataset_header(path: str | os.PathLike[str], dataset: str) -> dict[str, Any]:
    """Attributes of the canonical file that the evaluation records; checks the dataset name."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    stored = attrs.get("dataset")
    if stored is not None and str(stored) != dataset:
        raise SdkdError(f"{path}: holds dataset {str(stored)!r}, expected {dataset!r}")
    dt = attrs.get("dt")
    return {"dt": float(dt) if dt is not None else None}


def data_ranges(path: str | os.PathLike[str], split: str = SPLIT,
                mask: torch.Tensor | None = None) -> tuple[float, list[float]]:
    """max − min of ``/{split}/frames`` (physical units) over all frames and channels, and
    over each channel's frames: (overall, [per channel]).

    ``mask`` (H, W), True on valid pixels, leaves the padded pixels out (their values do
    not matter, not even NaN). Reads one trajectory at a time (the file is chunked per
    trajectory); raises SdkdError naming the file for non-finite values or a constant
    split. A constant channel of a split that is not has range 0.
    """
    path = Path(path)
    valid = None if mask is None else mask.numpy().astype(bool)
    lo, hi = None, None
    with h5py.File(path, "r") as f:
        frames = f[f"{split}/frames"]
        for i in range(frames.shape[0]):
            block = np.asarray(frames[i])  # (T, C, H, W)
            if valid is not None:
                block = block[..., valid]  # (T, C, valid pixels)
            block = block.reshape(*block.shape[:2], -1)
            if not np.isfinite(block).all():
                raise SdkdError(
                    f"{path}: /{split}/frames trajectory {i} holds NaN or Inf values; "
                    "expected finite data (re-run sdkd preprocess on a clean file)"
                )
            low, high = block.min(axis=(0, 2)), block.max(axis=(0, 2))  # (C,)
            lo = low if lo is None else np.minimum(lo, low)
            hi = high if hi is None else np.maximum(hi, high)
    overall = float(hi.max()) - float(lo.min())
    if not overall > 0:
        raise SdkdError(
            f"{path}: /{split}/frames is constant (max = min = {float(hi.max()):g}); SSIM "
            "and PSNR need a data range > 0"
        )
    return overall, [float(h) - float(l) for h, l in zip(hi, lo, strict=True)]


@dataclass(frozen=True)
class TrainedRun:
    """What an evaluation takes from a checkpoint: the model (eval mode), its ``meta``
    and training ``config``, the run identity (``run_id``, ``identity``) and the sha256
    of the model's weights (:func:`sdkd.train.checkpoint.weights_sha256`)."""

    model: ForecastModel
    meta: dict[str, Any]
    config: dict[str, Any]
    run_id: str
    identity: dict[str, Any]
    weights_sha256: str


def load_model(path: Path, expect: Mapping[str, Any], *, max_gib: float | None = None
               ) -> TrainedRun:
    """The model and run identity of a teacher or student checkpoint.

    Raises:
        SdkdError: naming ``path``, for a checkpoint of another run shape (``expect``),
            without a sound run identity, or whose weights do not fit its model.
    """
    ckpt = load_checkpoint(path, expect=expect, what="checkpoint")
    meta = ckpt.get("meta") or {}
    role = meta.get("role")
    if role not in ("teacher", "student"):
        raise SdkdError(
            f"checkpoint {path}: meta role is {role!r}, expected 'teacher' or 'student' "
            "(a best.pt or last.pt of sdkd train-teacher or sdkd distill)"
        )
    if "model" not in meta:
        raise SdkdError(f"checkpoint {path}: meta has no model spec")
    if "identity" not in ckpt or "run_id" not in ckpt:
        raise SdkdError(
            f"checkpoint {path}: has no run identity, so it was written by an older sdkd; "
            "train it again"
        )
    problem = identity_problem(ckpt["identity"], ckpt["run_id"])
    if problem is not None:
        raise SdkdError(f"checkpoint {path}: {problem}; train it again")
    model = build_from_spec(meta["model"], max_gib=max_gib)
    state = ckpt["model"] if role == "teacher" else sub_state_dict(ckpt["model"], "student")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise SdkdError(
            f"checkpoint {path}: weights do not fit model {meta['model'].get('name')!r} "
            f"({detail})"
        ) from None
    model.eval().requires_grad_(False)
    return TrainedRun(model, meta, dict(ckpt.get("config") or {}), ckpt["run_id"],
                      dict(ckpt["identity"]), weights_sha256(model.state_dict()))


# The history's peak-memory columns → what each measures (sdkd.train.engine.peak_memory).
# ``peak_memory_mb`` is the one column of older histories: CUDA allocated on a GPU, the
# process's peak RSS on the CPU, so its meaning is read from the row's device.
PEAK_MEMORY_MEASURES = {"peak_cuda_allocated_mb": "cuda_allocated", "peak_rss_mb": "rss"}


def training_cost(run_dir: Path) -> dict[str, Any]:
    """Training device, epochs, seconds, seconds per epoch and peak memory from
    ``run_dir/history.csv``; every value null when the file is absent or unreadable.

    Peak memory (MiB, the largest epoch's) comes named for what it measures:
    ``peak_cuda_allocated_mb`` (tensor memory on the GPU) and ``peak_rss_mb`` (the
    process's resident set on the host), each null when no epoch measured it.
    ``peak_memory_mb`` stays for the readers of earlier files: the GPU figure when there
    is one, else the host's, with ``peak_memory_measure`` (``cuda_allocated``/``rss``)
    saying which.
    """
    cost: dict[str, Any] = {"device": None, "epochs": None, "seconds": None,
                            "seconds_per_epoch": None, "peak_memory_mb": None,
                            "peak_memory_measure": None, "peak_cuda_allocated_mb": None,
                            "peak_rss_mb": None}
    path = run_dir / "history.csv"
    if not path.is_file():
        log.info("no %s: training cost left empty", path)
        return cost
    try:
        text = read_bounded(path, what="training history").decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        seconds = [float(r["seconds"]) for r in rows]
        peaks = _peaks(rows)
    except (SdkdError, OSError, KeyError, ValueError, TypeError, csv.Error) as exc:
        log.warning("%s: unreadable training history (%s); training cost left empty", path, exc)
        return cost
    if not rows:
        return cost
    cost |= {
        "device": rows[-1].get("device") or None,
        "epochs": len(rows),
        "seconds": sum(seconds),
        "seconds_per_epoch": sum(seconds) / len(rows),
        "peak_cuda_allocated_mb": peaks["cuda_allocated"],
        "peak_rss_mb": peaks["rss"],
    }
    for measure in ("cuda_allocated", "rss"):
        if peaks[measure] is not None:
            cost |= {"peak_memory_mb": peaks[measure], "peak_memory_measure": measure}
            break
    return cost


def _peaks(rows: list[dict[str, str]]) -> dict[str, float | None]:
    """The largest value of each peak-memory measure over the history's rows (MiB)."""
    values: dict[str, list[float]] = {"cuda_allocated": [], "rss": []}
    for row in rows:
        for column, measure in PEAK_MEMORY_MEASURES.items():
            if row.get(column):
                values[measure].append(float(row[column]))
        if row.get("peak_memory_mb"):  # an older history: the device says which it was
            measure = "cuda_allocated" if (row.get("device") or "").startswith("cuda") else "rss"
            values[measure].append(float(row["peak_memory_mb"]))
    return {measure: max(v) if v else None for measure, v in values.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(
    model: ForecastModel, x: torch.Tensor, device: torch.device, warmup: int = TIMING_WARMUP
) -> tuple[float, int]:
    """(median seconds of a forward pass on x (B, T_in, C, H, W), number of timed runs)
    after ``warmup`` untimed runs; timed runs stop at :data:`TIMING_REPEATS` or once they
    took :data:`TIMING_BUDGET_S` in all (at least one)."""
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        while len(times) < TIMING_REPEATS and (not times or sum(times) < TIMING_BUDGET_S):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def inference_cost(
    model: ForecastModel, frame_shape: tuple[int, int, int], batch: int, device: torch.device,
    *, warm_batches: Collection[int] = (),
) -> dict[str, Any]:
    """Latency (ms, batch 1) and throughput (samples/s at ``batch``) on ``device``, in
    :data:`INFERENCE_PRECISION` (float32).

    ``frame_shape`` is (C, H, W). ``warm_batches``: batch sizes that the model has just
    run on ``device`` at this frame shape (the evaluation loop's batches); their warm-up
    run is skipped, as that run already paid for the lazy set-up (allocator, kernels) a
    warm-up is there to exclude, and it is a whole forward pass of the largest batch.
    """
    gen = torch.Generator().manual_seed(0)
    shape = (model.in_steps, *frame_shape)
    one = torch.randn(1, *shape, generator=gen).to(device)
    many = torch.randn(batch, *shape, generator=gen).to(device)
    warmup = {b: 0 if b in warm_batches else TIMING_WARMUP for b in (1, batch)}
    latency, n_latency = _median_seconds(model, one, device, warmup[1])
    per_batch, n_batch = _median_seconds(model, many, device, warmup[batch])
    return {
        "device": device_name(device),
        "precision": INFERENCE_PRECISION,
        "batch": batch,
        "latency_ms": latency * 1e3,
        "samples_per_s": batch / per_batch,
        "repeats": min(n_latency, n_batch),
    }


def _field(t: torch.Tensor) -> list[list[float]]:
    """An (H, W) frame as nested lists, 7 significant digits (float32 precision)."""
    return [[float(f"{v:.7g}") for v in row] for row in t.detach().cpu().tolist()]


# ---------------------------------------------------------------------------- evaluation


def evaluate_run(
    config: Mapping[str, Any],
    dataset: str,
    data_path: str | os.PathLike[str],
    run_dir_or_checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Evaluate a run's ``best.pt`` (or the given ``.pt``) on the test split of ``data_path``.

    Writes the evaluation file (docs/evaluation-format.md) atomically to ``out_path`` and
    returns its content. Raises SdkdError for a missing or unreadable checkpoint, one
    trained on another dataset or shape, a dataset file that is not canonical, an empty
    test split, non-finite data or non-finite predictions.
    """
    started = time.perf_counter()
    with evaluation_device(device) as lease:
        return _evaluate(config, dataset, Path(data_path), run_dir_or_checkpoint,
                         Path(out_path), lease.device, started)


def evaluation_device(choice: str | torch.device = "auto"
                      ) -> contextlib.AbstractContextManager[Lease]:
    """Where an evaluation runs, held for its length.

    ``auto`` leases a free GPU like a training job (:func:`sdkd.train.lease.gpu_lease`),
    so evaluations under ``--resources gpu=N`` never share a GPU with a training job or
    with each other, and their latency and throughput are not measured under
    contention; without a GPU it is the CPU. An explicit ``cpu`` or ``cuda[:N]`` is
    used as given, without a lease.
    """
    if str(choice) == "auto":
        return gpu_lease()
    return contextlib.nullcontext(Lease(resolve_device(choice)))


def _evaluate(
    config: Mapping[str, Any], dataset: str, data_path: Path,
    run_dir_or_checkpoint: str | os.PathLike[str], out_path: Path, device: torch.device,
    started: float,
) -> dict[str, Any]:
    """:func:`evaluate_run` on a device already chosen (and leased)."""
    settings = config["evaluate"]
    batch_size = int(settings["batch_size"])
    ckpt_path = resolve_checkpoint(run_dir_or_checkpoint)

    if not data_path.is_file():
        raise SdkdError(f"{data_path}: dataset file not found; run sdkd preprocess")
    test = ForecastWindows(data_path, SPLIT)
    if len(test) == 0:
        raise SdkdError(f"{data_path}: the {SPLIT} split has no windows to evaluate")
    header = dataset_header(data_path, dataset)
    if len(set(test.channels)) != len(test.channels):
        raise SdkdError(f"{data_path}: channel names {test.channels} repeat; expected one "
                        "name per channel (the evaluation keys its per-channel metrics by "
                        "name); run sdkd preprocess with distinct names")
    channels, height, width = test.frame_shape
    expect = {"dataset": dataset, "channels": channels, "in_steps": test.in_steps,
              "out_steps": test.out_steps, "grid": [height, width]}
    trained = load_model(ckpt_path, expect, max_gib=config["limits"]["max_array_gib"])
    model, meta = trained.model, trained.meta
    name = meta["model"]["name"]
    family, size = name.rsplit("-", 1)

    try:
        SpectralBands(settings["band_cutoffs"]).masks(height, width)
    except SdkdError as exc:
        raise SdkdError(f"evaluate.band_cutoffs: {exc}") from None
    mask = test.mask  # None, or (H, W) True on the pixels that count
    value_range, channel_ranges = data_ranges(data_path, mask=mask)
    metrics_acc = ForecastMetrics(test.out_steps, value_range, settings["band_cutoffs"],
                                  channel_ranges=channel_ranges, mask=mask)
    spectra = {key: SpectrumAccumulator(mask=mask) for key in ("prediction", "truth", "error")}
    valid = mask.to(device) if mask is not None else None
    log.info("evaluating %s (%s %s) on %d %s windows of %s, device %s", ckpt_path, meta["role"],
             name, len(test), SPLIT, dataset, device)

    model.to(device)
    loader = DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=0,
                        pin_memory=device.type == "cuda")
    lead_times = sorted({1, test.out_steps})
    sample: dict[str, Any] | None = None
    seen = 0
    batch_sizes: set[int] = set()  # batch sizes the model ran at: warm for the timing
    with torch.inference_mode():
        for x, y in tqdm(loader, desc=f"evaluate {name}", unit="batch", leave=False,
                         disable=None):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            prediction = model(x).prediction.float()
            # padded pixels never count, so whatever the model predicts there may stand
            if not torch.isfinite(prediction if valid is None else prediction[..., valid]).all():
                raise SdkdError(
                    f"checkpoint {ckpt_path}: the model predicts NaN or Inf on {SPLIT} windows "
                    f"{seen}–{seen + x.shape[0] - 1}; expected finite forecasts"
                )
            prediction = test.denormalize(prediction)
            truth = test.denormalize(y)
            metrics_acc.update(prediction, truth)
            spectra["prediction"].update(prediction)
            spectra["truth"].update(truth)
            spectra["error"].update(prediction.double() - truth.double())
            if sample is None:
                sample = {
                    "window": 0, "channel": test.channels[0], "lead_times": lead_times,
                    **{key: [_field(zero_padding(frames[0, t - 1, 0], mask))
                             for t in lead_times]
                       for key, frames in (("truth", truth), ("prediction", prediction))},
                }
            seen += x.shape[0]
            batch_sizes.add(int(x.shape[0]))

    scores = metrics_acc.compute()
    k, _ = spectra["truth"].compute()
    spectrum = {"k": k, **{key: acc.compute()[1] for key, acc in spectra.items()}}

    efficiency = {
        "parameters": count_parameters(model),
        "flops_per_sample": flops_per_sample(model, height, width),
        "inference": inference_cost(model, test.frame_shape, batch_size, device,
                                    warm_batches=batch_sizes),
        "training": training_cost(ckpt_path.parent),
    }
    seed = meta.get("seed")
    if seed is None:
        seed = trained.config.get("seed")
    result = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "role": meta["role"],
        "model": name,
        "family": family,
        "size": size,
        "bands": meta.get("bands") if meta["role"] == "student" else None,
        "setting": meta.get("setting") if meta["role"] == "student" else None,
        "seed": seed,
        "run_id": trained.run_id,
        "identity": trained.identity,
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": sha256sum(ckpt_path),
        "weights_sha256": trained.weights_sha256,
        "split": SPLIT,
        "n_windows": len(test),
        "in_steps": test.in_steps,
        "out_steps": test.out_steps,
        "channels": list(test.channels),
        "grid": [height, width],
        "dt": header["dt"],
        "mask": mask.to(torch.uint8).tolist() if mask is not None else None,
        "data_range": value_range,
        "data_range_definition": DATA_RANGE_DEFINITION,
        "metrics": scores["metrics"],
        "channel_metrics": dict(zip(test.channels, scores["per_channel"], strict=True)),
        "per_lead_time": scores["per_lead_time"],
        "band_errors": scores["band_errors"],
        "spectrum": spectrum,
        "sample": sample,
        "efficiency": efficiency,
        "evaluation_seconds": None,
        "created_with": f"sdkd {sdkd.__version__}",
    }
    result["evaluation_seconds"] = time.perf_counter() - started
    result = write_evaluation(out_path, result)
    log.info("%s: mse %.4g, ssim %s, %.1fs → %s", name, result["metrics"]["mse"],
             result["metrics"]["ssim"], result["evaluation_seconds"], out_path)
    return result
