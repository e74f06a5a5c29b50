"""The report: ``results/report.html``, one self-contained page.

:func:`render_report` reads what the earlier steps wrote and renders the Jinja2 template
``templates/report.html.j2`` into a single HTML file that opens offline in any browser:
every figure is embedded as a ``data:image/png;base64`` URI, the CSS is inline, there is
no script (except the optional self-check of ``debug_checks``) and no external URL in
any ``src`` or ``href``.

Inputs
======

- ``metrics.csv`` and ``summary.json`` of :mod:`sdkd.report.aggregate`;
- the figures folder of :mod:`sdkd.report.figures` with its ``figures.json`` manifest;
- the canonical HDF5 file of each dataset (DESIGN.md), for the data provenance;
- optionally the config file's text (shown as written, comments included);
- the evaluation files named in ``metrics.csv`` (column ``eval_path``), read for their
  per-band errors only; a file that cannot be read leaves that band table out with a
  note, it never stops the report.

The page
========

1. **Header**: title, generation time, how many runs are ok, and a reading guide.
2. **Summary** (``id="summary"``): per dataset a verdict per student computed from the
   numbers, and a table of the teacher vs the plain student (the ``none`` setting) vs
   the best distilled setting (lowest mean test MSE): MSE, MAE, SSIM, % change vs the
   plain student with its spread over seeds, the fraction of the plain-to-teacher gap
   closed, and parameters. Then the figures over all datasets (``dataset`` null in the
   manifest).
3. **One section per dataset** (``id="dataset-<name>"``): the full metrics table (one
   row per expected run; missing and invalid runs marked, with the reason), the
   efficiency table (each cost with the device it was measured on), the error per
   frequency band (where in the spectrum distillation helps), and every figure of that
   dataset with its title and caption.
4. **Setup** (``id="setup"``): band settings, data provenance (HDF5 attributes incl.
   ``raw_sha256``), versions of sdkd, torch, snakemake, dvc and python, git commit,
   devices, compute time, generation time, inputs, and the config.

Numbers
=======

Headline numbers come from ``summary.json`` (the same numbers ``dvc metrics show``
prints; they are means over the ``ok`` seeds of ``metrics.csv``). Metrics are written by
:func:`fmt_metric` (4 significant digits; SSIM 4 decimals; PSNR 2), changes by
:func:`fmt_pct`. The spread of a % change is the sample standard deviation over seeds
of the distilled MSE, relative to the plain student's mean MSE: ``100 · sd / mean_none``.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.metadata
import itertools
import json
import math
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup
from pandas.io.formats.style import Styler

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.jsonfile import read_json
from sdkd.plan import dataset_settings, dataset_students
from sdkd.report.aggregate import (
    InvalidEvaluation,
    band_errors,
    baseline_key,
    load_evaluation,
    read_metrics,
    run_label,
)
from sdkd.report.figures import MANIFEST

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Packages whose versions the setup lists ("not installed" when absent).
VERSIONED = ("sdkd", "torch", "snakemake", "dvc", "numpy", "pandas", "h5py", "matplotlib")
# Band methods that align frequency bands (the others are KD baselines or none).
FREQUENCY_METHODS = ("low", "high", "dual", "multi")
DASH = "—"
SPLITS = ("train", "val", "test")


# ---- number formatting (the tests format their expectations with these) ---------------


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_metric(name: str, value: Any) -> str:
    """A metric value as shown in the tables: SSIM 4 decimals, PSNR 2, others 4 digits."""
    if not _finite(value):
        return DASH
    value = float(value)
    if name == "ssim":
        return f"{value:.4f}"
    if name == "psnr":
        return f"{value:.2f}"
    return f"{value:.4g}"


def fmt_pct(value: Any, spread: Any = None) -> str:
    """A signed % change (``-52.6 %``), with ``± spread`` when one is given."""
    if not _finite(value):
        return DASH
    text = f"{float(value):+.1f} %"
    if _finite(spread):
        text += f" ± {float(spread):.1f}"
    return text


def fmt_si(value: Any, digits: int = 3) -> str:
    """A count with an SI prefix: ``60 k``, ``1.5 M``, ``192 M``, ``3.1 G``."""
    if not _finite(value):
        return DASH
    value = float(value)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}"
    return f"{value:.{digits}g}"


def fmt_duration(seconds: Any) -> str:
    """Seconds as ``12.3 s``, ``4.5 min`` or ``2.1 h``."""
    if not _finite(seconds):
        return DASH
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ---- inputs -----------------------------------------------------------------------------


def _read_summary(path: Path) -> dict[str, Any]:
    doc = read_json(path, what="summary", hint="run `sdkd aggregate` first")
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
        raise SdkdError(f"{path}: not a summary.json of `sdkd aggregate` (no `datasets` object)")
    if doc.get("schema_version") != 1:
        raise SdkdError(
            f"{path}: schema_version is {doc.get('schema_version')!r}, expected 1"
        )
    return doc


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _read_figures(figures_dir: Path) -> list[dict[str, Any]]:
    """The manifest's entries, each with its PNG embedded (``src``, ``width``, ``height``)."""
    path = figures_dir / MANIFEST
    manifest = read_json(path, what="figure manifest", hint="run `sdkd figures` first")
    if not isinstance(manifest, list):
        raise SdkdError(f"{path}: expected a JSON list of figures, got {type(manifest).__name__}")
    figures = []
    for i, entry in enumerate(manifest):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise SdkdError(f"{path}: entry {i} has no `file` name")
        name = entry["file"]
        if Path(name).name != name:
            raise SdkdError(f"{path}: entry {i}: file {name!r} is not a plain file name")
        png = figures_dir / name
        try:
            data = png.read_bytes()
        except FileNotFoundError:
            raise SdkdError(f"{png}: listed in {path} but does not exist") from None
        except OSError as exc:
            raise SdkdError(f"{png}: cannot read ({exc.strerror or exc})") from None
        size = _png_size(data)
        if size is None:
            raise SdkdError(f"{png}: not a PNG image (listed in {path})")
        dataset = entry.get("dataset")
        figures.append({
            "file": name,
            "id": "fig-" + re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem),
            "dataset": dataset if isinstance(dataset, str) else None,
            "kind": str(entry.get("kind") or ""),
            "title": str(entry.get("title") or name),
            "caption": str(entry.get("caption") or ""),
            "placeholder": bool(entry.get("placeholder", False)),
            "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "width": size[0],
            "height": size[1],
        })
    return figures


def _attr(value: Any) -> str:
    """An HDF5 attribute as text (arrays joined with commas, floats 6 digits)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return ", ".join(_attr(v) for v in value.tolist())
    if isinstance(value, list | tuple):
        return ", ".join(_attr(v) for v in value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def read_provenance(path: str | Path) -> dict[str, str]:
    """The provenance of one canonical HDF5 file: its attributes and split shapes.

    Raises:
        SdkdError: when the file does not exist or is not a readable HDF5 file.
    """
    path = Path(path)
    if not path.is_file():
        raise SdkdError(f"{path}: data file not found")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            shapes = {}
            for split in SPLITS:
                node = f.get(f"{split}/frames")
                shapes[split] = ("×".join(str(n) for n in node.shape)
                                 if isinstance(node, h5py.Dataset) else "absent")
    except OSError as exc:
        raise SdkdError(f"{path}: not a readable HDF5 file ({exc})") from None
    info = {"file": str(path), "size": fmt_si(path.stat().st_size) + "B"}
    for key in ("dataset", "source", "raw_sha256", "channels", "mean", "std", "in_steps",
                "out_steps", "window_stride", "dt", "dx", "created_with"):
        info[key] = _attr(attrs[key]) if key in attrs else DASH
    info["splits"] = "; ".join(f"{s} {shapes[s]}" for s in SPLITS)
    return info


def package_versions(names: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Installed version of each distribution ("not installed" when absent), plus python."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = f"{platform.python_version()} ({platform.python_implementation()})"
    return versions


def git_commit(project_dir: str | Path) -> str:
    """``git rev-parse HEAD`` in ``project_dir`` (marked when tracked files are modified);
    "unknown" when it is not a git work tree or git is not installed."""
    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "--no-optional-locks", *args], cwd=project_dir,
                                  capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    commit = head.stdout.strip()
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is not None and status.returncode == 0 and status.stdout.strip():
        commit += " (with uncommitted changes)"
    return commit


# ---- tables -----------------------------------------------------------------------------


def _table(frame: pd.DataFrame, table_id: str, *, numeric: Iterable[str] = (),
           row_status: Sequence[str] | None = None, status_column: str | None = None,
           extra: Mapping[str, str] | None = None) -> Markup:
    """A pandas table (every cell already a string) as HTML with CSS classes per cell.

    ``row_status`` marks whole rows (``missing``, ``invalid``, ``partial``); cells of
    ``status_column`` get ``status status-<value>``; ``extra`` adds classes per column.
    """
    numeric = set(numeric)
    extra = dict(extra or {})
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for column in frame.columns:
        base = "num" if column in numeric else "txt"
        classes[column] = f"{base} {extra.get(column, '')}".strip()
    if status_column is not None:
        classes[status_column] = [f"{c} status status-{v}" for c, v in
                                  zip(classes[status_column], frame[status_column], strict=True)]
    if row_status is not None:
        for i, status in enumerate(row_status):
            if status and status != "ok":
                classes.iloc[i] = classes.iloc[i] + f" row-{status}"
    styler = (Styler(frame, uuid=table_id, cell_ids=False)
              .hide(axis="index").set_td_classes(classes).format(escape="html"))
    text = styler.to_html(table_attributes='class="tbl"')
    text = re.sub(r'<style type="text/css">\s*</style>\s*', "", text)
    for j, column in enumerate(frame.columns):
        if column in numeric:
            text = re.sub(f'class="col_heading (level[0-9]+) col{j}"( >|>)',
                          f'class="col_heading \\1 col{j} num"\\2', text)
    return Markup(f'<div class="scroll">{text.strip()}</div>')


def stat_text(stats: Mapping[str, Any] | None, metric: str) -> str:
    """Mean with ``± sd`` when the summary has a spread for it."""
    if not stats or metric not in stats:
        return DASH
    text = fmt_metric(metric, stats[metric])
    spread = stats.get(f"{metric}_std")
    if _finite(spread):
        text += f" ± {float(spread):.2g}"
    return text


def _spread_pct(stats: Mapping[str, Any], none: Mapping[str, Any], metric: str) -> float | None:
    """Spread over seeds of a % change: 100 · sd(distilled) / mean(plain)."""
    sd = stats.get(f"{metric}_std")
    if _finite(sd) and _finite(none.get(metric)) and none[metric] != 0:
        return 100.0 * float(sd) / abs(float(none[metric]))
    return None


class _Dataset:
    """Everything the page shows of one dataset."""

    def __init__(self, name: str, config: Mapping[str, Any], table: pd.DataFrame,
                 summary: Mapping[str, Any]) -> None:
        self.name = name
        self.teacher = config["models"]["teacher"]
        # a dataset may run a subset of the students and settings (sdkd.plan)
        self.students = [str(s) for s in dataset_students(config, name)]
        self.settings = [str(s) for s in dataset_settings(config, name)]
        self.rows = table[table["dataset"] == name]
        self.ok = self.rows[self.rows["status"] == "ok"]
        self.entry = summary.get("datasets", {}).get(name, {})
        self.none_key = baseline_key(self.rows)
        self.methods = {str(b): str(s) for b, s in
                        zip(table["bands"], table["setting"], strict=True) if b is not None}

    # ---- helpers

    def runs(self, model: str, bands: str | None = None, ok: bool = False) -> pd.DataFrame:
        rows = self.ok if ok else self.rows
        rows = rows[rows["model"] == model]
        if bands is not None:
            rows = rows[rows["bands"] == bands]
        return rows

    def seeds_text(self, model: str, bands: str | None) -> tuple[str, str]:
        """('1 of 2', row status) for a model/bands group."""
        rows = self.runs(model, bands)
        n_ok = int((rows["status"] == "ok").sum())
        status = "ok" if n_ok == len(rows) else ("partial" if n_ok else
                                                 _group_status(rows["status"]))
        return f"{n_ok} of {len(rows)}", status

    def mean(self, model: str, column: str, bands: str | None = None) -> float:
        values = self.runs(model, bands, ok=True)[column]
        values = values[np.isfinite(values.astype(float))]
        return float(values.mean()) if len(values) else math.nan

    def label(self, bands: str) -> str:
        method = self.methods.get(bands, bands)
        return bands if method == bands else f"{bands} ({method})"

    # ---- the summary table

    def summary_table(self) -> Markup:
        columns = ["model", "trained as", "seeds ok", "MSE", "MAE", "SSIM", "MSE vs plain",
                   "MAE vs plain", "gap closed", "parameters"]
        rows, status = [], []
        teacher = self.entry.get("teacher")
        seeds, state = self.seeds_text(self.teacher, None)
        rows.append(self._summary_row(self.teacher, "teacher", seeds, teacher, None,
                                      self.mean(self.teacher, "parameters")))
        status.append(state if teacher else _group_status(self.runs(self.teacher)["status"]))
        for student in self.students:
            block = self.entry.get("students", {}).get(student, {})
            none, best = block.get("none"), block.get("best")
            params = self.mean(student, "parameters")
            if self.none_key is not None:
                seeds, state = self.seeds_text(student, self.none_key)
                rows.append(self._summary_row(student, f"{self.none_key} (plain)",
                                              seeds, none, None, params))
                status.append(state if none else
                              _group_status(self.runs(student, self.none_key)["status"]))
            if best:
                seeds, state = self.seeds_text(student, best["bands"])
                rows.append(self._summary_row(
                    student, f"{self.label(best['bands'])} (best)", seeds, best,
                    none, params))
                status.append(state)
            else:
                distilled = self.rows[(self.rows["model"] == student)
                                      & (self.rows["setting"] != "none")
                                      & (self.rows["role"] == "student")]
                state = _group_status(distilled["status"])
                rows.append(self._summary_row(student, "distilled (best)", f"0 of {len(distilled)}",
                                              None, None, params, state))
                status.append(state)
        frame = pd.DataFrame(rows, columns=columns)
        return _table(frame, f"summary-{self.name}", row_status=status,
                      numeric=columns[2:])

    def _summary_row(self, model: str, trained: str, seeds: str,
                     stats: Mapping[str, Any] | None, none: Mapping[str, Any] | None,
                     params: float, missing: str = "missing") -> list[str]:
        if not stats:
            return [model, trained, seeds, missing, DASH, DASH, DASH, DASH, DASH,
                    fmt_si(params)]
        change = {m: DASH for m in ("mse", "mae")}
        gap = DASH
        if none:
            for metric in change:
                change[metric] = fmt_pct(stats.get(f"{metric}_change_pct"),
                                         _spread_pct(stats, none, metric))
            if _finite(stats.get("gap_closed")):
                gap = f"{100 * float(stats['gap_closed']):.0f} %"
        return [model, trained, seeds, stat_text(stats, "mse"), stat_text(stats, "mae"),
                fmt_metric("ssim", stats.get("ssim")), change["mse"], change["mae"], gap,
                fmt_si(params)]

    # ---- verdicts

    def verdicts(self, bands: Mapping[str, Any] | None) -> list[dict[str, str]]:
        """One sentence per student, from the summary numbers; tone good/bad/neutral."""
        out = []
        teacher = self.entry.get("teacher")
        for student in self.students:
            block = self.entry.get("students", {}).get(student, {})
            text, tone = self._verdict(student, block, teacher)
            extra = [self._cost(student)]
            if bands is not None and block.get("best") and block.get("none"):
                extra.append(_band_sentence(bands, student, block["best"]["bands"],
                                            self.none_key))
            text = " ".join([text, *[e for e in extra if e]])
            out.append({"student": student, "text": text, "tone": tone})
        if not self.students:
            out.append({"student": "", "text": "The config lists no student.", "tone": "neutral"})
        return out

    def _verdict(self, student: str, block: Mapping[str, Any],
                 teacher: Mapping[str, Any] | None) -> tuple[str, str]:
        none, best, settings = block.get("none"), block.get("best"), block.get("settings", {})
        if not none and not best:
            return "no run is ok yet, nothing to compare.", "neutral"
        if self.none_key is None:
            return (f"{self.name} runs no plain-student setting (method none), so the effect of "
                    "distillation cannot be measured.", "neutral")
        if not none:
            return (f"the plain-student baseline ({self.none_key or 'none'}) is "
                    "missing, so the effect of distillation cannot be measured.", "neutral")
        if not best:
            return (f"no distilled run is ok yet; the plain student reaches MSE "
                    f"{fmt_metric('mse', none['mse'])}.", "neutral")
        change = best.get("mse_change_pct")
        if not _finite(change):
            return "the plain student's MSE is 0; no % change.", "neutral"
        change = float(change)
        key = best["bands"]
        spreads = [s for s in (_spread_pct(best, none, "mse"), _spread_pct(none, none, "mse"))
                   if s is not None]
        n_best, n_none = int(best.get("n_seeds", 1)), int(none.get("n_seeds", 1))
        seeds = (_plural(n_best, "seed") if n_best == n_none
                 else f"{_plural(n_best, 'seed')} vs {n_none}")
        spread = _spread_pct(best, none, "mse")
        seeds += f", ± {spread:.1f} %" if spread is not None else ""
        noise = bool(spreads) and abs(change) <= max(spreads)
        if change < 0:
            text = (f"{self.label(key)} lowers the test MSE by {-change:.1f} % vs "
                    f"the plain {student} ({seeds})")
            tone = "good"
        else:
            text = (f"distillation does not help: the best setting, "
                    f"{self.label(key)}, raises the test MSE by {change:.1f} % vs the plain "
                    f"{student} ({seeds})")
            tone = "bad"
        if noise:
            text += ", within the spread over seeds, so not a clear difference"
            tone = "neutral"
        if teacher and _finite(teacher.get("mse")) and best["mse"] > 0:
            lead = 100.0 * (best["mse"] - teacher["mse"]) / best["mse"]
            if lead > 0:
                text += f"; the teacher's MSE is still {lead:.1f} % lower"
            else:
                text += f"; it beats the teacher (MSE {-lead:.1f} % lower than the teacher's)"
            if _finite(best.get("gap_closed")):
                text += f" ({100 * best['gap_closed']:.0f} % of the gap closed)"
        text += "."
        if self.methods.get(key) not in FREQUENCY_METHODS:
            freq = {k: v for k, v in settings.items() if self.methods.get(k) in FREQUENCY_METHODS}
            if freq:
                fkey = min(freq, key=lambda k: freq[k]["mse"])
                text += (f" The best setting is a non-frequency baseline; the best "
                         f"frequency-aligned one, {self.label(fkey)}, changes the MSE by "
                         f"{fmt_pct(freq[fkey].get('mse_change_pct'))}.")
        return text, tone

    def _cost(self, student: str) -> str:
        """'Cost: 4.0 % of the teacher's parameters, 4.9× faster inference (cpu).'"""
        parts = []
        p_s, p_t = self.mean(student, "parameters"), self.mean(self.teacher, "parameters")
        if _finite(p_s) and _finite(p_t) and p_t > 0:
            parts.append(f"{100 * p_s / p_t:.1f} % of the teacher's parameters")
        f_s, f_t = (self.mean(student, "flops_per_sample"),
                    self.mean(self.teacher, "flops_per_sample"))
        if _finite(f_s) and _finite(f_t) and f_t > 0:
            parts.append(f"{100 * f_s / f_t:.1f} % of its FLOPs")
        l_s, l_t = self.mean(student, "latency_ms"), self.mean(self.teacher, "latency_ms")
        if _finite(l_s) and _finite(l_t) and l_s > 0:
            devices = sorted(set(self.runs(student, ok=True)["inference_device"].dropna()))
            where = f" on {', '.join(devices)}" if devices else ""
            parts.append(f"{l_t / l_s:.1f}× the teacher's inference speed{where}")
        if not parts:
            return ""
        return f"Cost: {', '.join(parts)}."

    # ---- the full metrics table

    def metrics_table(self) -> Markup:
        variants = any(b != s for b, s in self.methods.items())
        metrics = {"MSE": "mse", "MAE": "mae", "RMSE": "rmse", "rel. L2": "rel_l2",
                   "SSIM": "ssim", "PSNR (dB)": "psnr"}
        rows = []
        for run in self.rows.to_dict("records"):
            teacher = run["role"] == "teacher"
            row = {"model": run["model"], "bands": "teacher" if teacher else run["bands"]}
            if variants:
                row["method"] = DASH if teacher else run["setting"]
            row |= {"seed": str(run["seed"]), "status": run["status"]}
            for label, metric in metrics.items():
                row[label] = fmt_metric(metric, run[metric]) if run["status"] == "ok" else DASH
            row["note"] = str(run["note"] or "")
            rows.append(row)
        frame = pd.DataFrame(rows)
        return _table(frame, f"metrics-{self.name}", numeric=["seed", *metrics],
                      row_status=list(self.rows["status"]), status_column="status",
                      extra={"note": "note"})

    # ---- efficiency

    def efficiency_table(self) -> Markup:
        p_teacher = self.mean(self.teacher, "parameters")
        groups = [(self.teacher, None)]
        for student in self.students:
            keys = self.runs(student)["bands"]
            groups += [(student, key) for key in dict.fromkeys(keys)]
        rows, status = [], []
        for model, key in groups:
            seeds, state = self.seeds_text(model, key)
            ok = self.runs(model, key, ok=True)

            def mean(column: str, ok: pd.DataFrame = ok) -> float:
                values = ok[column].astype(float)
                values = values[np.isfinite(values)]
                return float(values.mean()) if len(values) else math.nan

            def devices(column: str, ok: pd.DataFrame = ok) -> str:
                found = sorted({str(d) for d in ok[column].dropna() if str(d)})
                return ", ".join(found) or DASH

            params = mean("parameters")
            share = (f"{100 * params / p_teacher:.1f} %"
                     if _finite(params) and _finite(p_teacher) and p_teacher > 0 else DASH)
            peak = mean("peak_memory_mb")
            rows.append({
                ("run", "model"): model, ("run", "bands"): "teacher" if key is None else key,
                ("run", "runs ok"): seeds,
                ("size", "parameters"): fmt_si(params), ("size", "vs teacher"): share,
                ("size", "FLOPs"): fmt_si(mean("flops_per_sample")),
                ("inference", "latency (ms)"): _fmt_plain(mean("latency_ms")),
                ("inference", "samples / s"): fmt_si(mean("samples_per_s")),
                ("inference", "device"): devices("inference_device"),
                ("training", "time"): fmt_duration(mean("train_seconds")),
                ("training", "s / epoch"): _fmt_plain(mean("seconds_per_epoch")),
                ("training", "peak MB"): _fmt_plain(peak, 4),
                ("training", "device"): devices("train_device"),
            })
            status.append(state if len(ok) else _group_status(self.runs(model, key)["status"]))
        frame = pd.DataFrame(rows)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        text = {("run", "model"), ("run", "bands"), ("inference", "device"),
                ("training", "device")}
        return _table(frame, f"efficiency-{self.name}",
                      numeric=[c for c in frame.columns if c not in text], row_status=status,
                      extra={("inference", "device"): "device", ("training", "device"): "device"})

    # ---- error per frequency band

    def band_errors(self) -> dict[str, Any] | None:
        """Mean per-band MSE of the teacher and of every (student, bands) group over the
        ok runs whose evaluation file has a usable band section; None when none has."""
        cutoffs: tuple[float, ...] | None = None
        values: dict[tuple[str, str], list[np.ndarray]] = {}
        truth: list[np.ndarray] = []
        skipped = []
        for run in self.ok.to_dict("records"):
            parsed = _read_bands(run)
            if parsed is None:
                skipped.append(run_label(run))
                continue
            cuts, mse, energy = parsed
            if cutoffs is None:
                cutoffs = cuts
            if cuts != cutoffs:
                skipped.append(run_label(run) + " (other cutoffs)")
                continue
            key = (run["model"], "teacher" if run["role"] == "teacher" else run["bands"])
            values.setdefault(key, []).append(mse)
            if energy is not None:
                truth.append(energy)
        if cutoffs is None:
            return None
        return {"cutoffs": cutoffs,
                "mse": {k: np.mean(v, axis=0) for k, v in values.items()},
                "truth": np.mean(truth, axis=0) if truth else None,
                "skipped": skipped}

    def band_table(self, bands: Mapping[str, Any]) -> Markup:
        labels = band_labels(bands["cutoffs"])
        n = len(labels)
        columns: dict[tuple[str, str], list[str]] = {("", "band (cycles / domain)"): labels}
        if bands["truth"] is not None:
            total = float(np.sum(bands["truth"]))
            columns[("", "truth energy")] = [f"{100 * v / total:.1f} %" if total > 0 else DASH
                                             for v in bands["truth"]]
        mse = bands["mse"]
        columns[(self.teacher, "teacher")] = _column(mse.get((self.teacher, "teacher")), n)
        for student in self.students:
            block = self.entry.get("students", {}).get(student, {})
            none = mse.get((student, self.none_key)) if self.none_key else None
            best_key = (block.get("best") or {}).get("bands")
            best = mse.get((student, best_key)) if best_key else None
            if self.none_key is not None:
                columns[(student, self.none_key)] = _column(none, n)
            if best_key:
                columns[(student, best_key)] = _column(best, n)
                change = [DASH] * n
                if none is not None and best is not None:
                    change = [fmt_pct(100 * (b - p) / p) if p > 0 else DASH
                              for p, b in zip(none, best, strict=True)]
                columns[(student, "change")] = change
        frame = pd.DataFrame(columns)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        return _table(frame, f"bands-{self.name}", numeric=list(frame.columns)[1:])


def _fmt_plain(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if _finite(value) else DASH


def _group_status(statuses: pd.Series) -> str:
    """Row status of a group without ok runs: invalid if any is invalid, else missing."""
    values = set(statuses)
    if "ok" in values:
        return "ok" if values == {"ok"} else "partial"
    return "invalid" if "invalid" in values else "missing"


def _column(values: np.ndarray | None, n: int) -> list[str]:
    if values is None:
        return [DASH] * n
    return [fmt_metric("mse", v) for v in values]


def band_labels(cutoffs: Sequence[float]) -> list[str]:
    """``k < 4``, ``4 ≤ k < 8``, ``k ≥ 8`` for cutoffs (4, 8)."""
    cuts = [f"{c:g}" for c in cutoffs]
    if not cuts:
        return ["all k"]
    labels = [f"k < {cuts[0]}"]
    labels += [f"{a} ≤ k < {b}" for a, b in itertools.pairwise(cuts)]
    labels.append(f"k ≥ {cuts[-1]}")
    return labels


def _read_bands(run: Mapping[str, Any]
                ) -> tuple[tuple[float, ...], np.ndarray, np.ndarray | None] | None:
    """(cutoffs, per-band MSE, truth energy) of a run's evaluation file, or None."""
    path = run.get("eval_path")
    if not isinstance(path, str) or not path:
        return None
    try:
        doc = load_evaluation(path)
    except (InvalidEvaluation, OSError):
        return None
    section = band_errors(doc)
    if section is None:
        return None
    try:
        cutoffs = tuple(float(c) for c in section["cutoffs"])
        mse = np.asarray(section["mse"], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if mse.ndim != 1 or len(mse) != len(cutoffs) + 1 or not np.isfinite(mse).all():
        return None
    energy = None
    try:
        energy = np.asarray(section.get("truth_energy"), dtype=float)
        if energy.shape != mse.shape or not np.isfinite(energy).all():
            energy = None
    except (TypeError, ValueError):
        energy = None
    return cutoffs, mse, energy


def _band_sentence(bands: Mapping[str, Any], student: str, best_key: str,
                   none_key: str | None) -> str:
    """'Where in the spectrum (…, dual vs none): -35.0 % at k < 4, … .'"""
    mse = bands["mse"]
    none = mse.get((student, none_key)) if none_key else None
    best = mse.get((student, best_key))
    if none is None or best is None:
        return ""
    parts = [f"{fmt_pct(100 * (b - n) / n)} at {label}"
             for label, n, b in zip(band_labels(bands["cutoffs"]), none, best, strict=True)
             if n > 0]
    if not parts:
        return ""
    return f"Where in the spectrum (MSE per band, {best_key} vs {none_key}): {', '.join(parts)}."


# ---- setup ------------------------------------------------------------------------------


def _band_settings(config: Mapping[str, Any]) -> Markup:
    from sdkd.distill.settings import band_setting

    rows = []
    datasets = list(config["datasets"])
    for key in config["distill"]["settings"]:
        bs = band_setting(config["distill"], key)
        # datasets may run a subset of the settings: say which run this one
        runs_it = [d for d in datasets if key in dataset_settings(config, d)]
        rows.append({
            "bands": bs.key, "method": bs.setting,
            "cutoffs": ", ".join(f"{c:g}" for c in bs.cutoffs) if bs.cutoffs else DASH,
            "weights": ", ".join(f"{w:g}" for w in bs.weights) if bs.weights else DASH,
            "λ (KD weight)": f"{bs.lam:g}", "latent weight": f"{bs.latent_weight:g}",
            "output weight": f"{bs.output_weight:g}",
            "normalised bands": "yes" if bs.normalize_bands else "no",
            "seeds": ", ".join(str(s) for s in bs.seeds),
            "datasets": ", ".join(runs_it) or DASH,
        })
    frame = pd.DataFrame(rows)
    return _table(frame, "band-settings",
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
    return _table(frame, "provenance", extra=extra)


def _devices(table: pd.DataFrame) -> list[str]:
    """'cuda:0 (NVIDIA H100): inference in 4 runs, training in 4 runs' per device."""
    ok = table[table["status"] == "ok"]
    uses: dict[str, list[str]] = {}
    for column, use in (("inference_device", "inference"), ("train_device", "training")):
        for device, n in ok[column].dropna().astype(str).value_counts().items():
            uses.setdefault(device, []).append(f"{use} in {_plural(int(n), 'run')}")
    return [f"{device}: {', '.join(what)}" for device, what in uses.items()]


# ---- the page ---------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(
    config: Mapping[str, Any], *, metrics_csv: str | Path, summary_json: str | Path,
    figures_dir: str | Path, data_files: Sequence[str | Path], out: str | Path,
    config_text: str | None = None, debug_checks: bool = False,
    project_dir: str | Path | None = None,
) -> Path:
    """Write the report page to ``out`` atomically and return ``out``.

    Args:
        config: the validated config (datasets, models and band settings in report order).
        metrics_csv, summary_json: the outputs of :func:`sdkd.report.aggregate.aggregate`.
        figures_dir: the folder of :func:`sdkd.report.figures.make_figures` (with
            ``figures.json``); every PNG it lists is embedded.
        data_files: the canonical HDF5 file of each dataset (provenance).
        out: the HTML file to write.
        config_text: the config file as written (shown verbatim); without it the resolved
            config is shown as YAML.
        debug_checks: add a small inline script that, once the page has loaded, writes
            ``data-images-ok="<decoded>/<images>"`` and ``data-external-loads="<n>"`` on
            ``<body>`` (for a headless-browser test); off for the real report.
        project_dir: where ``git rev-parse HEAD`` runs (default: the working directory).

    Raises:
        SdkdError: naming the file, when an input is missing or unreadable, or a figure the
            manifest lists does not exist. Nothing is written then.
    """
    metrics_csv, summary_json = Path(metrics_csv), Path(summary_json)
    figures_dir, out = Path(figures_dir), Path(out)
    table = read_metrics(metrics_csv)
    summary = _read_summary(summary_json)
    figures = _read_figures(figures_dir)
    provenance = [read_provenance(p) for p in data_files]
    names = [str(n) for n in config["datasets"]]
    for number, figure in enumerate(figures, start=1):
        figure["number"] = number

    datasets = []
    for name in names:
        ds = _Dataset(name, config, table, summary)
        bands = ds.band_errors()
        counts = ds.rows["status"].value_counts()
        info = next((p for p in provenance if p.get("dataset") == name), None)
        datasets.append({
            "name": name,
            "id": f"dataset-{name}",
            "counts": {s: int(counts.get(s, 0)) for s in ("ok", "missing", "invalid")},
            "expected": len(ds.rows),
            "students": ds.students,
            "settings": ds.settings,
            "verdicts": ds.verdicts(bands),
            "summary_table": ds.summary_table(),
            "metrics_table": ds.metrics_table(),
            "efficiency_table": ds.efficiency_table(),
            "band_table": ds.band_table(bands) if bands is not None else None,
            "band_skipped": bands["skipped"] if bands is not None else [],
            "figures": [f for f in figures if f["dataset"] == name],
            "data": info,
            "in_summary": name in summary["datasets"],
        })
    global_figures = [f for f in figures if f["dataset"] not in names]

    counts = table["status"].value_counts()
    runs = {"expected": len(table), **{s: int(counts.get(s, 0))
                                        for s in ("ok", "missing", "invalid")}}
    ok = table[table["status"] == "ok"]
    generated = dt.datetime.now(dt.UTC).astimezone()
    resolved = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False,
                              allow_unicode=True)
    setup = {
        "versions": package_versions(),
        "git": git_commit(project_dir if project_dir is not None else Path.cwd()),
        "platform": platform.platform(),
        "devices": _devices(table),
        "compute": fmt_duration(ok["train_seconds"].astype(float).sum(min_count=1)),
        "compute_runs": int(np.isfinite(ok["train_seconds"].astype(float)).sum()),
        "generated": generated.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)"),
        "inputs": {"metrics table": str(metrics_csv), "summary": str(summary_json),
                   "figures": str(figures_dir / MANIFEST),
                   "data files": ", ".join(str(p) for p in data_files) or DASH},
        "band_settings": _band_settings(config),
        "band_cutoffs": ", ".join(f"{c:g}" for c in
                                  config.get("evaluate", {}).get("band_cutoffs", [])) or DASH,
        "provenance": _provenance_table(provenance) if provenance else None,
        "config_text": config_text,
        "config_resolved": resolved,
    }
    students = ", ".join(str(s) for s in config["models"]["students"])
    page = _environment().get_template(TEMPLATE).render(
        title="Frequency-aligned knowledge distillation: results",
        subtitle=(f"{', '.join(names)} · teacher {config['models']['teacher']} · "
                  f"students {students}"),
        generated=generated.strftime("%Y-%m-%d %H:%M %Z"),
        runs=runs,
        none_key=baseline_key(table) or "none",
        datasets=datasets,
        global_figures=global_figures,
        setup=setup,
        debug_checks=debug_checks,
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


__all__ = ["band_labels", "fmt_duration", "fmt_metric", "fmt_pct", "fmt_si", "git_commit",
           "package_versions", "read_provenance", "render_report"]
