"""The tuning stage: a band setting's values chosen on the validation split, inside the DAG.

A setting with a ``tune:`` grid (``sdkd.plan.BandSetting.points``) is searched by one
training run per grid point: the dataset's first student, the ``tuning.seed``, the
setting with the point's values (:func:`sdkd.plan.tuning_spec`). Each run's ``done.json``
holds its best validation MSE of the forecast against the ground truth (``best_val``,
in normalised units: the score ``best.pt`` is chosen on). :func:`choose` reads them all
and writes the tuning file ``results/tuning/{dataset}/{bands}.json``::

    {"format_version": 1, "dataset": ..., "bands": ..., "student": ..., "seed": ...,
     "metric": "val_mse", "grid": {key: [candidates]},
     "points": [{"point": 0, "values": {...}, "val_mse": ..., "best_epoch": ...}, ...],
     "chosen": {"point": i, "values": {...}, "val_mse": ...}}

The lowest ``val_mse`` wins; a tie goes to the earlier point. :func:`read_choice` gives
the chosen values to the setting's runs of every student and seed, after checking that
the file belongs to this dataset, setting and grid. The seed of the search is not one of
the compared runs' seeds (the schema's default keeps them apart), so no reported test
figure comes from a run the choice was made on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdkd.errors import SdkdError
from sdkd.jsonfile import read_json, shown, write_json
from sdkd.plan import band_setting, canonical_json, tuning_runs, tuning_spec

FORMAT_VERSION = 1
METRIC = "val_mse"


def _points(config: Mapping[str, Any], dataset: str, bands: str) -> list[dict[str, Any]]:
    runs = [r for r in tuning_runs(config) if r["dataset"] == dataset and r["bands"] == bands]
    if not runs:
        raise SdkdError(f"band setting {bands!r} of dataset {dataset!r} has no tuning grid "
                        "(no `tune:` in distill.settings, or the dataset does not run it)")
    return runs


def choose(
    config: Mapping[str, Any], dataset: str, bands: str, results_root: str | Path,
    out: str | Path,
) -> dict[str, Any]:
    """Read every tuning run of ``bands`` on ``dataset`` under ``results_root`` (the
    folder holding ``tuning/``), pick the lowest validation MSE and write the tuning file
    ``out`` atomically; return its content.

    Raises:
        SdkdError: a run is unfinished, was trained for another spec, or no run reached a
            finite validation MSE.
    """
    runs = _points(config, dataset, bands)
    points = []
    for run in runs:
        done_path = Path(results_root) / run["run_dir"] / "done.json"
        done = read_json(done_path, what="tuning run summary",
                         hint="run its tune_point job first")
        spec = tuning_spec(config, dataset, bands, run["point"])
        stored = done.get("identity", {}).get("spec") if isinstance(done, dict) else None
        if stored is None or canonical_json(stored) != canonical_json(spec):
            raise SdkdError(f"{done_path}: trained for another spec than tuning point "
                            f"{run['point']} of {bands!r}; rerun that tuning run")
        score = done.get("best_val")
        if not isinstance(score, int | float):
            raise SdkdError(f"{done_path}: best_val is {shown(score)}, not a number")
        points.append({"point": run["point"], "values": run["values"], METRIC: float(score),
                       "best_epoch": done.get("best_epoch")})
    finite = [p for p in points if math.isfinite(p[METRIC])]
    if not finite:
        raise SdkdError(f"no tuning run of {bands!r} on {dataset!r} reached a finite "
                        "validation MSE; widen or change its tune: grid")
    best = min(finite, key=lambda p: (p[METRIC], p["point"]))
    doc = {
        "format_version": FORMAT_VERSION, "dataset": dataset, "bands": bands,
        "student": runs[0]["student"], "seed": runs[0]["seed"], "metric": METRIC,
        "grid": band_setting(config["distill"], bands).tune, "points": points,
        "chosen": {"point": best["point"], "values": best["values"], METRIC: best[METRIC]},
    }
    write_json(out, doc, indent=1)
    return doc


def read_tuning(
    path: str | Path, config: Mapping[str, Any], dataset: str, bands: str
) -> dict[str, Any]:
    """The tuning file of ``bands`` on ``dataset``, checked against the config: same
    dataset, setting and grid, and a chosen point that is one of the grid's."""
    doc = read_json(path, what="tuning file", hint="run the tune job first")
    setting = band_setting(config["distill"], bands)
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise SdkdError(f"{path}: not a tuning file of format {FORMAT_VERSION}")
    if (doc.get("dataset"), doc.get("bands")) != (dataset, bands):
        raise SdkdError(f"{path}: the tuning file of {shown(doc.get('bands'))} on "
                        f"{shown(doc.get('dataset'))}, not of {bands!r} on {dataset!r}")
    if canonical_json(doc.get("grid")) != canonical_json(setting.tune):
        raise SdkdError(f"{path}: searched another grid than distill.settings.{bands}.tune; "
                        "rerun the tune job")
    chosen = doc.get("chosen")
    points = setting.points()
    point = chosen.get("point") if isinstance(chosen, dict) else None
    if (not isinstance(point, int) or not 0 <= point < len(points)
            or canonical_json(chosen.get("values")) != canonical_json(points[point])):
        raise SdkdError(f"{path}: the chosen point {shown(chosen)} is not a point of the grid")
    return doc


def read_choice(
    path: str | Path, config: Mapping[str, Any], dataset: str, bands: str
) -> dict[str, Any]:
    """The values the tuning stage chose for ``bands`` on ``dataset`` (:func:`read_tuning`)."""
    return read_tuning(path, config, dataset, bands)["chosen"]["values"]
