"""The evaluation file (docs/evaluation-format.md): its writer and its readers.

Every module that touches an evaluation file goes through this one: ``sdkd evaluate``
writes with :func:`write_evaluation`; the report side reads with :func:`read_evaluation`
(the whole-file check: schema version, top-level keys, run identity, and the run the
file should belong to) and then takes each section through its parser:

- :func:`metrics` raises :class:`InvalidEvaluation` unless all six are finite numbers
  (a run without them has no result);
- :func:`per_lead_time`, :func:`spectrum`, :func:`band_errors`, :func:`sample` return
  typed arrays, or ``None`` for a section that is absent or malformed (the figure or
  table that needs it leaves the run out);
- :func:`efficiency` returns every cost, ``None`` where the file lacks it, and the
  dotted keys it lacks;
- :func:`identity` returns the run identity.

:func:`band_labels` names the bands of ``band_errors`` wherever they are shown.

No torch here: the report imports this module, and torch costs seconds to import.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdkd.errors import SdkdError
from sdkd.jsonfile import read_json, write_json
from sdkd.plan import run_id

SCHEMA_VERSION = 2
"""Version of the layout; bump it with docs/evaluation-format.md. 2 added ``run_id``,
``identity`` and ``weights_sha256``."""

DATA_RANGE_DEFINITION = "max − min over the test split, all frames and channels"

METRICS = ("mse", "mae", "rmse", "rel_l2", "ssim", "psnr")

# Keys every evaluation file has at the top level; the sections are checked by their parsers.
KEYS = ("schema_version", "dataset", "role", "model", "family", "size", "bands", "setting",
        "seed", "run_id", "identity", "checkpoint", "checkpoint_sha256", "weights_sha256",
        "split", "n_windows", "in_steps", "out_steps", "channels", "grid", "dt", "data_range",
        "data_range_definition", "metrics", "per_lead_time", "band_errors", "spectrum",
        "sample", "efficiency", "evaluation_seconds", "created_with")

# Efficiency numbers by name (the metrics table's columns) → where each lives in the file.
EFFICIENCY: dict[str, tuple[str, ...]] = {
    "parameters": ("efficiency", "parameters"),
    "flops_per_sample": ("efficiency", "flops_per_sample"),
    "latency_ms": ("efficiency", "inference", "latency_ms"),
    "samples_per_s": ("efficiency", "inference", "samples_per_s"),
    "train_seconds": ("efficiency", "training", "seconds"),
    "seconds_per_epoch": ("efficiency", "training", "seconds_per_epoch"),
    "peak_memory_mb": ("efficiency", "training", "peak_memory_mb"),
}
# The devices those costs were measured on, in the same way.
DEVICES: dict[str, tuple[str, ...]] = {
    "inference_device": ("efficiency", "inference", "device"),
    "train_device": ("efficiency", "training", "device"),
}


class InvalidEvaluation(SdkdError):
    """An evaluation file that exists but cannot be used (the message names it and why)."""


# ---- writing ------------------------------------------------------------------------------


def _strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def write_evaluation(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``doc`` to ``path`` atomically, non-finite numbers as ``null``; return what
    was written (the content :func:`read_evaluation` gives back)."""
    written = _strict_json(doc)
    write_json(path, written)
    return written


# ---- the whole-file check -----------------------------------------------------------------


def identity_problem(ident: Any, name: Any) -> str | None:
    """What is wrong with a run identity ``ident`` and its ``run_id`` ``name`` (as
    checkpoints and evaluation files store them, :func:`sdkd.plan.run_identity`), or None
    when they are sound."""
    if not isinstance(ident, Mapping) or not isinstance(ident.get("spec"), Mapping):
        return "identity has no `spec` object"
    inputs = ident.get("inputs")
    if not isinstance(inputs, Mapping) or not isinstance(inputs.get("data"), str):
        return "identity.inputs has no `data` fingerprint"
    if not isinstance(inputs.get("teacher"), str | None):
        return f"identity.inputs.teacher is {inputs.get('teacher')!r}, expected a sha256 or null"
    if name != run_id(ident):
        return f"run_id {name!r} does not name its identity (expected {run_id(ident)!r})"
    return None


def read_evaluation(
    path: str | os.PathLike[str], expect: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read one evaluation file and check what every reader relies on.

    Checks: a JSON object of :data:`SCHEMA_VERSION` with every top-level key
    (:data:`KEYS`) and every key of ``metrics``; a sound run identity
    (:func:`identity_problem`) and ``weights_sha256``; and, with ``expect`` (an
    :func:`sdkd.plan.expected_runs` entry), that the file is that run's: dataset, role,
    model and, for a student, bands, setting and seed.

    Raises:
        InvalidEvaluation: naming ``path`` and what is wrong.
    """
    path = Path(path)
    doc = read_json(path, what="evaluation file", hint="run sdkd evaluate",
                    error=InvalidEvaluation)
    if not isinstance(doc, dict):
        raise InvalidEvaluation(f"{path}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InvalidEvaluation(
            f"{path}: evaluation schema_version {version!r}, expected {SCHEMA_VERSION}; "
            "rerun sdkd evaluate"
        )
    metrics_block = doc.get("metrics")
    missing = [k for k in KEYS if k not in doc]
    if isinstance(metrics_block, dict):
        missing += [f"metrics.{k}" for k in METRICS if k not in metrics_block]
    if missing:
        raise InvalidEvaluation(
            f"{path}: evaluation file lacks key(s) {', '.join(missing)}; rerun sdkd evaluate"
        )
    if not isinstance(metrics_block, dict):
        raise InvalidEvaluation(f"{path}: `metrics` is not an object; rerun sdkd evaluate")
    problem = identity_problem(doc["identity"], doc["run_id"])
    if problem is None and not isinstance(doc["weights_sha256"], str):
        problem = f"weights_sha256 is {doc['weights_sha256']!r}, expected a sha256"
    if problem is not None:
        raise InvalidEvaluation(f"{path}: {problem}; rerun sdkd evaluate")
    if expect is not None:
        keys = ["dataset", "role", "model"]
        if expect["role"] == "student":
            keys += ["bands", "setting", "seed"]
        for key in keys:
            if doc.get(key) != expect[key]:
                raise InvalidEvaluation(
                    f"{path}: {key} is {doc.get(key)!r}, expected {expect[key]!r} "
                    "(the file belongs to another run)"
                )
    return doc


# ---- the sections -------------------------------------------------------------------------


def _finite_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _array(value: Any, ndim: int = 1) -> np.ndarray | None:
    """A finite float array of ``ndim`` dimensions, or ``None``."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if array.ndim != ndim or array.size == 0 or not np.isfinite(array).all():
        return None
    return array


def _dig(doc: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(doc, Mapping) or key not in doc:
            return None
        doc = doc[key]
    return doc


def metrics(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, float]:
    """The six overall metrics (:data:`METRICS`) of a checked file.

    Raises:
        InvalidEvaluation: naming ``path`` and the metric that is not a finite number.
    """
    block = doc["metrics"]
    for name in METRICS:
        if not _finite_number(block.get(name)):
            raise InvalidEvaluation(
                f"{path}: metrics.{name} is {block.get(name)!r}, expected a finite number"
            )
    return {name: float(block[name]) for name in METRICS}


@dataclass(frozen=True)
class RunIdentity:
    """Who made a run: ``run_id`` names the identity, ``spec`` is its
    :func:`sdkd.plan.run_spec`; ``data`` and ``teacher`` fingerprint what it read (the
    canonical data file; a distilled student's teacher weights, else None); ``weights``
    is the sha256 of the evaluated weights (:func:`sdkd.train.checkpoint.weights_sha256`)."""

    run_id: str
    spec: Mapping[str, Any]
    data: str
    teacher: str | None
    weights: str


def identity(doc: Mapping[str, Any]) -> RunIdentity:
    """The run identity of a file that :func:`read_evaluation` has checked."""
    inputs = doc["identity"]["inputs"]
    return RunIdentity(doc["run_id"], doc["identity"]["spec"], inputs["data"],
                       inputs["teacher"], doc["weights_sha256"])


def efficiency(doc: Mapping[str, Any]) -> tuple[dict[str, float | str | None], list[str]]:
    """(every :data:`EFFICIENCY` number and :data:`DEVICES` name, None where the file has
    no finite number or no text; the dotted keys of those it lacks)."""
    values: dict[str, float | str | None] = {}
    for name, keys in EFFICIENCY.items():
        value = _dig(doc, keys)
        values[name] = float(value) if _finite_number(value) else None
    for name, keys in DEVICES.items():
        value = _dig(doc, keys)
        values[name] = value if isinstance(value, str) else None
    lacking = [".".join(keys) for name, keys in (*EFFICIENCY.items(), *DEVICES.items())
               if values[name] is None]
    return values, lacking


def per_lead_time(doc: Mapping[str, Any], metric: str = "mse") -> np.ndarray | None:
    """(T_out,) values of ``metric`` per lead time, or None."""
    section = doc.get("per_lead_time")
    return _array(section.get(metric)) if isinstance(section, dict) else None


@dataclass(frozen=True)
class Spectrum:
    """Energy per |k| shell (all (n,)): shells ``k``, and the spectra of the prediction,
    the truth and the error, in data units squared."""

    k: np.ndarray
    prediction: np.ndarray
    truth: np.ndarray
    error: np.ndarray


def spectrum(doc: Mapping[str, Any]) -> Spectrum | None:
    """The ``spectrum`` section, or None when a series is missing, not finite or of
    another length."""
    section = doc.get("spectrum")
    if not isinstance(section, dict):
        return None
    arrays = [_array(section.get(key)) for key in ("k", "prediction", "truth", "error")]
    if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return Spectrum(*arrays)


@dataclass(frozen=True)
class Bands:
    """The ``band_errors`` section: K = len(cutoffs) + 1 radial bands (cycles per domain),
    the error's MSE in each (K,) and the truth's energy in each (K,), None if unusable."""

    cutoffs: tuple[float, ...]
    mse: np.ndarray
    truth_energy: np.ndarray | None


def band_errors(doc: Mapping[str, Any]) -> Bands | None:
    """The ``band_errors`` section, or None when its cutoffs or MSEs are unusable."""
    section = doc.get("band_errors")
    if not isinstance(section, dict):
        return None
    cutoffs, mse = section.get("cutoffs"), _array(section.get("mse"))
    if not isinstance(cutoffs, list) or not all(_finite_number(c) for c in cutoffs):
        return None
    if mse is None or len(mse) != len(cutoffs) + 1:
        return None
    energy = _array(section.get("truth_energy"))
    if energy is not None and energy.shape != mse.shape:
        energy = None
    return Bands(tuple(float(c) for c in cutoffs), mse, energy)


def band_labels(cutoffs: Sequence[float]) -> list[str]:
    """``k < 4``, ``4 ≤ k < 8``, ``k ≥ 8`` for cutoffs (4, 8); ``all k`` for none."""
    cuts = [f"{c:g}" for c in cutoffs]
    if not cuts:
        return ["all k"]
    labels = [f"k < {cuts[0]}"]
    labels += [f"{a} ≤ k < {b}" for a, b in itertools.pairwise(cuts)]
    labels.append(f"k ≥ {cuts[-1]}")
    return labels


@dataclass(frozen=True)
class Sample:
    """Test window 0, one channel: ``truth`` and ``prediction`` (L, H, W) at the
    ``lead_times`` (L frames ahead, 1-based)."""

    channel: str | None
    lead_times: list[int]
    truth: np.ndarray
    prediction: np.ndarray


def sample(doc: Mapping[str, Any]) -> Sample | None:
    """The ``sample`` section, or None when its fields are not two finite (L, H, W)
    arrays of one shape; lead times that do not fit become 1 … L."""
    section = doc.get("sample")
    if not isinstance(section, dict):
        return None
    truth, prediction = _array(section.get("truth"), 3), _array(section.get("prediction"), 3)
    if truth is None or prediction is None or truth.shape != prediction.shape:
        return None
    leads = section.get("lead_times")
    if not isinstance(leads, list) or len(leads) != len(truth):
        leads = list(range(1, len(truth) + 1))
    channel = section.get("channel")
    return Sample(channel if isinstance(channel, str) else None, leads, truth, prediction)
