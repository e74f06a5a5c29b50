"""The report's figures: PNG files and a ``figures.json`` manifest.

:func:`make_figures` reads the metrics table of :mod:`sdkd.report.aggregate`, the
evaluation files (docs/evaluation-format.md) and the training histories, all through
:class:`sdkd.report.results.Results`, and only draws; it writes into ``out_dir`` (file
names depend on the config only, see :func:`figure_files`):

===============================  ===========  ==============================================
file                             kind         what it shows
===============================  ===========  ==============================================
``gain_mse.png``                 gain         % change of test MSE of every band setting vs
                                              the plain student ``none`` (datasets × students)
``gain_mae.png``                 gain         the same for MAE
``lead_time_{dataset}.png``      lead_time    MSE per lead time, teacher and every setting
``spectrum_{dataset}.png``       spectrum     radially averaged energy spectra (truth,
                                              teacher, settings) and error spectra, log-log
``band_error_{dataset}.png``     band_error   MSE per frequency band (grouped bars)
``samples_{dataset}_{student}``  samples      test window 0: truth, teacher, ``none``, best
                                              distilled setting and their errors, first and
                                              last lead time, shared colour scales
``training_{dataset}.png``       training     training and validation curves (history.csv)
``cost_{dataset}.png``           cost         MSE vs parameters, FLOPs, latency (log x),
                                              Pareto front marked
===============================  ===========  ==============================================

A dataset's figures show only the students and band settings it runs (its
``students:``/``settings:`` subset, :func:`sdkd.plan.dataset_students`); in the gain
grid, a student a dataset does not run leaves its panel marked "not run".
Runs whose status is not ``ok`` are left out of a figure, and its caption lists them
(an evaluation file with a malformed section is ``invalid``: see
:mod:`sdkd.evaluate.format`); a section that is null leaves its run out of the figures
that need it. A figure with no data at all becomes a small placeholder PNG saying which
runs are missing, so the set of files is always complete. An ``ok`` run whose evaluation
file or ``history.csv`` is there but does not pass its check stops ``sdkd figures``
with an error naming the file: a figure never silently lacks it. Each band setting
keeps one colour in every figure (:func:`setting_palette`). Every file is written
atomically; the manifest is a JSON list of ``{"file", "dataset", "kind", "title",
"caption", "placeholder"}`` (``dataset`` is ``null`` for figures over all datasets).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.lines import Line2D

from sdkd.atomic import atomic_path
from sdkd.evaluate.format import Sample, Spectrum, band_labels, per_lead_time, sample, spectrum
from sdkd.jsonfile import write_json
from sdkd.plan import MANIFEST, curve_file, figure_files, figure_plan
from sdkd.report.aggregate import read_metrics
from sdkd.report.fmt import PAPER_MAE_REDUCTION_PCT, PAPER_MSE_REDUCTION_PCT
from sdkd.report.results import Results, none_key, run_label

DPI = 110
TEACHER_COLOUR = "#000000"
TRUTH_COLOUR = "#b5b5b5"
NONE_COLOUR = "#7a7a7a"
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
PAPER_HEADLINE = (f"the paper reports MSE −{PAPER_MSE_REDUCTION_PCT} %, "
                  f"MAE −{PAPER_MAE_REDUCTION_PCT} % on Navier–Stokes")


@dataclass(frozen=True)
class Figure:
    """One written figure (``path`` is the PNG; ``file`` its name in ``out_dir``)."""

    path: Path
    dataset: str | None
    kind: str
    title: str
    caption: str
    placeholder: bool = False

    @property
    def file(self) -> str:
        return self.path.name

    def manifest_entry(self) -> dict[str, Any]:
        return {"file": self.file, "dataset": self.dataset, "kind": self.kind,
                "title": self.title, "caption": self.caption, "placeholder": self.placeholder}


class _NoData(Exception):
    """A figure has nothing to draw; the message says what is missing."""


def unavailable(runs: pd.DataFrame, section: str | None = None, limit: int = 8) -> str:
    """What is missing among ``runs``: 'a (missing), b (invalid), … and N more', and,
    with ``section``, that the files of the ``ok`` runs lack that section."""
    bad = runs[runs["status"] != "ok"].to_dict("records")
    n_ok = len(runs) - len(bad)
    labels = [f"{run_label(r)} ({r['status']})" for r in bad]
    if bad and len(bad) == len(runs) and len(bad) > limit:
        statuses = " or ".join(sorted({r["status"] for r in bad}))
        text = f"all {len(bad)} runs are {statuses}, e.g. " + ", ".join(labels[:3])
    elif bad:
        more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
        text = ", ".join(labels[:limit]) + more
    else:
        text = ""
    if n_ok and section:
        lack = f"the evaluation files of the {n_ok} ok run(s) have no `{section}` section"
        text = f"{text}; {lack}" if text else lack
    return text or "no runs"


# ---- style ------------------------------------------------------------------------------


def setting_palette(config: Mapping[str, Any]) -> dict[str, Any]:
    """One colour per band key (the plain student grey), the teacher black, truth light grey."""
    keys = list(config["distill"]["settings"])
    baseline = none_key(config)
    base = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]
    if len(keys) > len(base):
        base += sns.color_palette("husl", len(keys) - len(base))
    colours = iter(base)
    palette: dict[str, Any] = {k: NONE_COLOUR if k == baseline else next(colours) for k in keys}
    palette["teacher"] = TEACHER_COLOUR
    palette["truth"] = TRUTH_COLOUR
    return palette


def _style() -> dict[str, Any]:
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.15)}


def _log(ax: plt.Axes, axis: str = "x") -> None:
    """Log scale; under two decades, plain-number labels at 1, 2, 5 × 10^n."""
    getattr(ax, f"set_{axis}scale")("log")
    low, high = getattr(ax, f"get_{axis}lim")()
    if low > 0 and high / low < 100:
        target = getattr(ax, f"{axis}axis")
        target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        target.set_minor_formatter(ticker.NullFormatter())


def _no_data(ax: plt.Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _placeholder(title: str, reason: str) -> plt.Figure:
    fig = plt.figure(figsize=(6.4, 2.4))
    body = textwrap.fill(f"no data: {reason}", 90)
    fig.text(0.5, 0.8, title, ha="center", va="center", fontsize=12, weight="bold")
    fig.text(0.5, 0.42, body, ha="center", va="center", fontsize=8.5, color="0.25")
    return fig


# ---- the figures ------------------------------------------------------------------------

Builder = Callable[[Results, Mapping[str, Any]], tuple[plt.Figure, str]]


@dataclass(frozen=True)
class _Spec:
    file: str
    dataset: str | None
    kind: str
    title: str
    build: Builder
    args: tuple[Any, ...] = ()


def _gain_panel(ax: plt.Axes, res: Results, palette: Mapping[str, Any], dataset: str,
                model: str, metric: str, first: bool) -> str | None:
    """One panel of the gain grid; returns its headline ('' when it has no distilled
    setting), or ``None`` when it has nothing to draw."""
    ax.set_title(f"{dataset} · {model}")
    if model not in res.students_of(dataset):
        # the dataset's `students:` leaves this student out: say so, draw no empty axes
        ax.text(0.5, 0.5, f"{model} is not run\non {dataset}", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.axis("off")
        return None
    none_key = res.none_key(dataset)
    rows = res.runs(dataset, "student", model)
    rows = rows[rows["status"] == "ok"]
    if none_key is None:
        _no_data(ax, "no plain-student setting")
        return None
    base = rows.loc[rows["bands"] == none_key, metric].mean()
    if rows.empty or not np.isfinite(base) or base == 0:
        _no_data(ax, f"no `{none_key}` run" if not rows.empty else "no data")
        return None
    data = rows.assign(change=100 * (rows[metric] - base) / base)
    order = [k for k in res.settings_of(dataset) if k in set(data["bands"])]
    sns.barplot(data=data, x="bands", y="change", hue="bands", order=order,
                hue_order=order, palette=palette, errorbar="sd", capsize=0.25,
                err_kws={"linewidth": 1.0}, legend=False, ax=ax)
    means = data.groupby("bands")["change"].mean()
    ax.set_xticks(range(len(order)), [
        key if key == none_key else f"{key}\n{means[key]:+.1f}%" for key in order
    ])
    ax.axhline(0, color="0.2", lw=0.8)
    ax.set_xlabel("")
    ax.set_ylabel(f"{metric.upper()} change vs {none_key} (%)" if first else "")
    if first:
        # the row shares its y axis, whose labels show on the first column only; when
        # that column is a student the dataset does not run, show them here instead
        ax.tick_params(axis="y", labelleft=True)
        ax.yaxis.label.set_visible(True)
    ax.tick_params(axis="x", labelsize=8)
    distilled = means.drop(none_key, errors="ignore")
    if distilled.empty:
        return ""
    best = distilled.idxmin()
    return f"{dataset} {model} {best} {distilled[best]:+.1f} %"


def _gain(metric: str) -> Builder:
    label = metric.upper()

    def build(res: Results, palette: Mapping[str, Any]) -> tuple[plt.Figure, str]:
        datasets = list(res.config["datasets"])
        if all(res.none_key(dataset) is None for dataset in datasets):
            raise _NoData("the config has no plain-student (`none`) setting to compare with")
        # one column per student that some dataset runs, in the order of models.students
        students = [m for m in res.students
                    if any(m in res.students_of(dataset) for dataset in datasets)]
        subset = any(res.students_of(dataset) != students for dataset in datasets)
        fig, axes = plt.subplots(len(datasets), len(students), squeeze=False,
                                 figsize=(1.0 + 3.6 * len(students), 0.6 + 2.8 * len(datasets)),
                                 layout="constrained", sharey="row")
        drawn, headline = 0, []
        for i, dataset in enumerate(datasets):
            labelled = False
            for j, model in enumerate(students):
                found = _gain_panel(axes[i, j], res, palette, dataset, model, metric,
                                    first=not labelled)
                if found is None:
                    continue
                drawn += 1
                labelled = True
                if found:
                    headline.append(found)
        if not drawn:
            plt.close(fig)
            raise _NoData(unavailable(res.runs(role="student")))
        # narrow (one-student) figures wrap the title instead of cutting it off
        width_chars = max(30, int(fig.get_figwidth() * 9))
        fig.suptitle(textwrap.fill(
            f"Test {label} of each band setting relative to the plain student", width_chars
        ))
        none_key = res.none_key() or "none"
        not_run = (" A panel marked 'not run' is a student that dataset leaves out (its "
                   "`students:` list)." if subset else "")
        caption = (
            f"Change of the test {label} (physical units, per pixel) of each band setting "
            f"and KD baseline relative to the plain student `{none_key}` of the same model "
            f"and dataset: 100·({label}_setting − {label}_{none_key}) / {label}_{none_key}, "
            "bar = mean over seeds, error bar = ± one standard deviation over seeds (in % of "
            f"the `{none_key}` mean; the `{none_key}` bar shows the baseline's own seed "
            "spread around 0). Below zero means distillation helps. Rows: datasets, "
            f"columns: students; each dataset shows the band settings it runs.{not_run} "
            f"Best setting here: {'; '.join(headline) or 'n/a'} ({PAPER_HEADLINE})."
        )
        return fig, caption

    return build


def _lead_time(res: Results, palette: Mapping[str, Any], dataset: str) -> tuple[plt.Figure, str]:
    teacher = [(r, m["mse"]) for r, d in res.docs(res.runs(dataset, "teacher"))
               if (m := per_lead_time(d)) is not None]
    students = res.students_of(dataset)
    fig, axes = plt.subplots(1, len(students), squeeze=False, sharey=True,
                             figsize=(1.0 + 4.0 * len(students), 3.4), layout="constrained")
    drawn = bool(teacher)
    for j, model in enumerate(students):
        ax = axes[0, j]
        ax.set_title(f"{dataset} · {model}")
        for _, mse in teacher:
            ax.plot(np.arange(1, len(mse) + 1), mse, color=palette["teacher"], ls="--",
                    marker=".", lw=1.6, label=res.teacher)
        for key in res.settings_of(dataset):
            curves = [m["mse"] for _, d in res.docs(_key_rows(res, dataset, model, key))
                      if (m := per_lead_time(d)) is not None]
            curves = [c for c in curves if len(c) == len(curves[0])] if curves else []
            if not curves:
                continue
            stack = np.stack(curves)
            x = np.arange(1, stack.shape[1] + 1)
            ax.plot(x, stack.mean(0), color=palette[key], marker=".", lw=1.4, label=key)
            if len(stack) > 1:
                ax.fill_between(x, stack.min(0), stack.max(0), color=palette[key], alpha=0.2,
                                lw=0)
            drawn = True
        ax.set_xlabel("lead time (frames ahead)")
        ax.set_ylabel("test MSE" if j == 0 else "")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=7, ncols=2)
        else:
            _no_data(ax)
    if not drawn:
        plt.close(fig)
        raise _NoData(unavailable(res.runs(dataset), "per_lead_time"))
    fig.suptitle(f"{dataset}: error per lead time")
    caption = (
        f"Test MSE (physical units, per pixel) at each lead time on {dataset}: the "
        f"teacher {res.teacher} (black, dashed) and each band setting of every student "
        "(one panel per student; line = mean over seeds, shaded = min–max over seeds). "
        "Error normally grows with lead time; a setting that stays below `none` at every "
        "lead time gains over the whole forecast, not only on its first frames."
    )
    return fig, caption


def _key_rows(res: Results, dataset: str, model: str, key: str) -> pd.DataFrame:
    rows = res.runs(dataset, "student", model)
    return rows[rows["bands"] == key]


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (x > 0) & (y > 0)
    return x[keep], y[keep]


def _spectrum_figure(res: Results, palette: Mapping[str, Any],
                     dataset: str) -> tuple[plt.Figure, str]:
    students = res.students_of(dataset)
    fig, axes = plt.subplots(2, len(students), squeeze=False, sharex=True, sharey="row",
                             figsize=(1.0 + 4.0 * len(students), 6.0), layout="constrained")
    teacher = [s for _, d in res.docs(res.runs(dataset, "teacher"))
               if (s := spectrum(d)) is not None]
    drawn = bool(teacher)
    for j, model in enumerate(students):
        top, bottom = axes[0, j], axes[1, j]
        top.set_title(f"{dataset} · {model}")
        series: list[tuple[str, Spectrum, dict[str, Any]]] = []
        if teacher:
            series.append((res.teacher, teacher[0], {"color": palette["teacher"], "ls": "--"}))
        for key in res.settings_of(dataset):
            specs = [s for _, d in res.docs(_key_rows(res, dataset, model, key))
                     if (s := spectrum(d)) is not None]
            specs = [s for s in specs if len(s.k) == len(specs[0].k)] if specs else []
            if specs:
                mean = Spectrum(*(np.mean([getattr(s, f.name) for s in specs], axis=0)
                                  for f in fields(Spectrum)))
                series.append((key, mean, {"color": palette[key]}))
        if not series:
            _no_data(top)
            _no_data(bottom)
            continue
        drawn = True
        truth = series[0][1]
        top.plot(*_positive(truth.k, truth.truth), color=palette["truth"], lw=4,
                 label="truth", zorder=1)
        for name, spec, style in series:
            top.plot(*_positive(spec.k, spec.prediction), lw=1.3, label=name, **style)
            bottom.plot(*_positive(spec.k, spec.error), lw=1.3, label=name, **style)
        for ax in (top, bottom):
            ax.set_xscale("log")
            _log(ax, "y")
        top.set_ylabel("energy E(|k|)" if j == 0 else "")
        bottom.set_ylabel("error energy" if j == 0 else "")
        bottom.set_xlabel("|k| (cycles per domain)")
        top.legend(fontsize=7, ncols=2)
    if not drawn:
        plt.close(fig)
        raise _NoData(unavailable(res.runs(dataset), "spectrum"))
    fig.suptitle(f"{dataset}: radially averaged energy spectra")
    caption = (
        f"Radially averaged energy spectra on {dataset} (test split, log-log, shells of "
        "width 1 in |k|, cycles per domain). Top: the truth (thick grey) and the "
        f"predictions of the teacher {res.teacher} (black, dashed) and of each band setting "
        "(mean over seeds), one panel per student; a prediction falling below the truth at "
        "high |k| is over-smoothed. Bottom: the spectrum of the error (prediction − truth); "
        "where it is high is the frequency range a model gets wrong."
    )
    return fig, caption


def _band_figure(res: Results, palette: Mapping[str, Any],
                 dataset: str) -> tuple[plt.Figure, str]:
    found = res.band_errors(dataset)
    if found is None:
        raise _NoData(unavailable(res.runs(dataset), "band_errors"))
    cutoffs, labels = found.cutoffs, band_labels(found.cutoffs)
    students = res.students_of(dataset)
    records = []
    for run, bands in found.runs:
        series = res.teacher if run["role"] == "teacher" else run["bands"]
        models = students if run["role"] == "teacher" else [run["model"]]
        for model in models:
            records += [{"model": model, "series": series, "seed": run["seed"], "band": b,
                         "mse": v} for b, v in zip(labels, bands.mse, strict=True)]
    data = pd.DataFrame(records)
    hue_order = [h for h in [res.teacher, *res.settings_of(dataset)] if h in set(data["series"])]
    palette = {**palette, res.teacher: palette["teacher"]}
    fig, axes = plt.subplots(1, len(students), squeeze=False, sharey=True,
                             figsize=(1.5 + 4.2 * len(students), 3.6), layout="constrained")
    for j, model in enumerate(students):
        ax = axes[0, j]
        ax.set_title(f"{dataset} · {model}")
        sub = data[data["model"] == model]
        if sub.empty:
            _no_data(ax)
            continue
        sns.barplot(data=sub, x="band", y="mse", hue="series", hue_order=hue_order,
                    order=labels, palette=palette, errorbar="sd",
                    err_kws={"linewidth": 0.8}, ax=ax, legend=j == len(students) - 1)
        _log(ax, "y")
        ax.set_xlabel("frequency band (cycles per domain)")
        ax.set_ylabel("test MSE in band" if j == 0 else "")
    legend_ax = axes[0, -1]
    if legend_ax.get_legend() is not None:
        sns.move_legend(legend_ax, "upper left", bbox_to_anchor=(1.02, 1), title=None,
                        fontsize=7.5)
    fig.suptitle(f"{dataset}: error per frequency band")
    caption = (
        f"Test MSE of {dataset} split into radial frequency bands (cutoffs "
        f"{', '.join(f'{c:g}' for c in cutoffs)} cycles per domain, the report's band "
        "cutoffs; the bands of a model sum to its total MSE), log scale, one panel per "
        f"student with the teacher {res.teacher} repeated in each; bar = mean over seeds, "
        "error bar = ± one standard deviation. Compare a setting with `none` band by band "
        "to see where in frequency distillation removes error (`low` should help the "
        "first band, `high` the last, `dual` both)."
    )
    return fig, caption


def _first_sample(res: Results, rows: pd.DataFrame) -> tuple[dict[str, Any], Sample] | None:
    """(run, sample) of the lowest seed among ``rows`` whose file has a usable sample."""
    for run, doc in res.docs(rows.sort_values("seed")):
        found = sample(doc)
        if found is not None:
            return run, found
    return None


def _samples(res: Results, palette: Mapping[str, Any], dataset: str,
             model: str) -> tuple[plt.Figure, str]:
    plain, best = res.none_key(dataset), res.best(dataset, model)
    candidates = [("teacher", res.runs(dataset, "teacher"))]
    if plain is not None:
        candidates.append((plain, _key_rows(res, dataset, model, plain)))
    if best is not None:
        candidates.append((best, _key_rows(res, dataset, model, best)))
    rows: list[tuple[str, Sample]] = []
    for key, runs in candidates:
        found = _first_sample(res, runs)
        if found is not None:
            run, shown = found
            name = res.teacher if key == "teacher" else f"{model} · {key}"
            rows.append((f"{name}\n(seed {run['seed']})", shown))
    if not rows:
        wanted = pd.concat([r for _, r in candidates])
        raise _NoData(unavailable(wanted, "sample"))
    shape = rows[0][1].truth.shape
    rows = [r for r in rows if r[1].truth.shape == shape]
    truth, leads, valid = rows[0][1].truth, rows[0][1].lead_times, rows[0][1].valid
    first, last = 0, len(truth) - 1
    maps = [_on_valid(truth[[first, last]], valid)] + [
        _on_valid(s.prediction[[first, last]], valid) for _, s in rows]
    vmin = min(float(f.min()) for f in maps)
    vmax = max(float(f.max()) for f in maps)
    errors = [m - maps[0] for m in maps[1:]]
    emax = max(float(np.abs(e).max()) for e in errors) or 1.0

    nrows = len(rows) + 1
    fig, axes = plt.subplots(nrows, 4, squeeze=False, figsize=(10.0, 2.2 * nrows + 0.6),
                             layout="constrained")
    titles = [f"field, t+{leads[first]}", f"field, t+{leads[last]}",
              f"error, t+{leads[first]}", f"error, t+{leads[last]}"]
    labels = ["truth", *[name for name, _ in rows]]
    field_image = error_image = None
    for i in range(nrows):
        for c in range(4):
            ax = axes[i, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(titles[c], fontsize=9)
            if i == 0 and c >= 2:
                ax.axis("off")
                continue
            if c < 2:
                frame = maps[i][c]
                field_image = ax.imshow(frame, cmap="viridis", vmin=vmin, vmax=vmax,
                                        origin="lower", interpolation="nearest")
            else:
                frame = errors[i - 1][c - 2]
                error_image = ax.imshow(frame, cmap="RdBu_r", vmin=-emax, vmax=emax,
                                        origin="lower", interpolation="nearest")
                ax.text(0.02, 0.03, f"rmse {np.sqrt(np.mean(frame**2)):.3g}", fontsize=7,
                        transform=ax.transAxes, color="0.1",
                        bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
        axes[i, 0].set_ylabel(labels[i], fontsize=8.5)
    channel = rows[0][1].channel
    fig.colorbar(field_image, ax=axes[:, :2], shrink=0.6, label=f"{channel} (physical units)")
    if error_image is not None:
        fig.colorbar(error_image, ax=axes[:, 2:], shrink=0.6, label="prediction − truth")
    fig.suptitle(f"{dataset}: sample forecast, {model}")
    caption = (
        f"Test window 0 of {dataset} ({channel}) at the first and last lead time "
        f"(t+{leads[first]}, t+{leads[last]}): the ground truth, the teacher {res.teacher}, "
        f"the plain student {model} · {plain} and its best distilled setting "
        f"({best or 'n/a'}, lowest mean test MSE), with their error maps (prediction − "
        "truth). All fields share one colour scale and all error maps one symmetric scale, "
        "so colours compare across rows; the rmse of each error map is printed in its "
        "corner. Rows of runs that are missing are left out."
    )
    if valid is not None:
        caption += (" The grid was padded: the padded pixels, which no metric counts, are "
                    "left blank and out of the scales and the rmse.")
    return fig, caption


def _on_valid(frames: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``frames`` (..., H, W) with the pixels off ``valid`` (H, W) masked out (a numpy
    masked array: imshow leaves them blank, min, max and mean skip them); ``frames``
    itself when every pixel counts."""
    if valid is None:
        return frames
    return np.ma.masked_array(frames, np.broadcast_to(~valid, frames.shape))


def _curve_columns(frame: pd.DataFrame, role: str) -> tuple[str, str]:
    term = "mse" if role == "teacher" else "gt"
    if f"val_{term}" in frame.columns and f"train_{term}" in frame.columns:
        return f"train_{term}", f"val_{term}"
    return "train_loss", "val_loss"


def _training(res: Results, palette: Mapping[str, Any], dataset: str) -> tuple[plt.Figure, str]:
    panels = [("teacher", res.runs(dataset, "teacher"))]
    panels += [(model, res.runs(dataset, "student", model)) for model in res.students_of(dataset)]
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(1.0 + 3.6 * len(panels), 3.5), layout="constrained")
    missing, drawn = [], False
    for j, (name, runs) in enumerate(panels):
        ax = axes[0, j]
        ax.set_title(f"{dataset} · {res.teacher if name == 'teacher' else name}")
        labelled: set[str] = set()
        for run in runs.to_dict("records"):
            history = res.history(run)
            if history is None:
                missing.append(run_label(run))
                continue
            train_col, val_col = _curve_columns(history, run["role"])
            if val_col not in history.columns:
                missing.append(run_label(run))
                continue
            key = "teacher" if run["role"] == "teacher" else run["bands"]
            label = None if key in labelled else (res.teacher if key == "teacher" else key)
            labelled.add(key)
            colour = palette[key]
            ax.plot(history["epoch"], history[val_col], color=colour, lw=1.4, label=label)
            if train_col in history.columns:
                ax.plot(history["epoch"], history[train_col], color=colour, lw=0.9, ls=":")
            drawn = True
        if not labelled:
            _no_data(ax)
            continue
        _log(ax, "y")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE (normalised units)" if j == 0 else "")
        ax.xaxis.get_major_locator().set_params(integer=True)
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="0.3", lw=1.4), Line2D([], [], color="0.3", ls=":")]
        labels += ["validation", "training"]
        ax.legend(handles, labels, fontsize=7, ncols=2)
    if not drawn:
        plt.close(fig)
        raise _NoData(f"history.csv missing or unreadable for all {len(missing)} runs, e.g. "
                      + ", ".join(missing[:3]))
    fig.suptitle(f"{dataset}: training curves")
    lacking = f" No history for: {', '.join(missing[:6])}." if missing else ""
    caption = (
        f"Training (dotted) and validation (solid) curves on {dataset} from each run's "
        "history.csv, log scale: the teacher's MSE loss, and for the students the "
        "ground-truth term `gt` only (the distillation term is left out so that settings "
        "compare); one line per seed, colour = band setting. Losses are on normalised "
        "data, so they do not equal the physical-unit test metrics. A validation curve "
        "still falling at the last epoch means more epochs would help; one rising while "
        f"training falls means overfitting.{lacking}"
    )
    return fig, caption


def pareto_front(cost: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (lower cost and lower error are better), by cost."""
    order = np.lexsort((error, cost))
    front, best = [], math.inf
    for i in order:
        if error[i] < best:
            front.append(i)
            best = error[i]
    return np.asarray(front, dtype=int)


COSTS = (("parameters", "parameters"), ("flops_per_sample", "FLOPs per sample"),
         ("latency_ms", "inference latency (ms)"))


def _cost(res: Results, palette: Mapping[str, Any], dataset: str) -> tuple[plt.Figure, str]:
    rows = res.runs(dataset)
    rows = rows[rows["status"] == "ok"].copy()
    if rows.empty:
        raise _NoData(unavailable(res.runs(dataset)))
    rows["key"] = rows["bands"].where(rows["role"] == "student", "teacher")
    points = (rows.groupby(["model", "key"], sort=False)
              [["mse", *[c for c, _ in COSTS]]].mean().reset_index())
    # markers over all students, so that a model keeps its marker in every dataset
    markers = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(res.students)}
    markers[res.teacher] = "*"
    fig, axes = plt.subplots(1, len(COSTS), squeeze=False, sharey=True, figsize=(12.5, 3.8),
                             layout="constrained")
    drawn = 0
    for j, (column, label) in enumerate(COSTS):
        ax = axes[0, j]
        data = points[np.isfinite(points[column]) & (points[column] > 0)]
        if data.empty:
            _no_data(ax, f"no {label}")
            continue
        drawn += 1
        front = pareto_front(data[column].to_numpy(), data["mse"].to_numpy())
        fx, fy = data[column].to_numpy()[front], data["mse"].to_numpy()[front]
        ax.plot(fx, fy, color="0.35", lw=1.0, ls="--", drawstyle="steps-post", zorder=1)
        for k, point in enumerate(data.itertuples(index=False)):
            on_front = k in set(front.tolist())
            ax.scatter(getattr(point, column), point.mse, color=palette[point.key],
                       marker=markers.get(point.model, "o"), s=90 if on_front else 40,
                       edgecolor="black" if on_front else "none", linewidth=1.2, zorder=2)
        _log(ax, "x")
        _log(ax, "y")
        ax.set_xlabel(f"{label} (log)")
        ax.set_ylabel("test MSE" if j == 0 else "")
    if not drawn:
        plt.close(fig)
        raise _NoData(unavailable(res.runs(dataset), "efficiency"))
    keys = [k for k in ["teacher", *res.settings_of(dataset)] if k in set(points["key"])]
    handles = [Line2D([], [], ls="", marker="*" if k == "teacher" else "o", color=palette[k],
                      label=res.teacher if k == "teacher" else k) for k in keys]
    handles += [Line2D([], [], ls="", marker=markers[m], color="0.4", label=m)
                for m in res.students_of(dataset) if m in set(points["model"])]
    handles.append(Line2D([], [], ls="--", color="0.35", marker="o", markerfacecolor="none",
                          markeredgecolor="black", label="Pareto front"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle(f"{dataset}: accuracy vs cost")
    devices = sorted({d for d in rows["inference_device"].dropna()})
    caption = (
        f"Test MSE on {dataset} against three costs (log-log): parameters, forward FLOPs "
        "per sample and inference latency"
        f"{' (measured on ' + ', '.join(devices) + ')' if devices else ''}. One point per "
        "model and band setting (mean over seeds); colour = band setting (teacher black), "
        "marker = model. Points with a black edge, joined by the dashed staircase, form "
        "the Pareto front: no other point is both cheaper and more accurate. Distillation "
        "moves a student down (same cost, lower error); it reaches the front when it beats "
        "every bigger model it is cheaper than."
    )
    return fig, caption


def _gain_figure(res: Results, palette: Mapping[str, Any],
                 metric: str) -> tuple[plt.Figure, str]:
    return _gain(metric)(res, palette)


# Figure kind (sdkd.plan.FIGURE_KINDS) → the function that draws it.
_BUILDERS: dict[str, Callable[..., tuple[plt.Figure, str]]] = {
    "gain": _gain_figure,
    "lead_time": _lead_time,
    "spectrum": _spectrum_figure,
    "band_error": _band_figure,
    "samples": _samples,
    "training": _training,
    "cost": _cost,
}


def _specs(config: Mapping[str, Any]) -> list[_Spec]:
    """The figures of :func:`sdkd.plan.figure_plan`, each with its drawing function."""
    return [_Spec(fig.file, fig.dataset, fig.kind, fig.title, _BUILDERS[fig.kind], fig.args)
            for fig in figure_plan(config)]


def _save(fig: plt.Figure, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)


def write_training_curves(res: Results, curves_dir: Path) -> list[Path]:
    """One CSV per run with a history: ``epoch, train, validation``, the curves of the
    training figure (the teacher's MSE, a student's ground-truth term), at
    ``curves_dir/<the run's evaluation file, .csv>``. They are the data series of DVC's
    training-curve plots (dvc.yaml): one plot per run, every file with the same columns,
    which the raw ``history.csv`` files (each setting its own loss terms) do not have."""
    written = []
    for run in res.runs().to_dict("records"):
        history = res.history(run)
        if history is None:
            continue
        train, validation = _curve_columns(history, run["role"])
        if validation not in history.columns:
            continue
        curve = pd.DataFrame({"epoch": history["epoch"].astype(int),
                              "validation": history[validation]})
        if train in history.columns:
            curve.insert(1, "train", history[train])
        path = curves_dir / curve_file(run)
        with atomic_path(path) as tmp:
            curve.to_csv(tmp, index=False)
        written.append(path)
    return written


def make_figures(
    config: Mapping[str, Any], metrics_csv: str | Path, eval_root: str | Path,
    runs_root: str | Path, out_dir: str | Path, *, curves_dir: str | Path | None = None,
) -> list[Figure]:
    """Write every figure of :func:`figure_files` and the manifest into ``out_dir``.

    ``metrics_csv`` is the table of :func:`sdkd.report.aggregate.aggregate`; ``eval_root``
    holds the evaluation files; ``runs_root`` is the results folder with
    ``teachers/`` and ``students/`` (their ``history.csv``). With ``curves_dir``, each
    run's training curves go there too, as CSV (:func:`write_training_curves`).

    Raises:
        SdkdError: when the metrics table cannot be read, or the evaluation file or
            history of a run is there but does not pass its check (nothing is written).
    """
    out_dir = Path(out_dir)
    table = read_metrics(metrics_csv)
    res = Results(config, table, eval_root=Path(eval_root), runs_root=Path(runs_root))
    # check every input before drawing: a bad file stops the command before it has
    # replaced any figure
    for run in res.runs().to_dict("records"):
        res.doc(run)
        res.history(run)
    palette = setting_palette(config)
    figures: list[Figure] = []
    with plt.rc_context(_style()):
        for spec in _specs(config):
            try:
                fig, caption = spec.build(res, palette, *spec.args)
                placeholder = False
            except _NoData as exc:
                fig = _placeholder(spec.title, str(exc))
                caption = (f"Placeholder: the figure '{spec.title}' has no data to show. "
                           f"Not available: {exc}.")
                placeholder = True
            # a figure over all datasets compares the students
            scope = (res.runs(spec.dataset) if spec.dataset is not None
                     else res.runs(role="student"))
            if not placeholder and (scope["status"] != "ok").any():
                caption += f" Not shown, as they are not ok: {unavailable(scope)}."
            path = out_dir / spec.file
            _save(fig, path)
            figures.append(Figure(path, spec.dataset, spec.kind, spec.title, caption,
                                  placeholder))
    if curves_dir is not None:
        write_training_curves(res, Path(curves_dir))
    manifest = [figure.manifest_entry() for figure in figures]
    write_json(out_dir / MANIFEST, manifest, indent=2)
    return figures


__all__ = ["MANIFEST", "Figure", "figure_files", "make_figures", "pareto_front",
           "setting_palette", "write_training_curves"]
