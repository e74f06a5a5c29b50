"""What the page shows of one dataset: its tables, from the results model and the summary.

:class:`DatasetView` takes the runs and their files from :class:`sdkd.report.results.Results`
and the headline numbers from ``summary.json`` (so that the page prints what
``dvc metrics show`` prints), and turns them into ready HTML tables: the summary (teacher
vs plain vs best distilled setting per student), every run's metrics (and, for a dataset
of several channels, each channel's), the costs, and the error per frequency band.
The verdict sentences are :mod:`sdkd.report.verdicts`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from sdkd.evaluate.format import band_labels, spectrum
from sdkd.report.fmt import (
    DASH,
    PAPER_CONDITIONS,
    PAPER_MAE_REDUCTION_PCT,
    PAPER_MSE_REDUCTION_PCT,
    finite,
    fmt_duration,
    fmt_metric,
    fmt_pct,
    fmt_plain,
    fmt_si,
    plural,
    spread_pct,
    stat_text,
)
from sdkd.report.powerlaw import PowerLaw, spectral_slope
from sdkd.report.results import CHANNEL_METRICS, Results, channel_column
from sdkd.report.stats import change_verdict, interval_text
from sdkd.report.tables import html_table


@dataclass(frozen=True)
class BandMeans:
    """Mean per-band test MSE (K,) of the teacher, keyed ``(teacher, "teacher")``, and of
    every ``(student, bands)`` group over its ok runs with band errors; the mean truth
    energy per band (K,); the labels of the ok runs left out."""

    cutoffs: tuple[float, ...]
    mse: dict[tuple[str, str], np.ndarray]
    truth: np.ndarray
    skipped: list[str]


def group_status(statuses: pd.Series) -> str:
    """Row status of a group of runs: ok, partial (some ok), else invalid if any is
    invalid, else missing."""
    values = set(statuses)
    if "ok" in values:
        return "ok" if values == {"ok"} else "partial"
    return "invalid" if "invalid" in values else "missing"


def _column(values: np.ndarray | None, n: int) -> list[str]:
    if values is None:
        return [DASH] * n
    return [fmt_metric("mse", v) for v in values]


def _value_text(value: Any) -> str:
    """A tuned value as the page shows it: ``1, 10`` for a list, ``yes``/``no`` for a switch."""
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


PAPER_ROW = [
    "the SDKD paper (its abstract)", "SDKD", PAPER_CONDITIONS,
    f"up to −{PAPER_MSE_REDUCTION_PCT} %", DASH, f"−{PAPER_MAE_REDUCTION_PCT} %",
]


def paper_table(views: list[DatasetView]) -> Markup | None:
    """The paper's headline reductions beside ours (:meth:`DatasetView.paper_rows`), with
    the conditions of each; None when no dataset has a distilled result yet."""
    rows = [row for view in views for row in view.paper_rows()]
    if not rows:
        return None
    columns = ["who", "setting", "conditions", "MSE change", "95 % CI", "MAE change"]
    frame = pd.DataFrame([PAPER_ROW, *rows], columns=columns)
    return html_table(frame, "paper", numeric=["MSE change", "95 % CI", "MAE change"])


class DatasetView:
    """The tables of dataset ``name``; ``summary`` is the summary.json object."""

    def __init__(self, results: Results, name: str, summary: Mapping[str, Any]) -> None:
        self.results = results
        self.name = name
        self.teacher = results.teacher
        # a dataset may run a subset of the students and settings (sdkd.plan)
        self.students = results.students_of(name)
        self.settings = results.settings_of(name)
        self.channels = results.channels(name)  # [] for a dataset of one channel
        self.rows = results.runs(name)
        self.entry = summary["datasets"].get(name, {})
        self.none_key = results.none_key(name)
        self.bands = self._band_means()

    # ---- helpers

    def runs(self, model: str, bands: str | None = None, ok: bool = False) -> pd.DataFrame:
        return self.results.runs(self.name, model=model, bands=bands, ok=ok)

    def seeds_text(self, model: str, bands: str | None) -> tuple[str, str]:
        """('1 of 2', row status) for a model/bands group."""
        rows = self.runs(model, bands)
        n_ok = int((rows["status"] == "ok").sum())
        return f"{n_ok} of {len(rows)}", group_status(rows["status"])

    def mean(self, model: str, column: str, bands: str | None = None) -> float:
        """Mean of ``column`` over the ok runs of a model (and band key) with a value."""
        values = self.runs(model, bands, ok=True)[column].astype(float)
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else math.nan

    def devices(self, model: str, column: str, bands: str | None = None) -> list[str]:
        """The devices named in ``column`` by the ok runs of a model (and band key)."""
        found = self.runs(model, bands, ok=True)[column].dropna()
        return sorted({str(d) for d in found if str(d)})

    def devices_text(self, model: str, column: str, bands: str | None = None) -> str:
        return ", ".join(self.devices(model, column, bands)) or DASH

    def label(self, bands: str) -> str:
        """A band key, with its method when it is a variant: ``dual_c8 (dual)``."""
        method = self.results.method(bands)
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
        status.append(state)
        for student in self.students:
            block = self.entry.get("students", {}).get(student, {})
            none, best = block.get("none"), block.get("best")
            params = self.mean(student, "parameters")
            if self.none_key is not None:
                seeds, state = self.seeds_text(student, self.none_key)
                rows.append(self._summary_row(student, f"{self.none_key} (plain)",
                                              seeds, none, None, params))
                status.append(state)
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
                state = group_status(distilled["status"])
                rows.append(self._summary_row(student, "distilled (best)", f"0 of {len(distilled)}",
                                              None, None, params, state))
                status.append(state)
        frame = pd.DataFrame(rows, columns=columns)
        return html_table(frame, f"summary-{self.name}", row_status=status, numeric=columns[2:])

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
                                         spread_pct(stats, none, metric))
            if finite(stats.get("gap_closed")):
                gap = f"{100 * float(stats['gap_closed']):.0f} %"
        return [model, trained, seeds, stat_text(stats, "mse"), stat_text(stats, "mae"),
                fmt_metric("ssim", stats.get("ssim")), change["mse"], change["mae"], gap,
                fmt_si(params)]

    # ---- the study's questions

    def comparison_table(self) -> Markup | None:
        """One row per answered question of :data:`sdkd.report.aggregate.QUESTIONS` and
        student: the paired % change of test MSE, its 95 % interval and what it says."""
        columns = ["student", "treated", "vs", "seeds paired", "MSE change (paired)",
                   "95 % CI", "verdict"]
        rows = []
        for student in self.students:
            for c in self.entry.get("students", {}).get(student, {}).get("comparisons", ()):
                low, high = c.get("low_pct"), c.get("high_pct")
                rows.append([student, self.label(c["treated"]), self.label(c["baseline"]),
                             str(c["n_pairs"]), fmt_pct(c["change_pct"]),
                             interval_text(low, high), change_verdict(low, high)])
        if not rows:
            return None
        frame = pd.DataFrame(rows, columns=columns)
        return html_table(frame, f"comparisons-{self.name}",
                          numeric=["seeds paired", "MSE change (paired)", "95 % CI"])

    # ---- against the paper's figure

    def paper_rows(self) -> list[list[str]]:
        """Rows of :func:`paper_table` for this dataset: per student, the paper's method as
        stated (its first ``sdkd_latent`` key) and the best setting, each with the paired
        change of test MSE against the plain student, its 95 % interval, the change of
        mean MAE and the conditions."""
        rows = []
        for student in self.students:
            block = self.entry.get("students", {}).get(student, {})
            settings = block.get("settings", {})
            paper = next((k for k in settings if self.results.method(k) == "sdkd_latent"), None)
            best = block.get("best", {}).get("bands")
            picks = [("the paper's method as stated", paper)] if paper else []
            if best is not None and best != paper:
                picks.append(("best setting", best))
            for what, key in picks:
                stats = settings[key]
                pairs = stats.get("n_pairs", 0)
                rows.append([f"ours: {what}", self.label(key),
                             f"{self.name}; {student}; {plural(pairs, 'paired seed')}",
                             fmt_pct(stats.get("mse_paired_change_pct")),
                             interval_text(stats.get("mse_paired_low_pct"),
                                           stats.get("mse_paired_high_pct")),
                             fmt_pct(stats.get("mae_change_pct"))])
        return rows

    # ---- the truth's spectrum

    def spectrum_slope(self) -> PowerLaw | None:
        """The power law of the truth's energy spectrum on the test split
        (:mod:`sdkd.report.powerlaw`), from the first ok run's evaluation file."""
        for _, doc in self.results.docs(self.results.runs(self.name, ok=True)):
            found = spectrum(doc)
            if found is not None:
                return spectral_slope(found.k, found.truth, tuple(doc["grid"]))
        return None

    # ---- the tuning stage

    def tuning_table(self) -> Markup | None:
        """The search of each tuned setting (:mod:`sdkd.tuning`): one row per grid
        point, its values and validation MSE, the chosen point marked."""
        columns = ["setting", "trained as", "point", "values", "validation MSE", "chosen"]
        rows, status = [], []
        for key, search in self.entry.get("tuning", {}).items():
            chosen = search["chosen"]["point"]
            for point in search["points"]:
                values = "; ".join(f"{name} = {_value_text(value)}"
                                   for name, value in point["values"].items())
                rows.append([self.label(key), f"{search['student']}, seed {search['seed']}",
                             str(point["point"]), values, fmt_metric("mse", point["val_mse"]),
                             "chosen" if point["point"] == chosen else ""])
                status.append("ok")
        if not rows:
            return None
        frame = pd.DataFrame(rows, columns=columns)
        return html_table(frame, f"tuning-{self.name}", numeric=["point", "validation MSE"])

    # ---- the full metrics table

    def metrics_table(self) -> Markup:
        students = self.results.runs(role="student")
        variants = any(self.results.method(k) != k for k in set(students["bands"]))
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
        return html_table(frame, f"metrics-{self.name}", numeric=["seed", *metrics],
                          row_status=list(self.rows["status"]), status_column="status",
                          extra={"note": "note"})

    def channel_table(self) -> Markup | None:
        """Per run, the test metrics of :data:`CHANNEL_METRICS` of each channel (MSE in
        that channel's units squared, SSIM with its own data range); None for a dataset
        of one channel, whose overall metrics are its channel's."""
        if not self.channels:
            return None
        labels = {"mse": "MSE", "ssim": "SSIM"}
        rows = []
        for run in self.rows.to_dict("records"):
            ok = run["status"] == "ok"
            row = {("run", "model"): run["model"],
                   ("run", "bands"): "teacher" if run["role"] == "teacher" else run["bands"],
                   ("run", "seed"): str(run["seed"]), ("run", "status"): run["status"]}
            for metric in CHANNEL_METRICS:
                for channel in self.channels:
                    value = run.get(channel_column(metric, channel)) if ok else None
                    row[(labels[metric], channel)] = fmt_metric(metric, value)
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        return html_table(frame, f"channels-{self.name}",
                          numeric=[c for c in frame.columns if c[0] != "run" or c[1] == "seed"],
                          row_status=list(self.rows["status"]), status_column=("run", "status"))

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
            mean = functools.partial(self.mean, model, bands=key)
            devices = functools.partial(self.devices_text, model, bands=key)
            params = mean("parameters")
            share = (f"{100 * params / p_teacher:.1f} %"
                     if finite(params) and finite(p_teacher) and p_teacher > 0 else DASH)
            rows.append({
                ("run", "model"): model, ("run", "bands"): "teacher" if key is None else key,
                ("run", "runs ok"): seeds,
                ("size", "parameters"): fmt_si(params), ("size", "vs teacher"): share,
                ("size", "FLOPs"): fmt_si(mean("flops_per_sample")),
                ("inference", "latency (ms)"): fmt_plain(mean("latency_ms")),
                ("inference", "samples / s"): fmt_si(mean("samples_per_s")),
                ("inference", "device"): devices("inference_device"),
                ("training", "time"): fmt_duration(mean("train_seconds")),
                ("training", "s / epoch"): fmt_plain(mean("seconds_per_epoch")),
                ("training", "peak MB"): fmt_plain(mean("peak_memory_mb"), 4),
                ("training", "device"): devices("train_device"),
            })
            status.append(state)
        frame = pd.DataFrame(rows)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        text = {("run", "model"), ("run", "bands"), ("inference", "device"),
                ("training", "device")}
        return html_table(frame, f"efficiency-{self.name}",
                          numeric=[c for c in frame.columns if c not in text], row_status=status,
                          extra={("inference", "device"): "device",
                                 ("training", "device"): "device"})

    # ---- error per frequency band

    def _band_means(self) -> BandMeans | None:
        found = self.results.band_errors(self.name)
        if found is None:
            return None
        values: dict[tuple[str, str], list[np.ndarray]] = {}
        for run, bands in found.runs:
            key = (run["model"], "teacher" if run["role"] == "teacher" else run["bands"])
            values.setdefault(key, []).append(bands.mse)
        truth = np.mean([bands.truth_energy for _, bands in found.runs], axis=0)
        return BandMeans(found.cutoffs, {k: np.mean(v, axis=0) for k, v in values.items()},
                         truth, found.skipped)

    def band_table(self) -> Markup | None:
        """Per band: the truth's energy share, the teacher's MSE, and per student the plain
        and best settings' MSE and the change between them; None without band errors."""
        if self.bands is None:
            return None
        labels = band_labels(self.bands.cutoffs)
        n = len(labels)
        total = float(np.sum(self.bands.truth))
        columns: dict[tuple[str, str], list[str]] = {
            ("", "band (cycles / domain)"): labels,
            ("", "truth energy"): [f"{100 * v / total:.1f} %" if total > 0 else DASH
                                   for v in self.bands.truth],
        }
        mse = self.bands.mse
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
        return html_table(frame, f"bands-{self.name}", numeric=list(frame.columns)[1:])
