"""The evaluation file (docs/evaluation-format.md): its writer and its readers.

Every module that touches an evaluation file goes through this one: ``sdkd evaluate``
writes with :func:`write_evaluation`; the report side reads with :func:`read_evaluation`
(the whole-file check: size, schema version, top-level keys, run identity, the run the
file should belong to, and every section through its parser), then takes each section
through its parser again for its values:

- :func:`metrics`: the six overall metrics, each a finite number (a run without them
  has no result);
- :func:`channel_metrics`: the same per channel (with each channel's data range), or
  ``None`` (a version 2 file, or a ``null`` section);
- :func:`per_lead_time`, :func:`spectrum`, :func:`band_errors`, :func:`sample`,
  :func:`mask`: typed arrays checked against the file's counts (``out_steps``, ``grid``,
  ``channels``, the cutoffs), or ``None`` for a section that is ``null`` (absent: the
  figure or table that needs it leaves the run out; no mask: every pixel counts);
- :func:`efficiency`: every cost, ``None`` where the file has none (absent or null), and
  the dotted keys it lacks;
- :func:`identity`: the run identity.

A section (or cost) that is there but malformed (another type, another length than its
count, a number that is not finite) raises :class:`InvalidEvaluation` naming the key, so
``read_evaluation`` refuses the file: the run is ``invalid``, never silently partial.

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
from sdkd.jsonfile import read_json, shown, write_json
from sdkd.plan import run_id

SCHEMA_VERSION = 3
"""Version of the layout that ``sdkd evaluate`` writes; bump it with
docs/evaluation-format.md. 2 added ``run_id``, ``identity`` and ``weights_sha256``; 3
added ``mask`` and ``channel_metrics``."""

READABLE_VERSIONS = (2, 3)
"""The versions :func:`read_evaluation` accepts. A version 2 file is a version 3 file
without the keys of :data:`ADDED_IN_3`: it was written before masks and per-channel
metrics, every pixel counted, and its parsers give ``None`` for both."""

ADDED_IN_3 = ("mask", "channel_metrics")

DATA_RANGE_DEFINITION = "max − min over the test split, all frames and channels"

METRICS = ("mse", "mae", "rmse", "rel_l2", "ssim", "psnr")

# Keys every evaluation file has at the top level; the sections are checked by their parsers.
KEYS = ("schema_version", "dataset", "role", "model", "family", "size", "bands", "setting",
        "seed", "run_id", "identity", "checkpoint", "checkpoint_sha256", "weights_sha256",
        "split", "n_windows", "in_steps", "out_steps", "channels", "grid", "dt", "mask",
        "data_range", "data_range_definition", "metrics", "channel_metrics", "per_lead_time",
        "band_errors", "spectrum", "sample", "efficiency", "evaluation_seconds",
        "created_with")

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
        return (f"identity.inputs.teacher is {shown(inputs.get('teacher'))}, expected a sha256 "
                "or null")
    if name != run_id(ident):
        return f"run_id {shown(name)} does not name its identity (expected {run_id(ident)!r})"
    return None


def read_evaluation(
    path: str | os.PathLike[str], expect: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read one evaluation file and check what every reader relies on.

    Checks: a strict JSON object of at most :data:`sdkd.jsonfile.MAX_BYTES` of a version
    in :data:`READABLE_VERSIONS` with every top-level key (:data:`KEYS`, but those of
    :data:`ADDED_IN_3` in a version 2 file) and every key of ``metrics``; a sound run
    identity (:func:`identity_problem`) and ``weights_sha256``; with ``expect`` (an
    :func:`sdkd.plan.expected_runs` entry), that the file is that run's: dataset, role,
    model and, for a student, bands, setting and seed; and every section
    (:data:`SECTIONS`).

    Raises:
        InvalidEvaluation: naming ``path`` and what is wrong.
    """
    path = Path(path)
    doc = read_json(path, what="evaluation file", hint="run sdkd evaluate",
                    error=InvalidEvaluation)
    if not isinstance(doc, dict):
        raise InvalidEvaluation(f"{path}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        expected = " or ".join(map(str, READABLE_VERSIONS))
        raise InvalidEvaluation(
            f"{path}: evaluation schema_version {shown(version)}, expected {expected}; "
            "rerun sdkd evaluate"
        )
    metrics_block = doc.get("metrics")
    missing = [k for k in KEYS if k not in doc and (version >= 3 or k not in ADDED_IN_3)]
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
        problem = f"weights_sha256 is {shown(doc['weights_sha256'])}, expected a sha256"
    if problem is not None:
        raise InvalidEvaluation(f"{path}: {problem}; rerun sdkd evaluate")
    if expect is not None:
        keys = ["dataset", "role", "model"]
        if expect["role"] == "student":
            keys += ["bands", "setting", "seed"]
        for key in keys:
            if doc.get(key) != expect[key]:
                raise InvalidEvaluation(
                    f"{path}: {key} is {shown(doc.get(key))}, expected {expect[key]!r} "
                    "(the file belongs to another run)"
                )
    try:
        for check in SECTIONS:
            check(doc)
    except InvalidEvaluation as exc:
        raise InvalidEvaluation(f"{path}: {exc}") from None
    return doc


# ---- the sections -------------------------------------------------------------------------
#
# Each parser raises InvalidEvaluation without the file's name (read_evaluation adds it);
# a section that is null is absent, and the parser returns None.

# Per-lead-time metrics that may have no value at a lead time (null): the relative L2 of
# an all-zero truth, the SSIM of a grid under 11 px, the PSNR of a perfect forecast.
MAY_BE_NULL = ("rel_l2", "ssim", "psnr")


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None. (Numbers
    read by :func:`sdkd.jsonfile.read_json` all convert to finite floats.)"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _natural(value: Any, least: int) -> bool:
    """Whether ``value`` is an integer (not a bool) ≥ ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class _Counts:
    """The counts the sections are checked against."""

    out_steps: int
    grid: tuple[int, int]
    channels: tuple[str, ...]


def _counts(doc: Mapping[str, Any]) -> _Counts:
    out_steps, grid, channels = doc.get("out_steps"), doc.get("grid"), doc.get("channels")
    if not _natural(out_steps, 1):
        raise InvalidEvaluation(f"out_steps is {shown(out_steps)}, expected a positive integer")
    if not (isinstance(grid, list) and len(grid) == 2 and all(_natural(n, 1) for n in grid)):
        raise InvalidEvaluation(f"grid is {shown(grid)}, expected [H, W], two positive "
                                "integers")
    if not (isinstance(channels, list) and channels
            and all(isinstance(c, str) for c in channels)):
        raise InvalidEvaluation(f"channels is {shown(channels)}, expected a list of names")
    return _Counts(out_steps, (grid[0], grid[1]), tuple(channels))


def _section(doc: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    section = doc.get(name)
    if section is not None and not isinstance(section, dict):
        raise InvalidEvaluation(f"{name} is {shown(section)}, expected an object or null")
    return section


def _field(section: Mapping[str, Any], name: str, key: str) -> Any:
    if key not in section:
        raise InvalidEvaluation(f"{name} lacks `{key}`")
    return section[key]


def _problem(value: Any, shape: tuple[int, ...], nullable: bool
             ) -> tuple[tuple[int, ...], str] | None:
    """(index, what is wrong there) where ``value`` first departs from nested lists of
    ``shape`` holding finite numbers (or null, when ``nullable``); None when it does not."""
    if not shape:
        if _number(value) is not None or (nullable and value is None):
            return None
        return (), f"is {shown(value)}"
    if not isinstance(value, list):
        return (), f"is {shown(value)}"
    if len(value) != shape[0]:
        return (), f"has {len(value)} entries"
    for i, item in enumerate(value):
        found = _problem(item, shape[1:], nullable)
        if found is not None:
            return (i, *found[0]), found[1]
    return None


def _array(value: Any, name: str, shape: tuple[int, ...], counts: str, *,
           nullable: bool = False, nonnegative: bool = False) -> np.ndarray:
    """``value`` as a float array of ``shape`` (null → NaN when ``nullable``).

    Raises:
        InvalidEvaluation: naming ``name`` (and the index) and the expected array, whose
            sizes come from ``counts`` (``"out_steps"``, ``"lead_times × grid"``).
    """
    kind = "finite numbers" + (" ≥ 0" if nonnegative else "") + (" or null" if nullable else "")
    expected = (f"{shape[0]} {kind}" if len(shape) == 1
                else f"a {' × '.join(map(str, shape))} array of {kind}") + f" ({counts})"
    found = _problem(value, shape, nullable)
    array = np.array(value, dtype=float) if found is None else None
    if array is not None and nonnegative and (array < 0).any():
        at = np.unravel_index(int(np.argmax(array < 0)), shape)
        found = tuple(int(i) for i in at), f"is {array[at]:g}"
    if found is not None:
        index, what = found
        raise InvalidEvaluation(f"{name}{''.join(f'[{i}]' for i in index)} {what}, "
                                f"expected {expected}")
    return array


def metrics(doc: Mapping[str, Any]) -> dict[str, float]:
    """The six overall metrics (:data:`METRICS`).

    Raises:
        InvalidEvaluation: naming the metric that is not a finite number.
    """
    block = doc["metrics"]
    values = {name: _number(block.get(name)) for name in METRICS}
    for name, value in values.items():
        if value is None:
            raise InvalidEvaluation(
                f"metrics.{name} is {shown(block.get(name))}, expected a finite number"
            )
    return values


def _scalar(value: Any, name: str, *, nullable: bool = False,
            nonnegative: bool = False) -> float:
    """``value`` as a float (null → NaN when ``nullable``).

    Raises:
        InvalidEvaluation: naming ``name``, when it is not a finite number (≥ 0 when
            ``nonnegative``).
    """
    number = _number(value)
    if number is None and nullable and value is None:
        return math.nan
    if number is None or (nonnegative and number < 0):
        kind = "a finite number" + (" ≥ 0" if nonnegative else "") + (" or null" if nullable
                                                                      else "")
        raise InvalidEvaluation(f"{name} is {shown(value)}, expected {kind}")
    return number


# The numbers of a channel's entry in `channel_metrics` that cannot be negative.
NONNEGATIVE = ("data_range", "mse", "mae", "rmse", "rel_l2")


def channel_metrics(doc: Mapping[str, Any]) -> dict[str, dict[str, float]] | None:
    """The ``channel_metrics`` section: per channel name (the file's ``channels``, in
    order) its ``data_range`` and the six :data:`METRICS` (NaN where one of
    :data:`MAY_BE_NULL` is null: a channel forecast perfectly has no PSNR, a constant
    channel no SSIM or PSNR); None when the section is null or the file (version 2)
    has none."""
    section = _section(doc, "channel_metrics")
    if section is None:
        return None
    names = list(_counts(doc).channels)
    if list(section) != names:
        raise InvalidEvaluation(f"channel_metrics has the keys {shown(list(section))}, "
                                f"expected the channels {shown(names)}, in order")
    out = {}
    for name, entry in section.items():
        where = f"channel_metrics.{name}"
        if not isinstance(entry, dict):
            raise InvalidEvaluation(f"{where} is {shown(entry)}, expected an object")
        out[name] = {key: _scalar(_field(entry, where, key), f"{where}.{key}",
                                  nullable=key in MAY_BE_NULL, nonnegative=key in NONNEGATIVE)
                     for key in ("data_range", *METRICS)}
    return out


def mask(doc: Mapping[str, Any]) -> np.ndarray | None:
    """The ``mask`` section as a bool (H, W) array, True on the pixels the metrics count
    (0/1 in the file, at least one 1), or None when it is null (every pixel counts) or
    the file (version 2) has none."""
    value = doc.get("mask")
    if value is None:
        return None
    grid = _counts(doc).grid
    array = _array(value, "mask", grid, "grid")
    if not np.isin(array, (0, 1)).all() or not array.any():
        raise InvalidEvaluation("mask holds other values than 0 and 1, or no 1; expected 1 "
                                "on the pixels that count, 0 on padding")
    return array.astype(bool)


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


def _lookup(doc: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The value at the dotted ``keys``; None where a level is absent or null.

    Raises:
        InvalidEvaluation: when a level above the last is neither an object nor null.
    """
    value: Any = doc
    for depth, key in enumerate(keys):
        value = value.get(key)
        if value is None:
            return None
        if depth < len(keys) - 1 and not isinstance(value, dict):
            raise InvalidEvaluation(f"{'.'.join(keys[:depth + 1])} is {shown(value)}, "
                                    "expected an object or null")
    return value


def efficiency(doc: Mapping[str, Any]) -> tuple[dict[str, float | str | None], list[str]]:
    """(every :data:`EFFICIENCY` number and :data:`DEVICES` name, None where the file has
    none (absent or null); the dotted keys of those it lacks).

    Raises:
        InvalidEvaluation: for a cost that is there but not a finite number ≥ 0, or a
            device that is not text.
    """
    values: dict[str, float | str | None] = {}
    for name, keys in EFFICIENCY.items():
        value = _lookup(doc, keys)
        number = _number(value)
        if value is not None and (number is None or number < 0):
            raise InvalidEvaluation(f"{'.'.join(keys)} is {shown(value)}, expected a finite "
                                    "number ≥ 0 or null")
        values[name] = number
    for name, keys in DEVICES.items():
        value = _lookup(doc, keys)
        if not isinstance(value, str | None):
            raise InvalidEvaluation(f"{'.'.join(keys)} is {shown(value)}, expected text or "
                                    "null")
        values[name] = value
    lacking = [".".join(keys) for name, keys in (*EFFICIENCY.items(), *DEVICES.items())
               if values[name] is None]
    return values, lacking


def per_lead_time(doc: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """Each metric of :data:`METRICS` per lead time, (out_steps,) arrays (NaN where a
    metric of :data:`MAY_BE_NULL` has no value), or None when the section is null."""
    section = _section(doc, "per_lead_time")
    if section is None:
        return None
    steps = _counts(doc).out_steps
    return {name: _array(_field(section, "per_lead_time", name), f"per_lead_time.{name}",
                         (steps,), "out_steps", nullable=name in MAY_BE_NULL)
            for name in METRICS}


@dataclass(frozen=True)
class Spectrum:
    """Energy per |k| shell (all (n,)): shells ``k``, and the spectra of the prediction,
    the truth and the error, in data units squared."""

    k: np.ndarray
    prediction: np.ndarray
    truth: np.ndarray
    error: np.ndarray


def spectrum_shells(height: int, width: int) -> int:
    """How many |k| shells (0 … n) an H × W grid has: the largest |k| is
    √(⌊H/2⌋² + ⌊W/2⌋²), rounded. ``sdkd.evaluate.spectra.shell_count`` counts them
    from the wavenumbers with torch, which the report does not import."""
    return math.floor(math.hypot(height // 2, width // 2) + 0.5) + 1


def spectrum(doc: Mapping[str, Any]) -> Spectrum | None:
    """The ``spectrum`` section (one value per shell of the grid, shells ``k`` = 0 … n,
    energies ≥ 0), or None when it is null."""
    section = _section(doc, "spectrum")
    if section is None:
        return None
    n = spectrum_shells(*_counts(doc).grid)
    series = {key: _array(_field(section, "spectrum", key), f"spectrum.{key}", (n,),
                          "shells of the grid", nonnegative=key != "k")
              for key in ("k", "prediction", "truth", "error")}
    if not np.array_equal(series["k"], np.arange(n)):
        raise InvalidEvaluation(f"spectrum.k is {shown(section['k'])}, expected the shells "
                                f"0, 1, …, {n - 1}")
    return Spectrum(**series)


@dataclass(frozen=True)
class Bands:
    """The ``band_errors`` section: K = len(cutoffs) + 1 radial bands (cycles per domain),
    the error's MSE in each (K,) and the truth's energy in each (K,)."""

    cutoffs: tuple[float, ...]
    mse: np.ndarray
    truth_energy: np.ndarray


def band_errors(doc: Mapping[str, Any]) -> Bands | None:
    """The ``band_errors`` section (increasing cutoffs > 0; MSE and truth energy ≥ 0 per
    band), or None when it is null."""
    section = _section(doc, "band_errors")
    if section is None:
        return None
    cutoffs = _field(section, "band_errors", "cutoffs")
    values = [_number(c) for c in cutoffs] if isinstance(cutoffs, list) else [None]
    if (any(v is None or v <= 0 for v in values)
            or any(b <= a for a, b in itertools.pairwise(values))):
        raise InvalidEvaluation(f"band_errors.cutoffs is {shown(cutoffs)}, expected "
                                "increasing wavenumbers > 0")
    shape = (len(values) + 1,)
    mse, energy = (_array(_field(section, "band_errors", key), f"band_errors.{key}", shape,
                          "one per band: len(cutoffs) + 1", nonnegative=True)
                   for key in ("mse", "truth_energy"))
    return Bands(tuple(values), mse, energy)


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
    ``lead_times`` (L frames ahead, 1-based); ``valid`` the file's :func:`mask` (H, W),
    or None when every pixel counts (padded pixels are 0 in both fields)."""

    channel: str
    lead_times: list[int]
    truth: np.ndarray
    prediction: np.ndarray
    valid: np.ndarray | None


def sample(doc: Mapping[str, Any]) -> Sample | None:
    """The ``sample`` section (a window ≥ 0, one of the file's channels, increasing lead
    times within 1 … out_steps, and fields of lead_times × grid), or None when it is null."""
    section = _section(doc, "sample")
    if section is None:
        return None
    counts = _counts(doc)
    window = _field(section, "sample", "window")
    if not _natural(window, 0):
        raise InvalidEvaluation(f"sample.window is {shown(window)}, expected an integer ≥ 0")
    channel = _field(section, "sample", "channel")
    if channel not in counts.channels:
        raise InvalidEvaluation(f"sample.channel is {shown(channel)}, expected one of "
                                f"channels {shown(list(counts.channels))}")
    leads = _field(section, "sample", "lead_times")
    if not (isinstance(leads, list) and leads
            and all(_natural(t, 1) and t <= counts.out_steps for t in leads)
            and all(a < b for a, b in itertools.pairwise(leads))):
        raise InvalidEvaluation(f"sample.lead_times is {shown(leads)}, expected increasing "
                                f"lead times within 1 … out_steps ({counts.out_steps})")
    frames = (len(leads), *counts.grid)
    truth, prediction = (_array(_field(section, "sample", key), f"sample.{key}", frames,
                                "lead_times × grid") for key in ("truth", "prediction"))
    return Sample(channel, leads, truth, prediction, mask(doc))


# The checks of read_evaluation beyond the top level: every section's parser.
SECTIONS = (metrics, channel_metrics, mask, efficiency, per_lead_time, band_errors, spectrum,
            sample)
