"""A tiny but complete fake ``results/`` tree for the report tests.

    config = tiny_config()
    make_fake_results(tmp_path / "results", config, missing=["diffusion_reaction/*"])

writes, for every run of ``expected_runs(config)``:

- ``eval/{dataset}/teacher/{teacher}.json`` and
  ``eval/{dataset}/{student}/{bands}/seed-{seed}.json``: evaluation files as in
  docs/evaluation-format.md on an 8 × 8 grid with the dataset's ``out_steps`` lead
  times, one channel ``u`` (or the names of ``channels[dataset]``, each with its own
  metrics), no mask (or, for the datasets in ``padded``, the last row and column of the
  grid padding), the config's ``evaluate.band_cutoffs``, and run identities that all fit
  the config (:func:`_fake_identity`);
- ``teachers/{dataset}/{teacher}/history.csv`` and
  ``students/{dataset}/{student}/{bands}/seed-{seed}/history.csv``: 5 epochs in the
  columns of the training engine (teachers: ``mse`` terms; students: ``gt`` and ``kd``).

:func:`write_data_file` makes a dataset's canonical HDF5 file (for the provenance).

The numbers are plausible and ordered: the teacher is best, every distilled setting
beats the plain student (``none``), ``dual`` beats the other settings, the ``m`` size
beats ``s``, and seeds differ by a few per cent. ``seed`` makes the noise reproducible.

``missing`` lists runs to leave out (neither evaluation file nor history): each item is
a glob over the evaluation file's path relative to ``eval/`` (``"ns/unet-s/dual/*"``,
``"dr/*"``) or a mapping of run fields that must all match (``{"bands": "dual",
"seed": 1}``).
"""

from __future__ import annotations

import copy
import csv
import fnmatch
import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from helpers import experiment, file_dataset

from sdkd.config import validate
from sdkd.data.preprocess import preprocess
from sdkd.evaluate.format import SCHEMA_VERSION, spectrum_shells
from sdkd.plan import expected_runs, run_id, run_identity, run_spec

GRID = 8
EPOCHS = 5
DATA_RANGE = 4.0
TRUTH_RMS = 1.0
# The mask of a padded dataset: a 7 × 7 grid padded to 8 × 8 (last row and column).
PADDED_MASK = np.pad(np.ones((GRID - 1, GRID - 1), dtype=bool), ((0, 1), (0, 1)))

# Multiplier on the plain student's MSE per distillation method (lower is better).
SETTING_FACTOR = {"none": 1.0, "low": 0.7, "high": 0.8, "dual": 0.45, "multi": 0.5,
                  "output": 0.6, "fitnet": 0.75}
# Multiplier on the plain student's MSE per student size.
SIZE_FACTOR = {"s": 1.0, "m": 0.8, "l": 0.65}
# Parameters per student size (the teacher has TEACHER_PARAMETERS).
SIZE_PARAMETERS = {"s": 60_000, "m": 220_000, "l": 800_000}
TEACHER_PARAMETERS = 1_500_000
# A spectral cutoff (cycles per domain) of each model's prediction: more lost detail,
# lower cutoff.
SETTING_SHARPNESS = {"none": 2.0, "low": 2.3, "high": 3.2, "dual": 3.6, "multi": 3.5,
                     "output": 2.8, "fitnet": 2.5}


def tiny_config() -> dict[str, Any]:
    """A validated config: 2 file datasets (paths that need not exist), 2 students,
    settings none/low/high/dual/output/fitnet, seeds [0, 1] for none and dual, 4 lead
    times."""
    datasets = {
        "navier_stokes": file_dataset(Path("/nonexistent/ns.h5"), out_steps=4),
        "diffusion_reaction": file_dataset(Path("/nonexistent/dr.h5"), out_steps=4),
    }
    config = experiment(
        datasets,
        models={"teacher": "teacher-tiny", "students": ["unet-s", "unet-m"]},
        distill={
            "seeds": [0],
            "settings": {
                "none": {"seeds": [0, 1]},
                "low": {"cutoffs": [4], "weights": [1.0]},
                "high": {"cutoffs": [4], "weights": [1.0]},
                "dual": {"cutoffs": [4], "weights": [1.0, 1.0], "seeds": [0, 1]},
                "output": {},
                "fitnet": {},
            },
        },
    )
    return validate(config, source="tiny_config")


def subset_config(config: Mapping[str, Any] | None = None, *, students: list[str] | None = None,
                  settings: list[str] | None = None) -> dict[str, Any]:
    """``config`` (default :func:`tiny_config`) where diffusion_reaction runs only
    ``students`` (default ``[unet-m]``) with ``settings`` (default ``[none, dual]``), as
    in the default experiment; navier_stokes keeps the whole grid."""
    config = copy.deepcopy(dict(config) if config is not None else tiny_config())
    config["datasets"]["diffusion_reaction"].update(
        students=list(students or ["unet-m"]), settings=list(settings or ["none", "dual"]))
    return validate(config, source="subset_config")


def run_matches(run: Mapping[str, Any], pattern: str | Mapping[str, Any]) -> bool:
    """Whether ``run`` (an ``expected_runs`` entry) is selected by ``pattern``."""
    if isinstance(pattern, str):
        return fnmatch.fnmatch(run["eval_file"], pattern)
    return all(run.get(key) == value for key, value in pattern.items())


def make_fake_results(
    root: Path, config: Mapping[str, Any], *, missing: Iterable[str | Mapping[str, Any]] = (),
    seed: int = 0, channels: Mapping[str, Sequence[str]] | None = None,
    padded: Iterable[str] = (),
) -> None:
    """Write the fake tree of ``config`` under ``root`` (the results/ folder); see above."""
    root = Path(root)
    missing = list(missing)
    names = list(config["datasets"])
    channels = dict(channels or {})
    padded = set(padded)
    for run in expected_runs(config):
        if any(run_matches(run, pattern) for pattern in missing):
            continue
        key = f"{seed}/{run['eval_file']}".encode()
        rng = np.random.default_rng(zlib.crc32(key))
        dataset = run["dataset"]
        doc = fake_evaluation(run, config, rng, dataset_index=names.index(dataset), seed=seed,
                              channels=channels.get(dataset, ("u",)),
                              mask=PADDED_MASK if dataset in padded else None)
        path = root / "eval" / run["eval_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1))
        history = fake_history(run, doc, rng)
        write_history(root / run["run_dir"] / "history.csv", history)


def fake_sha256(*parts: Any) -> str:
    """A made-up but stable sha256 hex digest, named by ``parts``."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def fake_weights(run: Mapping[str, Any]) -> str:
    """The fake ``weights_sha256`` of a run."""
    return fake_sha256("weights", run["dataset"], run["model"], run["bands"], run["seed"])


def _fake_identity(config: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """``run_id``, ``identity`` and ``weights_sha256`` as ``sdkd evaluate`` copies them
    from the checkpoint the training jobs wrote: the config's run spec, a fake data
    fingerprint per dataset, a distilled student naming its teacher's fake weights."""
    dataset = run["dataset"]
    teacher = None
    if run["role"] == "teacher":
        spec = run_spec(config, dataset, "teacher")
    else:
        spec = run_spec(config, dataset, "student", run["model"], run["bands"], run["seed"])
        if run["setting"] != "none":
            teacher = fake_weights({"dataset": dataset, "model": config["models"]["teacher"],
                                    "bands": None, "seed": int(config["seed"])})
    identity = run_identity(spec, data=fake_sha256("data", dataset), teacher=teacher)
    return {"run_id": run_id(identity), "identity": identity,
            "weights_sha256": fake_weights(run)}


def plant_identity(path: Path, change: Callable[[dict[str, Any]], Any]) -> str:
    """Apply ``change`` to the ``identity`` of the evaluation file at ``path`` and give the
    file the ``run_id`` that names the new identity (as a real run of it would have);
    return that run_id."""
    doc = json.loads(path.read_text())
    change(doc["identity"])
    doc["run_id"] = run_id(doc["identity"])
    path.write_text(json.dumps(doc))
    return doc["run_id"]


def mse_of(run: Mapping[str, Any], dataset_index: int) -> float:
    """The noiseless test MSE the fake gives a run."""
    teacher = 0.01 * (1 + dataset_index)
    if run["role"] == "teacher":
        return teacher
    size = SIZE_FACTOR.get(run["size"], 1.0)
    return teacher * 3.0 * size * SETTING_FACTOR.get(run["setting"], 0.9)


def _truth(config: Mapping[str, Any], dataset: str, seed: int) -> np.ndarray:
    """(T_out, H, W) smooth fields of test window 0, the same for every model."""
    out_steps = config["datasets"][dataset]["out_steps"]
    y, x = np.meshgrid(np.arange(GRID) / GRID, np.arange(GRID) / GRID, indexing="ij")
    rng = np.random.default_rng(zlib.crc32(f"{seed}/{dataset}".encode()))
    phase = rng.uniform(0, 2 * np.pi)
    frames = [
        1.5 * np.sin(2 * np.pi * (x + 0.1 * t) + phase) * np.cos(2 * np.pi * y)
        + 0.3 * np.cos(6 * np.pi * (x - y) + 0.5 * t)
        for t in range(1, out_steps + 1)
    ]
    return np.stack(frames)


def channel_metrics(mse: float, channels: Sequence[str]) -> dict[str, dict[str, float]]:
    """The fake's ``channel_metrics`` of a run whose overall MSE is ``mse``: channel c
    (0-based) has c + 1 times the error and the data range of the first, and the mean of
    the channels' MSEs is ``mse``; one channel has the overall metrics."""
    weights = np.arange(1, len(channels) + 1) / np.mean(np.arange(1, len(channels) + 1))
    out = {}
    for c, (name, weight) in enumerate(zip(channels, weights, strict=True)):
        value, value_range = mse * float(weight), DATA_RANGE * (c + 1)
        rmse = math.sqrt(value)
        out[name] = {"data_range": value_range, "mse": value, "mae": 0.8 * rmse,
                     "rmse": rmse, "rel_l2": rmse / TRUTH_RMS,
                     "ssim": 1 - 2 * rmse / value_range,
                     "psnr": 10 * math.log10(value_range**2 / value)}
    return out


def fake_evaluation(
    run: Mapping[str, Any], config: Mapping[str, Any], rng: np.random.Generator, *,
    dataset_index: int = 0, seed: int = 0, channels: Sequence[str] = ("u",),
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """One evaluation file's content (docs/evaluation-format.md) for ``run``; ``mask``
    (GRID × GRID bool) zeroes the sample's padded pixels and is written as the file's."""
    dataset = run["dataset"]
    block = config["datasets"][dataset]
    out_steps = block["out_steps"]
    student = run["role"] == "student"
    mse = mse_of(run, dataset_index) * (1 + 0.03 * rng.standard_normal() if student else 1)
    rmse = math.sqrt(mse)

    # per lead time: the error grows with the lead; mean over lead times == overall
    w = np.linspace(0.5, 1.5, out_steps)
    lead_mse = mse * w
    per_lead = {
        "mse": lead_mse, "mae": 0.8 * np.sqrt(lead_mse), "rmse": np.sqrt(lead_mse),
        "rel_l2": np.sqrt(lead_mse) / TRUTH_RMS, "ssim": 1 - 2 * np.sqrt(lead_mse) / DATA_RANGE,
        "psnr": 10 * np.log10(DATA_RANGE**2 / lead_mse),
    }

    # per band: worse models put more of their error into the high bands
    cutoffs = list(config["evaluate"]["band_cutoffs"])
    n_bands = len(cutoffs) + 1
    tilt = -0.6 if not student else (0.4 if run["setting"] == "none" else 0.0)
    shares = np.exp(tilt * np.arange(n_bands))
    band_mse = mse * shares / shares.sum()

    # spectrum: k shells of width 1 up to the corner of the grid
    k = np.arange(spectrum_shells(GRID, GRID))
    truth_spec = 5.0 * (1.0 + k) ** -3.0
    sharp = 8.0 if not student else SETTING_SHARPNESS.get(run["setting"], 2.5)
    pred_spec = truth_spec * np.exp(-((k / sharp) ** 2))
    err_shape = (1.0 + k) ** -1.0 * (1 - np.exp(-((k + 1) / sharp) ** 2) * 0.5)
    err_spec = mse * err_shape / err_shape.sum()

    truth = _truth(config, dataset, seed)
    lead_idx = [0, out_steps - 1]
    noise = rng.standard_normal((2, GRID, GRID))
    pred = truth[lead_idx] + rmse * np.sqrt(w[lead_idx])[:, None, None] * noise
    if mask is not None:
        truth, pred = np.where(mask, truth, 0.0), np.where(mask, pred, 0.0)

    if student:
        parameters = SIZE_PARAMETERS.get(run["size"], 100_000)
        checkpoint = f"results/{run['run_dir']}/best.pt"
    else:
        parameters = TEACHER_PARAMETERS
        checkpoint = f"results/{run['run_dir']}/best.pt"
    flops = parameters * GRID * GRID * 2.0
    latency = 0.2 + flops / 2e8
    seconds_per_epoch = 0.5 + parameters / 1e6
    mae = 0.8 * rmse
    identity = _fake_identity(config, run)
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "role": run["role"],
        "model": run["model"],
        "family": run["family"], "size": run["size"],
        "bands": run["bands"], "setting": run["setting"],
        "seed": run["seed"],
        "run_id": identity["run_id"],
        "identity": identity["identity"],
        "checkpoint": checkpoint,
        "checkpoint_sha256": "0" * 64,
        "weights_sha256": identity["weights_sha256"],
        "split": "test",
        "n_windows": 3, "in_steps": block["in_steps"], "out_steps": out_steps,
        "channels": list(channels), "grid": [GRID, GRID], "dt": 1.0,
        "mask": mask.astype(int).tolist() if mask is not None else None,
        "data_range": DATA_RANGE * len(channels),
        "data_range_definition": "max − min over the test split, all frames and channels",
        "metrics": {
            "mse": mse, "mae": mae, "rmse": rmse, "rel_l2": rmse / TRUTH_RMS,
            "ssim": 1 - 2 * rmse / DATA_RANGE, "psnr": 10 * math.log10(DATA_RANGE**2 / mse),
        },
        "channel_metrics": channel_metrics(mse, channels),
        "per_lead_time": {name: values.tolist() for name, values in per_lead.items()},
        "band_errors": {"cutoffs": cutoffs, "mse": band_mse.tolist(),
                  "truth_energy": (10.0 ** -np.arange(n_bands)).tolist()},
        "spectrum": {"k": k.tolist(), "prediction": pred_spec.tolist(),
                     "truth": truth_spec.tolist(), "error": err_spec.tolist()},
        "sample": {"window": 0, "channel": channels[0], "lead_times": [1, out_steps],
                   "truth": truth[lead_idx].tolist(), "prediction": pred.tolist()},
        "efficiency": {
            "parameters": parameters,
            "flops_per_sample": flops,
            "inference": {"device": "cpu (2 threads)", "batch": 16, "latency_ms": latency,
                          "samples_per_s": 16 * 1000 / latency},
            "training": {"device": "cpu (2 threads)", "epochs": EPOCHS,
                         "seconds": seconds_per_epoch * EPOCHS,
                         "seconds_per_epoch": seconds_per_epoch,
                         "peak_memory_mb": 100 + parameters / 1e4},
        },
        "evaluation_seconds": 0.1,
        "created_with": "sdkd 0.1.0 (fake)",
    }


def fake_history(run: Mapping[str, Any], doc: Mapping[str, Any],
                 rng: np.random.Generator) -> list[dict[str, Any]]:
    """Per-epoch rows as the training engine writes them (normalised units)."""
    final = doc["metrics"]["mse"] * 10  # normalised units differ from physical ones
    seconds = doc["efficiency"]["training"]["seconds_per_epoch"]
    rows = []
    for epoch in range(1, EPOCHS + 1):
        decay = 1 + 3 * math.exp(-(epoch - 1) / 1.5)
        val = final * decay * (1 + 0.02 * rng.standard_normal())
        train = 0.9 * final * decay
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train, "val_loss": val}
        if run["role"] == "teacher":
            row |= {"train_mse": train, "val_mse": val}
        else:
            kd = 0.0 if run["setting"] == "none" else 0.3 * train
            row |= {"train_loss": train + kd, "val_loss": val + kd, "train_gt": train,
                    "train_kd": kd, "val_gt": val, "val_kd": kd}
        row |= {"lr": 1e-3 * (1 - (epoch - 1) / EPOCHS), "seconds": seconds,
                "samples_per_s": 100.0, "peak_memory_mb": 120.0, "device": "cpu (2 threads)"}
        rows.append(row)
    return rows


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_data_file(root: Path, config: Mapping[str, Any], name: str) -> Path:
    """A canonical HDF5 file of dataset ``name`` under ``root/data``, made by the real
    preprocess step from a small raw file (6 × 8 frames of 8 × 8)."""
    raw = root / "raw" / f"{name}.h5"
    raw.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    with h5py.File(raw, "w") as f:
        f["u"] = rng.normal(size=(6, 8, 8, 8)).astype(np.float32)  # N T H W
    block = copy.deepcopy(config["datasets"][name])
    block["file"]["path"] = str(raw)
    return preprocess(raw, root / "data" / f"{name}.h5", block, name=name)
