"""``sdkd compare A B``: the metrics of two results folders side by side.

A and B are results folders: ``results/`` of a run, a named experiment's folder, or the
results of another commit checked out beside this one (docs/compare.md). Only their
``tables/metrics.csv`` is read, through :func:`sdkd.report.aggregate.read_metrics`
(bounded and checked); ``summary.json`` keeps means only, and the intervals need each
seed's value. A is the reference, B is judged against it.

Matching
========

A run of A and a run of B are the same run of the study when they have the same
(dataset, model, bands, seed); a teacher by (dataset, model) alone, as its seed is the
config's top-level ``seed``, not a variable of the study. Runs are compared per group,
one row per (dataset, role, model, bands) found in either table, A's order first:

- ``seeds A/B``: the ok runs of each side;
- ``<M> A``, ``<M> B`` for MSE, MAE and SSIM (the interval's metric first): mean over
  the ok runs, ``± sd`` (ddof 1) with two or more;
- ``<M> change``: the % change of B's mean against A's (negative = B lower); for SSIM,
  bounded and not a ratio, the difference B − A;
- ``<M> 95 % interval`` and ``test``, with two ok runs or more on each side, on the
  log values of ``metric`` (MSE by default; a positive error, so a log ratio is defined):
  when both sides ran the same ok seeds, the paired t-interval of the mean log ratio
  B/A seed by seed, :func:`sdkd.report.stats.paired_change`, the math of the report's
  "vs none" (seed s of two commits starts from the same weights and batches while the
  code that draws them is the same); otherwise Welch's unpaired t-interval,
  :func:`sdkd.report.stats.welch_change`. Either interval is of the geometric-mean
  change, so it can sit slightly off the change of the means beside it;
- ``verdict``: ``lower <M>`` or ``higher <M>`` only when the interval excludes zero,
  else ``no significant difference``; ``one seed: no interval`` when a side has one ok
  run; ``only in A``/``only in B`` for a group one table lacks;
- ``identity``: ``same`` when every run ok on both sides has the same ``run_id`` on
  both (the same config, data and teacher: normally the very same trained run),
  ``changed`` when every one differs, ``changed k of n`` otherwise;
- ``note``: seeds only one side has, and every run that is not ok, with its status.

The outputs: :func:`terminal_text` (aligned plain text) and :func:`render_page` (one
self-contained HTML page from ``templates/compare.html.j2``; every label, folder and
cell escaped; the only links are relative ones to the two folders' ``report.html``).
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from sdkd import __version__
from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.report.aggregate import read_metrics
from sdkd.report.fmt import DASH, finite, fmt_pct, plural, stat_text
from sdkd.report.html import environment
from sdkd.report.stats import CONFIDENCE, excludes_zero, interval_text, paired_change, welch_change
from sdkd.report.tables import html_table
from sdkd.report.view import group_status

METRICS_CSV = Path("tables") / "metrics.csv"
REPORT = "report.html"
PAGE = "compare.html"
"""The page's name in B by default: beside B's ``report.html``, which links to it."""
TEMPLATE = "compare.html.j2"

INTERVAL_METRICS = ("mse", "mae", "rmse", "rel_l2")
"""What ``--metric`` may name: errors, positive and lower-is-better, so that a log ratio
is defined and "lower" means better."""
SHOWN = ("mse", "mae", "ssim")
GROUP = ["dataset", "role", "model", "bands"]

ONLY_A, ONLY_B, ONE_SEED = "only in A", "only in B", "one seed: no interval"
NO_DIFFERENCE = "no significant difference"


@dataclass(frozen=True)
class Side:
    """One results folder: its ``label``, ``folder`` and metrics table."""

    label: str
    folder: Path
    table: pd.DataFrame

    @property
    def metrics_csv(self) -> Path:
        return self.folder / METRICS_CSV

    def runs_text(self) -> str:
        """``30 runs, 28 ok``."""
        ok = int((self.table["status"] == "ok").sum())
        return f"{plural(len(self.table), 'run')}, {ok} ok"


def read_side(folder: str | os.PathLike[str], label: str | None = None) -> Side:
    """The results folder ``folder`` with its checked ``tables/metrics.csv``; its label is
    ``label``, or the folder as given.

    Raises:
        SdkdError: naming the folder or the table, when either is missing or bad.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise SdkdError(f"{folder}: {what} (expected a results folder with {METRICS_CSV})")
    return Side(label or str(folder), folder, read_metrics(folder / METRICS_CSV))


@dataclass(frozen=True)
class Interval:
    """The 95 % interval of the % change of a metric of B against A over seeds."""

    paired: bool
    n_a: int
    n_b: int
    low_pct: float
    high_pct: float

    @property
    def test(self) -> str:
        """``paired t, 3 seeds`` or ``Welch t, 3 + 2 seeds``."""
        if self.paired:
            return f"paired t, {plural(self.n_a, 'seed')}"
        return f"Welch t, {self.n_a} + {plural(self.n_b, 'seed')}"


def seed_interval(a: pd.Series, b: pd.Series) -> Interval | str:
    """The interval of the change of B against A (module docstring), or why there is
    none; ``a`` and ``b`` hold one value per ok run, indexed by seed."""
    if min(len(a), len(b)) < 2:
        return ONE_SEED
    if not ((a > 0).all() and (b > 0).all()):
        return "no interval: a value ≤ 0"
    if set(a.index) == set(b.index):
        seeds = sorted(a.index)
        change = paired_change(b[seeds].to_numpy(), a[seeds].to_numpy())
        return Interval(True, len(seeds), len(seeds), change.low_pct, change.high_pct)
    _, low, high = welch_change(b.to_numpy(), a.to_numpy())
    return Interval(False, len(a), len(b), low, high)


@dataclass(frozen=True)
class Group:
    """The runs of one (dataset, role, model, bands) in A and in B (None: not there).

    ``pair`` keys a run within its group: its seed, or -1 for a teacher (module
    docstring).
    """

    key: tuple[str, str, str, str]
    a: pd.DataFrame | None
    b: pd.DataFrame | None

    def ok(self, side: pd.DataFrame | None, metric: str) -> pd.Series:
        """``metric`` of the side's ok runs, indexed by ``pair``."""
        if side is None:
            return pd.Series(dtype=float)
        return side[side["status"] == "ok"].set_index("pair")[metric]

    def stats(self, side: pd.DataFrame | None, metric: str) -> dict[str, float]:
        """``{metric: mean, metric_std: sd}`` over the ok runs (as summary.json has them)."""
        values = self.ok(side, metric)
        out = {metric: float(values.mean())} if len(values) else {}
        if len(values) > 1:
            out[f"{metric}_std"] = float(values.std(ddof=1))
        return out

    def change(self, metric: str) -> str:
        """B's mean against A's: % change, or for SSIM the difference."""
        a = self.stats(self.a, metric).get(metric, math.nan)
        b = self.stats(self.b, metric).get(metric, math.nan)
        if metric == "ssim":
            return f"{b - a:+.4f}" if finite(b - a) else DASH
        return fmt_pct(100.0 * (b - a) / a if finite(a) and a != 0 else None)

    def interval(self, metric: str) -> Interval | str:
        """The interval of ``metric``, or the verdict that stands for one."""
        if self.a is None or self.b is None:
            return ONLY_A if self.b is None else ONLY_B
        a, b = self.ok(self.a, metric), self.ok(self.b, metric)
        if not len(a) or not len(b):
            return f"no ok run in {'A' if not len(a) else 'B'}"
        return seed_interval(a, b)

    def verdict(self, metric: str) -> str:
        interval = self.interval(metric)
        if isinstance(interval, str):
            return interval
        if excludes_zero(interval.low_pct, interval.high_pct):
            return f"{'lower' if interval.high_pct < 0 else 'higher'} {metric.upper()}"
        return NO_DIFFERENCE

    def identity(self) -> str:
        """Whether the runs ok on both sides are the same runs, by their run_id."""
        if self.a is None or self.b is None:
            return DASH
        ids = [frame[frame["status"] == "ok"].set_index("pair")["run_id"]
               for frame in (self.a, self.b)]
        common = ids[0].index.intersection(ids[1].index)
        if not len(common):
            return DASH
        changed = int((ids[0][common] != ids[1][common]).sum())
        if not changed:
            return "same"
        return "changed" if changed == len(common) else f"changed {changed} of {len(common)}"

    def notes(self) -> str:
        """The seeds one side lacks and the runs that are not ok, with their status."""
        notes = []
        if self.a is not None and self.b is not None:
            for name, mine, other in (("A", self.a, self.b), ("B", self.b, self.a)):
                alone = sorted(set(mine["pair"]) - set(other["pair"]))
                if alone:
                    notes.append(f"{_seeds(alone)} only in {name}")
        for name, side in (("A", self.a), ("B", self.b)):
            if side is None:
                continue
            for status, runs in side[side["status"] != "ok"].groupby("status", sort=False):
                teacher = self.key[1] == "teacher"
                notes.append(f"{name}: {status}" if teacher
                             else f"{name}: {_seeds(sorted(runs['pair']))} {status}")
        return "; ".join(notes)

    def status(self) -> str:
        """The row's class on the page: ok (every run of both sides ok), partial (some,
        or a group one side lacks), invalid or missing (no ok run)."""
        sides = [side for side in (self.a, self.b) if side is not None]
        status = group_status(pd.concat([side["status"] for side in sides]))
        return "partial" if status == "ok" and len(sides) == 1 else status


def _seeds(seeds: Sequence[int]) -> str:
    """``seed 2``, ``seeds 0, 1``."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(int(s)) for s in seeds)}"


def _groups(table: pd.DataFrame) -> dict[tuple[str, str, str, str], pd.DataFrame]:
    """The rows of a metrics table per (dataset, role, model, bands), in table order,
    each with its ``pair`` key (:class:`Group`)."""
    table = table.assign(bands=table["bands"].fillna(""),
                         pair=table["seed"].where(table["role"] == "student", -1))
    # dropna=False: a row with an empty name is still a row, never silently left out
    return {key: rows for key, rows in table.groupby(GROUP, sort=False, dropna=False)}


@dataclass(frozen=True)
class Comparison:
    """The groups of A and B (:class:`Group`), the interval's ``metric``."""

    a: Side
    b: Side
    metric: str
    groups: list[Group]

    @property
    def metrics(self) -> list[str]:
        """The metrics shown, the interval's first."""
        return [self.metric, *(m for m in SHOWN if m != self.metric)]

    def frame(self, *, terminal: bool = False) -> pd.DataFrame:
        """One row of text per group (module docstring), the interval's metric and verdict
        first; the terminal's drops the means of the other metrics, to fit a screen."""
        rows = []
        for group in self.groups:
            dataset, role, model, bands = group.key
            interval = group.interval(self.metric)
            row = {"dataset": dataset, "model": model,
                   "bands": "teacher" if role == "teacher" else bands,
                   "seeds A/B": "/".join(str(len(group.ok(side, self.metric)))
                                         if side is not None else DASH
                                         for side in (group.a, group.b))}
            for metric in self.metrics:  # the interval's metric, its interval, the others
                name = metric.upper()
                if not terminal or metric == self.metric:
                    row[f"{name} A"] = stat_text(group.stats(group.a, metric), metric)
                    row[f"{name} B"] = stat_text(group.stats(group.b, metric), metric)
                row[f"{name} change"] = group.change(metric)
                if metric == self.metric:
                    has = isinstance(interval, Interval)
                    row[f"{name} 95 % interval"] = (
                        interval_text(interval.low_pct, interval.high_pct) if has else DASH)
                    row |= {"test": interval.test if has else DASH,
                            "verdict": group.verdict(metric), "identity": group.identity()}
            row["note"] = group.notes()
            rows.append(row)
        return pd.DataFrame(rows)

    def numeric(self) -> list[str]:
        """The columns of numbers (right-aligned)."""
        return ["seeds A/B", *(f"{m.upper()} {what}" for m in self.metrics
                               for what in ("A", "B", "change")),
                f"{self.metric.upper()} 95 % interval"]

    def summary(self) -> str:
        """``12 groups of runs in both: lower MSE (3), …; 2 only in A, 0 only in B.``"""
        verdicts = collections.Counter(g.verdict(self.metric) for g in self.groups)
        both = len(self.groups) - verdicts[ONLY_A] - verdicts[ONLY_B]
        first = [f"lower {self.metric.upper()}", f"higher {self.metric.upper()}", NO_DIFFERENCE]
        order = [*first, *sorted(set(verdicts) - {*first, ONLY_A, ONLY_B})]
        counts = [f"{v} ({verdicts[v]})" for v in order if verdicts[v]]
        return (f"{plural(both, 'group')} of runs in both: {', '.join(counts) or 'none'}; "
                f"{verdicts[ONLY_A]} {ONLY_A}, {verdicts[ONLY_B]} {ONLY_B}.")

    def method(self) -> str:
        """What the intervals are, in a sentence."""
        return (f"{CONFIDENCE * 100:.0f} % interval of the change of {self.metric.upper()} on log "
                "values: paired t over the seeds where both sides ran the same ok seeds "
                "(the report's 'vs none' math), else Welch's unpaired t.")


def compare(a: Side, b: Side, metric: str = "mse") -> Comparison:
    """The groups of A and B side by side, with intervals on ``metric``.

    Raises:
        SdkdError: for a metric that is not one of :data:`INTERVAL_METRICS`, or when A
            and B have no group of runs in common.
    """
    if metric not in INTERVAL_METRICS:
        raise SdkdError(f"cannot compare on {metric!r}: expected one of "
                        f"{', '.join(INTERVAL_METRICS)}")
    in_a, in_b = _groups(a.table), _groups(b.table)
    keys = [*in_a, *(key for key in in_b if key not in in_a)]
    if not any(key in in_b for key in in_a):
        raise SdkdError(f"{a.metrics_csv} and {b.metrics_csv} have no run in common (same "
                        "dataset, model and band setting): nothing to compare")
    return Comparison(a, b, metric, [Group(key, in_a.get(key), in_b.get(key)) for key in keys])


# ---- outputs ----------------------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` with control and format characters written as escapes: a name read from
    a file must not move the cursor or recolour the terminal."""
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def terminal_text(comparison: Comparison) -> str:
    """The comparison as plain text: who A and B are, the aligned table, the counts."""
    frame = comparison.frame(terminal=True)
    numeric = set(comparison.numeric())
    cells = [[printable(str(c)) for c in row]
             for row in [list(frame.columns), *frame.itertuples(index=False, name=None)]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(frame.columns))]
    lines = ["  ".join(text.rjust(width) if column in numeric else text.ljust(width)
                       for column, text, width in zip(frame.columns, row, widths, strict=True)
                       ).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    sides = [f"{name}: {printable(side.label)} ({printable(str(side.metrics_csv))}: "
             f"{side.runs_text()})" for name, side in (("A", comparison.a), ("B", comparison.b))]
    return "\n".join([*sides, "", *lines, "", comparison.summary(), comparison.method()])


def _link(target: Path, page: Path) -> str | None:
    """A relative, URL-quoted link from ``page`` to ``target``; None when there is no
    such file. Quoted, and ./-prefixed, so that no folder name reads as a scheme."""
    if not target.is_file():
        return None
    relative = quote(Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix())
    return relative if relative.startswith("../") else "./" + relative


def render_page(comparison: Comparison, out: str | os.PathLike[str]) -> Path:
    """Write the comparison's page to ``out`` atomically and return ``out``."""
    out = Path(out)
    frame = comparison.frame()
    table = html_table(frame, "compare", numeric=comparison.numeric(),
                       row_status=[g.status() for g in comparison.groups],
                       extra={"note": "note", "verdict": "verdict"})
    sides = [{"name": name, "label": side.label, "folder": str(side.folder),
              "runs": side.runs_text(), "report": _link(side.folder / REPORT, out)}
             for name, side in (("A", comparison.a), ("B", comparison.b))]
    page = environment().get_template(TEMPLATE).render(
        sides=sides, table=table, metric=comparison.metric.upper(),
        summary=comparison.summary(), method=comparison.method(), version=__version__,
        generated=dt.datetime.now(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def compare_folders(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
                    label_a: str | None = None, label_b: str | None = None,
                    out: str | os.PathLike[str] | None = None,
                    metric: str = "mse") -> tuple[str, Path]:
    """``sdkd compare``: read A and B, write the page (default ``B/compare.html``), and
    return the terminal text and the page's path.

    Raises:
        SdkdError: naming the folder or file at fault; nothing is written then.
    """
    side_a, side_b = read_side(a, label_a), read_side(b, label_b)
    comparison = compare(side_a, side_b, metric)
    page = render_page(comparison, Path(out) if out is not None else side_b.folder / PAGE)
    return terminal_text(comparison), page
