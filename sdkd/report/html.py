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
- the canonical HDF5 file of each dataset (:mod:`sdkd.data.preprocess`), for the data provenance;
- optionally the config file's text (shown as written, comments included);
- the evaluation files named in ``metrics.csv`` (column ``eval_path``), read through
  :class:`sdkd.report.results.Results` for their per-band errors only. The table says
  these runs are ok, so a file that is gone or fails the check now stops the report
  with an error naming it (it changed after ``sdkd aggregate``); a ``band_errors``
  section that is null leaves the run out of the band table, with a note.

Every input is checked before it is used (:func:`sdkd.report.aggregate.read_metrics`,
:func:`sdkd.report.aggregate.read_summary`, :func:`read_manifest`; each PNG at most
:data:`MAX_FIGURE_BYTES` and :data:`MAX_PNG_SIDE` pixels a side), and all text read from
them is escaped: the template escapes by default, and :mod:`sdkd.report.tables` escapes
every header and cell, so a name or note from a file can never become markup.

The page
========

1. **Header**: title, generation time, how many runs are ok, and a reading guide,
   with how to compare these results with another folder's (``sdkd compare``,
   :mod:`sdkd.report.compare`) and a relative link to its default page,
   ``compare.html`` beside this one.
   Then, only when ``summary.json`` lists consistency findings (runs trained with
   another config, from another teacher or on other data than the rest:
   :meth:`sdkd.report.results.Results.findings`), a **warning** section
   (``id="consistency"``) that lists each affected run and what differs.
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
:func:`sdkd.report.fmt.fmt_metric` (4 significant digits; SSIM 4 decimals; PSNR 2),
changes by :func:`sdkd.report.fmt.fmt_pct`. The spread of a % change is the sample
standard deviation over seeds of the distilled MSE, relative to the plain student's mean
MSE: ``100 · sd / mean_none``.

The parts: :mod:`sdkd.report.view` builds each dataset's tables,
:mod:`sdkd.report.verdicts` writes its verdicts, :mod:`sdkd.report.setup` the Setup
section (with :mod:`sdkd.report.provenance`); this module reads the inputs and renders
the page.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.jsonfile import read_bounded, read_json, shown
from sdkd.plan import MANIFEST, figure_plan
from sdkd.report.aggregate import read_metrics, read_summary
from sdkd.report.fmt import DASH
from sdkd.report.provenance import read_provenance
from sdkd.report.results import Finding, Results
from sdkd.report.setup import setup_section
from sdkd.report.verdicts import verdicts
from sdkd.report.view import DatasetView, paper_table

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUSES = ("ok", "missing", "invalid")
# Bounds on the figures embedded: sdkd's are 50–500 KB and under 3000 pixels a side.
MAX_FIGURE_BYTES = 16 * 2**20
MAX_PNG_SIDE = 16384


# ---- inputs -----------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, None unless 1 … MAX_PNG_SIDE each."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return size if all(1 <= n <= MAX_PNG_SIDE for n in size) else None


# A manifest entry's keys and their types, as sdkd.report.figures.Figure writes them.
ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "file": (str,), "dataset": (str, type(None)), "kind": (str,), "title": (str,),
    "caption": (str,), "placeholder": (bool,)}


def read_manifest(figures_dir: str | Path, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entries of ``figures_dir``'s ``figures.json``, checked: each an object with
    :data:`ENTRY_TYPES`, together the figures :func:`sdkd.plan.figure_plan` makes of
    ``config`` (each once, with its dataset and kind).

    Raises:
        SdkdError: naming the manifest (and the entry) and what is wrong.
    """
    path = Path(figures_dir) / MANIFEST
    manifest = read_json(path, what="figure manifest", hint="run `sdkd figures` first")
    if not isinstance(manifest, list):
        raise SdkdError(f"{path}: expected a JSON list of figures, got {type(manifest).__name__}")
    plan = {figure.file: figure for figure in figure_plan(config)}
    seen: set[str] = set()
    for i, entry in enumerate(manifest):
        if not isinstance(entry, dict):
            raise SdkdError(f"{path}: entry {i} is {shown(entry)}, expected an object")
        for key, types in ENTRY_TYPES.items():
            if key not in entry:
                raise SdkdError(f"{path}: entry {i} lacks `{key}`; run `sdkd figures` again")
            if not isinstance(entry[key], types):
                raise SdkdError(f"{path}: entry {i}: `{key}` is {shown(entry[key])}, expected "
                                f"{' or '.join(t.__name__ for t in types)}")
        figure = plan.get(entry["file"])
        if figure is None or entry["file"] in seen:
            why = "listed twice" if figure is not None else "not a figure of this config"
            raise SdkdError(f"{path}: entry {i}: file {shown(entry['file'])} is {why}; "
                            "run `sdkd figures` again")
        if (entry["dataset"], entry["kind"]) != (figure.dataset, figure.kind):
            raise SdkdError(f"{path}: entry {i}: {figure.file} is of dataset "
                            f"{shown(entry['dataset'])}, kind {shown(entry['kind'])}, expected "
                            f"{shown(figure.dataset)}, {shown(figure.kind)}")
        seen.add(entry["file"])
    lacking = [name for name in plan if name not in seen]
    if lacking:
        more = f" and {len(lacking) - 1} more" if len(lacking) > 1 else ""
        raise SdkdError(f"{path}: lacks {lacking[0]}{more} of this config's figures; run "
                        "`sdkd figures` again")
    return manifest


def _read_figures(figures_dir: Path, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's entries (:func:`read_manifest`), each with its PNG embedded
    (``src``, ``width``, ``height``)."""
    path = figures_dir / MANIFEST
    figures = []
    for entry in read_manifest(figures_dir, config):
        png = figures_dir / entry["file"]
        data = read_bounded(png, what="figure", hint=f"listed in {path}",
                            max_bytes=MAX_FIGURE_BYTES)
        size = _png_size(data)
        if size is None:
            raise SdkdError(f"{png}: not a PNG image of 1 … {MAX_PNG_SIDE} pixels a side "
                            f"(listed in {path})")
        figures.append({
            **entry,
            "id": "fig-" + Path(entry["file"]).stem,
            "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "width": size[0],
            "height": size[1],
        })
    return figures


# ---- the page ---------------------------------------------------------------------------


def environment() -> jinja2.Environment:
    """The Jinja2 environment of sdkd's pages (templates/, autoescaped, strict)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _warnings(findings: Sequence[Finding], names: Sequence[str]) -> list[dict[str, Any]]:
    """The findings per dataset (in config order), each run once with all its problems."""
    out = []
    for name in names:
        runs: dict[tuple[str, str], list[str]] = {}
        for finding in findings:
            if finding.dataset == name:
                runs.setdefault((finding.run, finding.run_id), []).append(finding.message)
        if runs:
            out.append({"dataset": name, "runs": [
                {"run": run, "run_id": run_id, "problems": problems}
                for (run, run_id), problems in runs.items()]})
    return out


def _dataset(view: DatasetView, figures: Sequence[Mapping[str, Any]],
             provenance: Sequence[Mapping[str, str]], in_summary: bool) -> dict[str, Any]:
    """What the template shows of one dataset."""
    counts = view.rows["status"].value_counts()
    return {
        "name": view.name,
        "id": f"dataset-{view.name}",
        "counts": {s: int(counts.get(s, 0)) for s in STATUSES},
        "expected": len(view.rows),
        "students": view.students,
        "settings": view.settings,
        "verdicts": verdicts(view),
        "summary_table": view.summary_table(),
        "comparison_table": view.comparison_table(),
        "tuning_table": view.tuning_table(),
        "spectrum_slope": view.spectrum_slope(),
        "metrics_table": view.metrics_table(),
        "channel_table": view.channel_table(),
        "channel_names": view.channels,
        "efficiency_table": view.efficiency_table(),
        "band_table": view.band_table(),
        "band_skipped": view.bands.skipped if view.bands is not None else [],
        "figures": [f for f in figures if f["dataset"] == view.name],
        "data": next((p for p in provenance if p.get("dataset") == view.name), None),
        "in_summary": in_summary,
    }


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
    summary = read_summary(summary_json, config)
    findings = [Finding(**entry) for entry in summary["consistency"]]
    figures = _read_figures(figures_dir, config)
    provenance = [read_provenance(p) for p in data_files]
    names = [str(n) for n in config["datasets"]]
    for number, figure in enumerate(figures, start=1):
        figure["number"] = number

    results = Results(config, table)
    views = [DatasetView(results, name, summary) for name in names]
    datasets = [_dataset(view, figures, provenance, view.name in summary["datasets"])
                for view in views]
    counts = table["status"].value_counts()
    runs = {"expected": len(table), **{s: int(counts.get(s, 0)) for s in STATUSES}}
    generated = dt.datetime.now(dt.UTC).astimezone()
    setup = setup_section(
        config, table, provenance, generated=generated, config_text=config_text,
        project_dir=project_dir if project_dir is not None else Path.cwd(),
        inputs={"metrics table": str(metrics_csv), "summary": str(summary_json),
                "figures": str(figures_dir / MANIFEST),
                "data files": ", ".join(str(p) for p in data_files) or DASH},
    )
    students = ", ".join(str(s) for s in config["models"]["students"])
    page = environment().get_template(TEMPLATE).render(
        title="Frequency-aligned knowledge distillation: results",
        subtitle=(f"{', '.join(names)} · teacher {config['models']['teacher']} · "
                  f"students {students}"),
        generated=generated.strftime("%Y-%m-%d %H:%M %Z"),
        runs=runs,
        warnings=_warnings(findings, names),
        none_key=results.none_key() or "none",
        datasets=datasets,
        paper_table=paper_table(views),
        global_figures=[f for f in figures if f["dataset"] not in names],
        setup=setup,
        debug_checks=debug_checks,
        # a hint, not a list of the compare pages there: those are no input of the
        # report's Snakemake rule, so a list would go stale without a rerun
        results_folder=str(out.parent),
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


__all__ = ["render_report"]
