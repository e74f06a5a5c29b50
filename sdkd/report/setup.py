"""The page's Setup section: how the results were made (settings, data, software, devices)."""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from sdkd.plan import band_setting, dataset_settings
from sdkd.report.fmt import DASH, fmt_duration, plural
from sdkd.report.provenance import git_commit, package_versions
from sdkd.report.tables import html_table

# What each method is, and whose: the SDKD paper's (as its abstract states it), our
# reading or extension of it, or a baseline.
METHOD_ORIGIN = {
    "none": "baseline: the ground truth alone",
    "sdkd_latent": "the paper's method as stated: teacher-latent bands",
    "decoupled": "our reading of the paper: low band ← attention path, high ← conv path",
    "dual": "our extension: latent and forecast bands",
    "multi": "our extension: K latent and forecast bands",
    "low": "ablation: dual's low band alone",
    "high": "ablation: dual's high band alone",
    "output": "baseline: response (forecast) distillation",
    "fitnet": "baseline: FitNets hint (whole latent)",
}


def _band_settings(config: Mapping[str, Any]) -> Markup:
    rows = []
    datasets = list(config["datasets"])
    for key in config["distill"]["settings"]:
        bs = band_setting(config["distill"], key)
        # datasets may run a subset of the settings: say which run this one
        runs_it = [d for d in datasets if key in dataset_settings(config, d)]
        rows.append({
            "bands": bs.key, "method": bs.setting, "what it is": METHOD_ORIGIN[bs.setting],
            "cutoffs": ", ".join(f"{c:g}" for c in bs.cutoffs) if bs.cutoffs else DASH,
            "weights": ", ".join(f"{w:g}" for w in bs.weights) if bs.weights else DASH,
            "teacher features": ", ".join(bs.features) if bs.features else
                                ("latent" if bs.setting not in ("none", "output") else DASH),
            "λ (KD weight)": f"{bs.lam:g}", "latent weight": f"{bs.latent_weight:g}",
            "output weight": f"{bs.output_weight:g}",
            "normalised bands": "yes" if bs.normalize_bands else "no",
            "standardised latents": "yes" if bs.standardize_latents else "no",
            "seeds": ", ".join(str(s) for s in bs.seeds),
            # the tuning stage's choice replaces these keys' values (Datasets: the search)
            "tuned on validation": ", ".join(sorted(bs.tune)) if bs.tune else DASH,
            "datasets": ", ".join(runs_it) or DASH,
        })
    frame = pd.DataFrame(rows)
    return html_table(frame, "band-settings",
                      numeric=["cutoffs", "weights", "λ (KD weight)", "output weight", "seeds"])


def _provenance_table(infos: Sequence[Mapping[str, str]]) -> Markup:
    """One column per data file, one row per attribute."""
    fields = {"source": "source", "raw_sha256": "raw file SHA-256", "channels": "channels",
              "splits": "splits (N×T×C×H×W)", "dt": "dt", "dx": "dx",
              "in_steps": "frames in", "out_steps": "frames out",
              "window_stride": "window stride", "mean": "mean (train)", "std": "std (train)",
              "created_with": "created with", "file": "file", "size": "size"}
    columns = {"attribute": list(fields.values())}
    for i, info in enumerate(infos):
        name = info.get("dataset", DASH)
        name = name if name not in columns else f"{name} ({i + 1})"
        columns[name] = [info.get(key, DASH) for key in fields]
    frame = pd.DataFrame(columns)
    extra = {name: "value" for name in columns if name != "attribute"}
    return html_table(frame, "provenance", extra=extra)


def _devices(table: pd.DataFrame) -> list[str]:
    """'cuda:0 (NVIDIA H100): inference in 4 runs, training in 4 runs' per device."""
    ok = table[table["status"] == "ok"]
    uses: dict[str, list[str]] = {}
    for column, use in (("inference_device", "inference"), ("train_device", "training")):
        for device, n in ok[column].dropna().astype(str).value_counts().items():
            uses.setdefault(device, []).append(f"{use} in {plural(int(n), 'run')}")
    return [f"{device}: {', '.join(what)}" for device, what in uses.items()]


def setup_section(
    config: Mapping[str, Any], table: pd.DataFrame, provenance: Sequence[Mapping[str, str]], *,
    inputs: Mapping[str, str], generated: dt.datetime, config_text: str | None,
    project_dir: str | Path,
) -> dict[str, Any]:
    """What the template's Setup section shows: versions, git commit, platform, devices,
    compute time, band settings, data provenance, the page's ``inputs`` and the config
    (as written, ``config_text``, and resolved). ``table`` is the metrics table."""
    ok = table[table["status"] == "ok"]
    resolved = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False,
                              allow_unicode=True)
    return {
        "versions": package_versions(),
        "git": git_commit(project_dir),
        "platform": platform.platform(),
        "devices": _devices(table),
        "compute": fmt_duration(ok["train_seconds"].astype(float).sum(min_count=1)),
        "compute_runs": int(np.isfinite(ok["train_seconds"].astype(float)).sum()),
        "generated": generated.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)"),
        "inputs": dict(inputs),
        "band_settings": _band_settings(config),
        "band_cutoffs": ", ".join(f"{c:g}" for c in
                                  config.get("evaluate", {}).get("band_cutoffs", [])) or DASH,
        "provenance": _provenance_table(provenance) if provenance else None,
        "config_text": config_text,
        "config_resolved": resolved,
    }
