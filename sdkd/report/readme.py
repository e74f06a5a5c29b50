"""The README's "Results" block, written from a finished results tree.

``sdkd readme-results`` replaces the text between :data:`START` and :data:`END` in the
README with

- per dataset, the headline table: every model and band setting with its test MSE,
  MAE and SSIM (means over the ok seeds, ± the sample standard deviation where there
  are several) and the % change of MSE and MAE against the same student's ``none``
  run, all read from ``summary.json`` and formatted as the report formats them;
- one figure, copied next to the README so that it renders on a code host;
- the wall time of the pipeline and each stage's share of the job time, from
  Snakemake's benchmark files (:func:`stage_times`);
- the machine the command runs on (run it where the pipeline ran) and the date.

Nothing is typed by hand, so the README cannot drift from the data: rerun the
command after a new run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.machine import cpu_model_name
from sdkd.plan import MANIFEST, band_setting, dataset_settings, dataset_students
from sdkd.report.aggregate import read_metrics, read_summary
from sdkd.report.csvfile import numbers, read_csv
from sdkd.report.fmt import (
    DASH,
    PAPER_CONDITIONS,
    PAPER_MAE_REDUCTION_PCT,
    PAPER_MSE_REDUCTION_PCT,
    fmt_pct,
    stat_text,
)
from sdkd.report.html import read_manifest
from sdkd.report.stats import change_verdict, has_interval, interval_text

PAPER_CLAIM = (f"the SDKD paper's abstract reports reductions of up to "
               f"{PAPER_MSE_REDUCTION_PCT} % in MSE and {PAPER_MAE_REDUCTION_PCT} % in MAE "
               f"on {PAPER_CONDITIONS}")

START = "<!-- results:start (written by `sdkd readme-results`; edits here are overwritten) -->"
END = "<!-- results:end -->"

# Snakemake rule (the first folder under results/benchmarks, or the file stem) → stage.
STAGES = {
    "acquire": "data",
    "preprocess": "data",
    "train_teacher": "teacher",
    "tune_point": "tuning",
    "tune": "tuning",
    "distill": "distillation",
    "evaluate": "evaluation",
    "aggregate": "report",
    "figures": "report",
    "report": "report",
}
STAGE_ORDER = ("data", "teacher", "tuning", "distillation", "evaluation", "report")


def stage_times(benchmarks: str | Path) -> tuple[pd.DataFrame, float]:
    """Job seconds per stage and the pipeline's wall time, from Snakemake benchmark files.

    Every ``*.tsv`` under ``benchmarks`` holds one job's wall seconds (column ``s``) and
    was written when the job ended, so the pipeline ran from the earliest
    ``mtime − s`` to the latest ``mtime``: that span is the wall time (seconds), which
    jobs running side by side make shorter than the sum of job times. Returns a table
    with columns ``stage, jobs, seconds, share`` (share of the summed job seconds) in
    :data:`STAGE_ORDER` and the wall time.
    """
    root = Path(benchmarks)
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise SdkdError(f"{root}: no Snakemake benchmark files (*.tsv) found")
    rows, starts, ends = [], [], []
    for path in files:
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        stage = STAGES.get(rule)
        if stage is None:
            raise SdkdError(f"{path}: benchmark of unknown rule {rule!r}")
        table = read_csv(path, what="Snakemake benchmark file", sep="\t", required=("s",))
        seconds = float(numbers(table, "s", path).iloc[0])
        if not seconds >= 0:  # also NaN: an empty cell
            raise SdkdError(f"{path}: line 2, column s: expected the job's seconds (≥ 0)")
        end = path.stat().st_mtime
        starts.append(end - seconds)
        ends.append(end)
        rows.append({"stage": stage, "seconds": seconds})
    table = pd.DataFrame(rows).groupby("stage")["seconds"].agg(["count", "sum"])
    table = table.reindex([s for s in STAGE_ORDER if s in table.index])
    out = pd.DataFrame({
        "stage": table.index,
        "jobs": table["count"].to_numpy(),
        "seconds": table["sum"].to_numpy(),
    })
    out["share"] = out["seconds"] / out["seconds"].sum()
    return out, max(ends) - min(starts)


def machine() -> str:
    """This machine (CPU or GPU) in words: run the command where the pipeline ran."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return (f"{cpu_model_name()}, {len(os.sched_getaffinity(0))} cores, no GPU "
            f"(torch {torch.__version__})")


def _pct(stats: Mapping[str, Any] | None, key: str) -> str:
    return fmt_pct(stats.get(key)) if stats else DASH


def headline_rows(config: Mapping[str, Any], summary: Mapping[str, Any],
                  dataset: str) -> list[dict[str, str]]:
    """The headline table of one dataset: the teacher, then each student × setting."""
    entry = summary.get("datasets", {}).get(dataset, {})
    teacher = entry.get("teacher")
    rows = [{"model": config["models"]["teacher"], "bands": "teacher", "seeds": "1" if teacher
             else "0", "MSE": stat_text(teacher, "mse"), "MAE": stat_text(teacher, "mae"),
             "SSIM": stat_text(teacher, "ssim"), "MSE vs none": DASH, "MAE vs none": DASH}]
    for student in dataset_students(config, dataset):
        block = entry.get("students", {}).get(student, {})
        for bands in dataset_settings(config, dataset):
            is_none = band_setting(config["distill"], bands).setting == "none"
            stats = block.get("none") if is_none else block.get("settings", {}).get(bands)
            rows.append({
                "model": student, "bands": bands,
                "seeds": str(stats["n_seeds"]) if stats else "0",
                "MSE": stat_text(stats, "mse"), "MAE": stat_text(stats, "mae"),
                "SSIM": stat_text(stats, "ssim"),
                "MSE vs none": _paired(stats),
                "MAE vs none": _pct(stats, "mae_change_pct"),
            })
    return rows


def _paired(stats: Mapping[str, Any] | None) -> str:
    """The paired change of MSE vs none, with its 95 % interval when there is one."""
    if not stats or "mse_paired_change_pct" not in stats:
        return DASH
    text = fmt_pct(stats["mse_paired_change_pct"])
    low, high = stats.get("mse_paired_low_pct"), stats.get("mse_paired_high_pct")
    return f"{text} [{fmt_pct(low)}, {fmt_pct(high)}]" if has_interval(low, high) else text


def question_rows(config: Mapping[str, Any], summary: Mapping[str, Any],
                  dataset: str) -> list[dict[str, str]]:
    """The study's questions the dataset's runs answer (summary ``comparisons``)."""
    rows = []
    entry = summary.get("datasets", {}).get(dataset, {})
    for student in dataset_students(config, dataset):
        for c in entry.get("students", {}).get(student, {}).get("comparisons", ()):
            low, high = c.get("low_pct"), c.get("high_pct")
            rows.append({
                "model": student, "question": f"{c['treated']} vs {c['baseline']}",
                "seeds paired": str(c["n_pairs"]), "MSE change": fmt_pct(c["change_pct"]),
                "95 % CI": interval_text(low, high),
                "verdict": change_verdict(low, high),
            })
    return rows


def _text(value: str) -> str:
    """``value`` as literal markdown text on one line: no tag, entity or table cell
    border (names and devices come from the results' files)."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "&#124;")):
        value = value.replace(char, entity)
    return " ".join(value.split())


_TEXT_COLUMNS = ("model", "bands", "question", "verdict")


def _markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h in _TEXT_COLUMNS else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(_text(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def _first_gain_figure(figures: Path, config: Mapping[str, Any]) -> str:
    for entry in read_manifest(figures, config):
        if entry["kind"] == "gain":
            return entry["file"]
    raise SdkdError(f"{figures / MANIFEST}: lists no gain figure; name one with --figure")


def results_block(config: Mapping[str, Any], results: str | Path, readme_dir: str | Path,
                  *, figure: str | None = None, date: str | None = None) -> str:
    """The markdown between the README's markers (see the module docstring)."""
    results, readme_dir = Path(results), Path(readme_dir)
    summary = read_summary(results / "tables" / "summary.json", config)
    metrics = read_metrics(results / "tables" / "metrics.csv")
    devices = sorted({_text(str(d)) for d in metrics["train_device"].dropna()})
    date = date or dt.date.today().isoformat()
    parts = [START, "",
             f"Measured on {machine()}, {date}; training on {', '.join(devices) or '?'}. "
             "Test split, physical units, per pixel; MSE and MAE are means over seeds "
             "± their standard deviation; \"MSE vs none\" is the change against the same "
             "student trained on the ground truth alone (negative = better), the geometric "
             "mean over paired seeds with its 95 % paired t-interval in brackets; a verdict "
             "claims a difference only when that interval excludes zero.", ""]
    for dataset in config["datasets"]:
        parts += [f"**{dataset}**", "", _markdown(headline_rows(config, summary, dataset)), ""]
        if questions := question_rows(config, summary, dataset):
            parts += [_markdown(questions), ""]
    parts += [f"For comparison, {PAPER_CLAIM}.", ""]
    figure = figure or _first_gain_figure(results / "figures", config)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.png", figure):
        raise SdkdError(f"--figure {figure!r}: expected the file name of a PNG in "
                        f"{results / 'figures'}")
    source = results / "figures" / figure
    if not source.is_file():
        raise SdkdError(f"{source}: figure not found (see results/figures/figures.json)")
    parts += [f"![{figure}](docs/results/{figure})", ""]
    benchmarks = results / "benchmarks"
    if benchmarks.is_dir():
        stages, wall = stage_times(benchmarks)
        shares = ", ".join(f"{r.stage} {100 * r.share:.0f} %" for r in stages.itertuples())
        parts += [f"Pipeline wall time {wall / 60:.1f} min; share of the job time by stage: "
                  f"{shares}.", ""]
    parts.append(END)
    # the copy last: an input that fails above leaves nothing next to the README
    target = readme_dir / "docs" / "results" / figure
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return "\n".join(parts)


def update_readme(readme: str | Path, block: str) -> Path:
    """Replace the README's results block (markers included) with ``block``, atomically."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SdkdError(f"{readme}: no results block; it needs the lines\n{START}\n{END}")
    new = text[:start] + block + text[end + len(END):]
    with atomic_path(readme) as tmp:
        tmp.write_text(new, encoding="utf-8")
    return readme
