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
- the evaluation files named in ``metrics.csv`` (column ``eval_path``), read through
  :class:`sdkd.report.results.Results` for their per-band errors only; a file that
  cannot be read leaves that band table out with a note, it never stops the report.

The page
========

1. **Header**: title, generation time, how many runs are ok, and a reading guide.
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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.jsonfile import read_json
from sdkd.plan import MANIFEST
from sdkd.report.aggregate import SCHEMA_VERSION, read_metrics
from sdkd.report.fmt import DASH
from sdkd.report.provenance import read_provenance
from sdkd.report.results import Finding, Results
from sdkd.report.setup import setup_section
from sdkd.report.verdicts import verdicts
from sdkd.report.view import DatasetView

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUSES = ("ok", "missing", "invalid")


# ---- inputs -----------------------------------------------------------------------------


def _read_summary(path: Path) -> tuple[dict[str, Any], list[Finding]]:
    """The summary.json object and its consistency findings."""
    doc = read_json(path, what="summary", hint="run `sdkd aggregate` first")
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
        raise SdkdError(f"{path}: not a summary.json of `sdkd aggregate` (no `datasets` object)")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise SdkdError(
            f"{path}: schema_version is {doc.get('schema_version')!r}, expected "
            f"{SCHEMA_VERSION}; run `sdkd aggregate` again"
        )
    entries = doc.get("consistency")
    try:
        findings = [Finding(**entry) for entry in entries]
    except TypeError:
        raise SdkdError(
            f"{path}: `consistency` is not a list of findings (dataset, run, run_id, check, "
            "message); run `sdkd aggregate` again"
        ) from None
    return doc, findings


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
        "metrics_table": view.metrics_table(),
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
    summary, findings = _read_summary(summary_json)
    figures = _read_figures(figures_dir)
    provenance = [read_provenance(p) for p in data_files]
    names = [str(n) for n in config["datasets"]]
    for number, figure in enumerate(figures, start=1):
        figure["number"] = number

    results = Results(config, table)
    datasets = [_dataset(DatasetView(results, name, summary), figures, provenance,
                         name in summary["datasets"]) for name in names]
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
    page = _environment().get_template(TEMPLATE).render(
        title="Frequency-aligned knowledge distillation: results",
        subtitle=(f"{', '.join(names)} · teacher {config['models']['teacher']} · "
                  f"students {students}"),
        generated=generated.strftime("%Y-%m-%d %H:%M %Z"),
        runs=runs,
        warnings=_warnings(findings, names),
        none_key=results.none_key() or "none",
        datasets=datasets,
        global_figures=[f for f in figures if f["dataset"] not in names],
        setup=setup,
        debug_checks=debug_checks,
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


__all__ = ["render_report"]
