"""Collect the evaluation file of every run the config asks for into one table.

Inputs are the JSON files of ``sdkd evaluate`` (docs/evaluation-format.md), read through
:mod:`sdkd.evaluate.format`::

    {eval_root}/{dataset}/teacher/{teacher}.json
    {eval_root}/{dataset}/{student}/{bands}/seed-{seed}.json

Outputs
=======

``metrics.csv`` (:func:`aggregate`): one row per expected run, in config order (per
dataset: the teacher, then each student × band setting × seed that the dataset runs,
see :func:`sdkd.plan.expected_runs`), whether or not its file exists. Columns
(:data:`COLUMNS`):

- ``dataset, role, model, family, size, bands, setting, seed``: who the run is.
  ``role`` is ``teacher`` or ``student``; ``family``/``size`` split the registry name
  at its last ``-``; ``bands`` is the ``{bands}`` key, ``setting`` its method (they
  differ for variants such as ``dual_c8``); both are empty for the teacher, whose
  seed is the config's top-level ``seed``.
- ``run_id``: the file's ``run_id``, the name of the run's identity (what it was
  trained from: :func:`sdkd.plan.run_id`); empty unless ``ok``.
- ``status``: ``ok``; ``missing`` (the file does not exist); ``invalid`` (it fails
  :func:`sdkd.evaluate.format.read_evaluation`: it cannot be read, is too large, is not
  strict JSON, has another ``schema_version``, lacks a key or a sound run identity,
  belongs to another run, lacks a finite ``metrics`` value, or has a malformed section).
- ``note``: why a run is missing or invalid; for ``ok`` runs, the efficiency values
  the file lacked (they are left empty, the run stays ``ok``); otherwise empty.
- ``mse, mae, rmse, rel_l2, ssim, psnr``: ``metrics`` of the file (test split,
  physical units, per pixel; see the evaluation format).
- ``parameters, flops_per_sample``: ``efficiency``; ``latency_ms, samples_per_s``,
  ``inference_device``: ``efficiency.inference``; ``train_seconds`` (the run's total
  training time), ``seconds_per_epoch``, ``peak_memory_mb``, ``train_device``:
  ``efficiency.training``.
- ``eval_path``: the file that was (or would have been) read.
- ``mse[<channel>]``, ``ssim[<channel>]``
  (:data:`~sdkd.report.results.CHANNEL_METRICS`, named by
  :func:`~sdkd.report.results.channel_column`): only for a dataset of more than one
  channel, after the columns above, per such dataset (in config order) the MSE of each
  of its channels (in the file's order), then their SSIM, from ``channel_metrics`` of
  the file: the channel's test MSE in its physical units, its SSIM with its own data
  range. Empty in the other datasets' rows, for runs that are not ``ok``, for version 2
  files (they have no per-channel block) and for a channel without a value (the SSIM of
  a constant one). With single-channel datasets only, the table has exactly the columns
  above.

``summary.json`` (:func:`summarize`, :func:`write_summary`): the headline numbers,
nested objects of numbers (DVC flattens them to dotted keys for ``dvc metrics``).
Only runs with status ``ok`` count; a field that cannot be computed is left out
(never ``null`` or ``NaN``)::

    {
      "schema_version": 4,
      "runs": {"expected": int, "ok": int, "missing": int, "invalid": int},
      "consistency": [{"dataset", "run", "run_id", "check", "message"}, ...],
      "datasets": {
        "<dataset>": {
          "teacher": {"mse": float, "mae": float, "ssim": float},
          "students": {
            "<student>": {
              "none":     {<stats>},
              "best":     {"bands": "<key>", <stats>, <gain>},
              "settings": {"<key>": {<stats>, <gain>}, ...},
              "comparisons": [{<comparison>}, ...]
            }
          },
          "tuning": {"<key>": {<search>}, ...}
        }
      }
    }

- ``consistency``: the runs that do not belong with the others, one entry per
  problem (:meth:`sdkd.report.results.Results.findings`: ``check`` is ``config``,
  ``teacher`` or ``data``, ``message`` says what differs); empty when all is consistent.
  Schema version 2 added it.
- ``teacher``: the teacher's test ``mse``, ``mae``, ``ssim`` (absent if its run is
  not ``ok``).
- ``<stats>`` of one band setting of one student, over its ``ok`` seeds:
  ``mse``, ``mae``, ``ssim``: means over seeds; ``n_seeds``: how many seeds were
  ``ok``; ``mse_std``, ``mae_std``: the spread, sample standard deviation over seeds
  (ddof = 1), present only with more than one seed.
- ``none``: the baseline, the student trained on the ground truth alone: the key
  ``none``, or else the first key whose method is ``none``, among the dataset's band
  settings (datasets may run different ones; :func:`sdkd.report.results.none_key`).
- ``settings``: every other key (method ``low``, ``high``, ``dual``, ``multi``,
  ``output``, ``fitnet``, or a variant) with at least one ``ok`` seed.
- ``best``: the entry of ``settings`` with the lowest mean MSE
  (:meth:`sdkd.report.results.Results.best`); ``bands`` names it.
- ``<gain>`` (needs ``none``): ``mse_change_pct`` = 100 · (distilled − none) / none
  on the mean MSEs, negative = better than the plain student (the paper's "MSE
  −81.3 %"); ``mae_change_pct`` the same on MAE; ``ssim_change`` = distilled − none
  (positive = better); ``gap_closed`` = (none − distilled) / (none − teacher) on the
  mean MSEs: the fraction of the plain-student-to-teacher gap the distillation closes
  (0 = no gain, 1 = as good as the teacher, > 1 better than it, < 0 worse than the
  plain student); needs the teacher, and is left out if none == teacher. With seeds
  that both ran (pairs, :mod:`sdkd.report.stats`): ``n_pairs`` and
  ``mse_paired_change_pct``, the geometric mean over pairs of the % change of test
  MSE, and, with two pairs or more, ``mse_paired_low_pct``/``mse_paired_high_pct``,
  the ends of its 95 % confidence interval (paired t-interval on log ratios).
- ``comparisons``: the study's questions (:data:`QUESTIONS`) that the student's
  settings can answer, each ``{"treated", "baseline"}`` (band keys) with
  ``n_pairs``, ``change_pct`` and, with two pairs or more, ``low_pct``/``high_pct``:
  the paired % change of test MSE of ``treated`` against ``baseline``.

- ``tuning``: per tuned band setting of the dataset (:mod:`sdkd.tuning`), the
  search that chose its values: ``student``, ``seed``, ``points`` (each ``point``,
  ``values`` and ``val_mse``, the best validation MSE of its run, normalised units) and
  ``chosen`` (the winning point's ``point``, ``values`` and ``val_mse``). Absent for a
  dataset that tunes nothing.

Schema version 3 added the paired figures and ``comparisons``, 4 ``tuning``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.evaluate.format import (
    DEVICES,
    EFFICIENCY,
    METRICS,
    InvalidEvaluation,
    channel_metrics,
    efficiency,
    metrics,
    read_evaluation,
)
from sdkd.jsonfile import read_json, shown, write_json
from sdkd.plan import dataset_settings, expected_runs, tuned_settings, tuning_file
from sdkd.report.csvfile import first_marked_line, numbers, read_csv
from sdkd.report.results import CHANNEL_METRICS, Results, channel_column, column_channel
from sdkd.report.stats import paired_change
from sdkd.tuning import read_tuning

SCHEMA_VERSION = 4
"""Version of summary.json; 2 added ``consistency``, 3 the paired figures and
``comparisons``, 4 ``tuning``."""

QUESTIONS = (("sdkd_latent", "none"), ("dual", "output"), ("decoupled", "sdkd_latent"))
"""What the study asks of each student, as (treated, baseline) methods: does the
paper's method as stated beat the plain student, does our forecast-band extension beat
response distillation, does aligning each band to its own teacher path beat aligning
both to the fused latent? A pair is answered by the first key of each method."""

ID_COLUMNS = ("dataset", "role", "model", "family", "size", "bands", "setting", "seed")
COLUMNS = (*ID_COLUMNS, "run_id", "status", "note", *METRICS, *EFFICIENCY, *DEVICES,
           "eval_path")
NUMBER_COLUMNS = ("seed", *METRICS, *EFFICIENCY)
STATUSES = ("ok", "missing", "invalid")


def _row(run: Mapping[str, Any], eval_root: Path) -> dict[str, Any]:
    path = eval_root / run["eval_file"]
    row: dict[str, Any] = {c: run[c] for c in ID_COLUMNS}
    row |= {"run_id": "", "note": "", "eval_path": str(path)}
    row |= {c: math.nan for c in (*METRICS, *EFFICIENCY)}
    row |= {c: None for c in DEVICES}
    if not path.exists():
        return row | {"status": "missing", "note": f"{path} does not exist"}
    try:
        doc = read_evaluation(path, run)
    except InvalidEvaluation as exc:
        return row | {"status": "invalid", "note": str(exc)}
    costs, lacking = efficiency(doc)
    row |= {"status": "ok", "run_id": doc["run_id"], **metrics(doc)}
    row |= {name: value for name, value in costs.items() if value is not None}
    channels = channel_metrics(doc)
    if channels is not None and len(channels) > 1:
        row |= {channel_column(metric, name): values[metric]
                for metric in CHANNEL_METRICS for name, values in channels.items()}
    if lacking:
        row["note"] = "no finite value for " + ", ".join(lacking)
    return row


# ---- the table and the summary ----------------------------------------------------------


def collect(config: Mapping[str, Any], eval_root: str | Path) -> pd.DataFrame:
    """The metrics table (see the module docstring) without writing anything.

    Raises:
        SdkdError: when none of the expected evaluation files exists.
    """
    eval_root = Path(eval_root)
    runs = expected_runs(config)
    if not any((eval_root / run["eval_file"]).exists() for run in runs):
        found = sorted(eval_root.rglob("*.json")) if eval_root.is_dir() else []
        other = (
            f" ({len(found)} other .json file(s) there, e.g. {found[0]}, belong to no run "
            "of this config)" if found else ""
        )
        raise SdkdError(
            f"no evaluation files under {eval_root}{other}: expected {len(runs)}, e.g. "
            f"{eval_root / runs[0]['eval_file']}; run the pipeline first"
        )
    rows = [_row(run, eval_root) for run in runs]
    per_channel = dict.fromkeys(key for row in rows for key in row if key not in COLUMNS)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *per_channel])
    frame["seed"] = frame["seed"].astype(int)
    return _none_for_teacher(frame)


def _none_for_teacher(frame: pd.DataFrame) -> pd.DataFrame:
    """``bands``/``setting`` of teacher rows as ``None`` (not NaN), as in expected_runs."""
    for column in ("bands", "setting"):
        frame[column] = frame[column].astype(object)
        frame[column] = frame[column].where(frame[column].notna(), None)
    return frame


def aggregate(
    config: Mapping[str, Any], eval_root: str | Path, out_csv: str | Path,
    out_summary: str | Path, tuning_root: str | Path | None = None,
) -> pd.DataFrame:
    """Write ``out_csv`` (the metrics table) and ``out_summary`` (summary.json), atomically.

    ``tuning_root`` (results/tuning) holds the tuning files of the config's tuned
    settings; it is needed when there are any.

    Returns the table. Raises :class:`SdkdError` when ``eval_root`` holds none of the
    expected evaluation files (nothing is written then), or a tuning file is missing or
    does not belong to the config.
    """
    frame = collect(config, eval_root)
    summary = summarize(Results(config, frame), read_searches(config, tuning_root))
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_summary(summary, out_summary)
    return frame


def _stats(group: pd.DataFrame) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "mse": float(group["mse"].mean()),
        "mae": float(group["mae"].mean()),
        "ssim": float(group["ssim"].mean()),
        "n_seeds": len(group),
    }
    if len(group) > 1:
        stats["mse_std"] = float(group["mse"].std(ddof=1))
        stats["mae_std"] = float(group["mae"].std(ddof=1))
    return stats


def gain(distilled: Mapping[str, float], none: Mapping[str, float] | None,
         teacher: Mapping[str, float] | None) -> dict[str, float]:
    """``mse_change_pct``, ``mae_change_pct``, ``ssim_change``, ``gap_closed`` (see above)."""
    out: dict[str, float] = {}
    if none is None:
        return out
    for metric in ("mse", "mae"):
        if none[metric] != 0:
            out[f"{metric}_change_pct"] = 100.0 * (distilled[metric] - none[metric]) / none[metric]
    out["ssim_change"] = distilled["ssim"] - none["ssim"]
    if teacher is not None and none["mse"] != teacher["mse"]:
        out["gap_closed"] = (none["mse"] - distilled["mse"]) / (none["mse"] - teacher["mse"])
    return out


def paired(treated: pd.DataFrame, baseline: pd.DataFrame, prefix: str = "") -> dict[str, Any]:
    """The paired % change of test MSE of the runs ``treated`` against ``baseline``
    (rows of one student, matched by seed): ``{prefix}change_pct``, and with two pairs
    or more ``{prefix}low_pct``/``{prefix}high_pct``; ``n_pairs``. Empty without a pair."""
    a, b = (runs.drop_duplicates("seed").set_index("seed")["mse"]
            for runs in (treated, baseline))
    seeds = a.index.intersection(b.index)
    if not len(seeds) or not ((a[seeds] > 0).all() and (b[seeds] > 0).all()):
        return {}
    change = paired_change(a[seeds].to_numpy(), b[seeds].to_numpy())
    out: dict[str, Any] = {"n_pairs": change.n_pairs, f"{prefix}change_pct": change.change_pct}
    if change.has_interval:
        out |= {f"{prefix}low_pct": change.low_pct, f"{prefix}high_pct": change.high_pct}
    return out


def _comparisons(results: Results, dataset: str, runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The answers of :data:`QUESTIONS` that ``runs`` (one student's ok runs) allow."""
    first = {}
    for key in results.settings_of(dataset):
        first.setdefault(results.method(key), key)
    out = []
    for treated, baseline in QUESTIONS:
        if treated in first and baseline in first:
            keys = {"treated": first[treated], "baseline": first[baseline]}
            answer = paired(runs[runs["bands"] == keys["treated"]],
                            runs[runs["bands"] == keys["baseline"]])
            if answer:
                out.append(keys | answer)
    return out


def read_searches(
    config: Mapping[str, Any], tuning_root: str | Path | None
) -> dict[str, dict[str, Any]]:
    """The tuning files of the config's tuned settings, by dataset and band key, as
    summary.json's ``tuning`` holds them."""
    searches: dict[str, dict[str, Any]] = {}
    for dataset in config["datasets"]:
        for key in tuned_settings(config, dataset):
            if tuning_root is None:
                raise SdkdError(f"band setting {key!r} of {dataset!r} is tuned: give the "
                                "folder of the tuning files (--tuning-root results/tuning)")
            path = Path(tuning_root) / tuning_file(dataset, key).removeprefix("tuning/")
            doc = read_tuning(path, config, dataset, key)
            searches.setdefault(dataset, {})[key] = {
                "student": doc["student"], "seed": doc["seed"],
                "points": [{k: p[k] for k in ("point", "values", "val_mse")}
                           for p in doc["points"]],
                "chosen": doc["chosen"],
            }
    return searches


def summarize(
    results: Results, searches: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The summary.json object of the results of a config (see the module docstring);
    ``searches`` (:func:`read_searches`) are the tuning stage's, by dataset."""
    frame = results.frame
    counts = frame["status"].value_counts()
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "runs": {"expected": len(frame), **{s: int(counts.get(s, 0)) for s in STATUSES}},
        "consistency": [finding.as_dict() for finding in results.findings()],
        "datasets": {},
    }
    for dataset in results.config["datasets"]:
        # per dataset: a dataset may run only some settings, its own baseline among them
        none_key = results.none_key(dataset)
        entry: dict[str, Any] = {}
        teacher_rows = results.runs(dataset, "teacher", ok=True)
        teacher = None
        if len(teacher_rows):
            teacher = {m: float(teacher_rows[m].mean()) for m in ("mse", "mae", "ssim")}
            entry["teacher"] = teacher
        students: dict[str, Any] = {}
        for model in results.students_of(dataset):
            mine = results.runs(dataset, "student", model, ok=True)
            block: dict[str, Any] = {}
            none = None
            if none_key is not None and (mine["bands"] == none_key).any():
                none = _stats(mine[mine["bands"] == none_key])
                block["none"] = none
            settings: dict[str, Any] = {}
            for key, group in mine[mine["setting"] != "none"].groupby("bands", sort=False):
                stats = _stats(group)
                settings[key] = stats | gain(stats, none, teacher)
                if none is not None:
                    settings[key] |= paired(group, mine[mine["bands"] == none_key], "mse_paired_")
            best = results.best(dataset, model)
            if best is not None:
                block["best"] = {"bands": best, **settings[best]}
                block["settings"] = settings
            if comparisons := _comparisons(results, dataset, mine):
                block["comparisons"] = comparisons
            students[model] = block
        entry["students"] = students
        if searches and dataset in searches:
            entry["tuning"] = dict(searches[dataset])
        summary["datasets"][dataset] = entry
    return summary


# summary.json as summarize writes it (the module docstring), so that what reads it
# (the page, the README block) may index it without checking types again.
_NUMBERS = {"type": "object", "additionalProperties": {"type": "number"}}
_STATS = {"type": "object", "required": ["mse", "mae", "ssim", "n_seeds"],
          "properties": {"n_seeds": {"type": "integer", "minimum": 1}},
          "additionalProperties": {"type": "number"}}
_BEST = {**_STATS, "required": [*_STATS["required"], "bands"],
         "properties": {**_STATS["properties"], "bands": {"type": "string"}}}
_COMPARISON = {"type": "object", "required": ["treated", "baseline", "n_pairs", "change_pct"],
               "properties": {"treated": {"type": "string"}, "baseline": {"type": "string"},
                              "n_pairs": {"type": "integer", "minimum": 1}},
               "additionalProperties": {"type": "number"}}
_POINT = {"type": "object", "required": ["point", "values", "val_mse"],
          "properties": {"point": {"type": "integer", "minimum": 0},
                         "values": {"type": "object"}, "val_mse": {"type": "number"}}}
_SEARCH = {"type": "object", "required": ["student", "seed", "points", "chosen"],
           "properties": {"student": {"type": "string"}, "seed": {"type": "integer"},
                          "points": {"type": "array", "minItems": 1, "items": _POINT},
                          "chosen": _POINT}}
_FINDING = {"type": "object", "required": ["dataset", "run", "run_id", "check", "message"],
            "additionalProperties": False,
            "properties": {key: {"type": "string"}
                           for key in ("dataset", "run", "run_id", "check", "message")}}
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "runs", "consistency", "datasets"],
    "properties": {
        "schema_version": {"type": "integer"},
        "runs": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "consistency": {"type": "array", "items": _FINDING},
        "datasets": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["students"], "additionalProperties": False,
            "properties": {
                "teacher": {**_NUMBERS, "required": ["mse", "mae", "ssim"]},
                "students": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"none": _STATS, "best": _BEST, "settings": {
                        "type": "object", "additionalProperties": _STATS},
                        "comparisons": {"type": "array", "items": _COMPARISON}}}},
                "tuning": {"type": "object", "additionalProperties": _SEARCH},
            }}},
    },
}


def read_summary(path: str | Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Read a summary.json of :func:`write_summary` made for ``config``.

    Raises:
        SdkdError: naming ``path`` and the first key that is not as :func:`summarize`
            writes it (another schema version, a wrong type, a band setting the dataset
            does not run).
    """
    path = Path(path)
    doc = read_json(path, what="summary", hint="run `sdkd aggregate` first")
    if isinstance(doc, dict) and doc.get("schema_version") != SCHEMA_VERSION:
        raise SdkdError(f"{path}: schema_version is {shown(doc.get('schema_version'))}, "
                        f"expected {SCHEMA_VERSION}; run `sdkd aggregate` again")
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SUMMARY_SCHEMA).iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "the top level"
        raise SdkdError(f"{path}: {where} is {shown(error.instance)}, not as `sdkd "
                        f"aggregate` writes it ({error.validator} {shown(error.validator_value)});"
                        " run `sdkd aggregate` again")
    for dataset, entry in doc["datasets"].items():
        if dataset not in config["datasets"]:
            continue
        runs = set(dataset_settings(config, dataset))
        for student, block in entry["students"].items():
            named = [*block.get("settings", {}), block.get("best", {}).get("bands"),
                     *(c[side] for c in block.get("comparisons", ())
                       for side in ("treated", "baseline"))]
            unknown = [key for key in named if key is not None and key not in runs]
            if unknown:
                raise SdkdError(f"{path}: datasets.{dataset}.students.{student} names band "
                                f"setting {shown(unknown[0])}, which {dataset} does not run "
                                "in this config; run `sdkd aggregate` again")
    return doc


def write_summary(summary: Mapping[str, Any], path: str | Path) -> None:
    """Write ``summary`` as JSON atomically (no NaN or Infinity: strict JSON)."""
    write_json(path, summary, indent=2, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read a metrics.csv written by :func:`aggregate` (teacher ``bands`` → ``None``).

    The per-channel columns (``mse[<channel>]``, …) are read as numbers too.

    Raises:
        SdkdError: naming ``path`` (and the line) when it is not such a table: too large
            or unreadable, a column lacking, an unknown status or role, a seed that is not
            an integer, a number column holding text, an ``ok`` run without its metrics
            or evaluation file, or a run listed twice.
    """
    path = Path(path)
    # names and run ids as text: a hex run id of digits only would lose its leading zeros
    frame = read_csv(path, what="metrics table", hint="run `sdkd aggregate` first",
                     dtype={c: "object" for c in COLUMNS if c not in NUMBER_COLUMNS},
                     required=COLUMNS)
    frame = _none_for_teacher(frame)
    for column in ("run_id", "note"):
        frame[column] = frame[column].astype(object).fillna("")
    for column, allowed in (("status", STATUSES), ("role", ("teacher", "student"))):
        bad = ~frame[column].isin(allowed)
        if bad.any():
            raise SdkdError(f"{path}: line {first_marked_line(bad)}: unknown {column} "
                            f"{shown(frame[column][bad].iloc[0])} (expected "
                            f"{', '.join(allowed)})")
    for column in (*NUMBER_COLUMNS, *filter(column_channel, frame.columns)):
        frame[column] = numbers(frame, column, path)
    seeds = frame["seed"]
    checks = (
        (seeds.isna() | (seeds != seeds.round()) | (seeds < 0), "seed is not an integer ≥ 0"),
        ((frame["status"] == "ok") & frame[[*METRICS, "eval_path"]].isna().any(axis=1),
         "an ok run without all its metrics and its eval_path"),
        (frame.assign(bands=frame["bands"].fillna("")).duplicated(
            ["dataset", "model", "bands", "seed"]), "a run listed twice"),
    )
    for bad, problem in checks:
        if bad.any():
            raise SdkdError(f"{path}: line {first_marked_line(bad)}: {problem}")
    frame["seed"] = seeds.astype(int)
    return frame
