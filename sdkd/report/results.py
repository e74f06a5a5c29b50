"""The results of one config, as the summary, the figures and the page read them.

:class:`Results` joins the runs the config asks for (:func:`sdkd.plan.expected_runs`)
with the metrics table of :mod:`sdkd.report.aggregate`, and reads each run's evaluation
file (through :mod:`sdkd.evaluate.format`) and training history when asked. It answers
the questions that several outputs ask, so that each has one answer:

- which runs: :meth:`Results.runs` (by dataset, role, model, band key; ok only);
- which channels have metrics of their own: :meth:`Results.channels` (the metrics
  table's per-channel columns, :func:`channel_column`);
- the plain baseline of a student: :meth:`Results.none_key` (:func:`none_key`);
- the best setting of a student: :meth:`Results.best`;
- the band errors of a dataset's runs: :meth:`Results.band_errors`;
- a run's training history: :meth:`Results.history`;
- whether the runs belong together: :meth:`Results.findings`.

Findings (one :class:`Finding` per problem; ``summary.json`` lists them and the page
warns with them), per dataset, over the runs whose evaluation file is usable:

- ``config``: the run's ``identity.spec`` is not the :func:`sdkd.plan.run_spec` of the
  config being reported ("trained with another config (run → this config): " and the
  first changed keys, with the run's value and the config's);
- ``teacher``: a distilled student's ``identity.inputs.teacher`` is not the
  ``weights_sha256`` of the dataset's evaluated teacher ("distilled from another
  teacher");
- ``data``: the run's ``identity.inputs.data`` differs from the fingerprint most of
  the dataset's runs share, the earliest run in report order (the teacher first)
  deciding a tie ("trained on other data").
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sdkd.errors import SdkdError
from sdkd.evaluate.format import (
    Bands,
    InvalidEvaluation,
    RunIdentity,
    band_errors,
    identity,
    read_evaluation,
)
from sdkd.plan import (
    band_setting,
    dataset_settings,
    dataset_students,
    expected_runs,
    identity_changes,
    run_spec,
)
from sdkd.report.csvfile import numbers, read_csv

# How many identity changes a `config` finding spells out.
CHANGES_SHOWN = 3

CHANNEL_METRICS = ("mse", "ssim")
"""The metrics that the metrics table and the page show per channel, for a dataset of
more than one channel: the error, and the structure (each SSIM with its channel's own
data range)."""

_CHANNEL_COLUMN = re.compile(rf"({'|'.join(CHANNEL_METRICS)})\[(.*)\]", re.DOTALL)


def channel_column(metric: str, channel: str) -> str:
    """The metrics table's column of ``metric`` on one channel: ``mse[2m_temperature]``."""
    return f"{metric}[{channel}]"


def column_channel(column: Any) -> tuple[str, str] | None:
    """(metric, channel) of a :func:`channel_column`; None for any other column."""
    found = _CHANNEL_COLUMN.fullmatch(column) if isinstance(column, str) else None
    return (found[1], found[2]) if found else None


def run_label(run: Mapping[str, Any]) -> str:
    """Short name of a run: ``dataset/teacher-small`` or ``dataset/unet-s/dual/seed-0``."""
    if run["role"] == "teacher":
        return f"{run['dataset']}/{run['model']}"
    return f"{run['dataset']}/{run['model']}/{run['bands']}/seed-{run['seed']}"


def none_key(config: Mapping[str, Any], dataset: str | None = None) -> str | None:
    """The plain-student key (``none``, else the first key of method none) among the band
    settings of ``dataset``, or of the whole config; None when there is none."""
    keys = (list(config["distill"]["settings"]) if dataset is None
            else dataset_settings(config, dataset))
    plain = [k for k in keys if band_setting(config["distill"], k).setting == "none"]
    return "none" if "none" in plain else (plain[0] if plain else None)


@dataclass(frozen=True)
class Finding:
    """A run that does not belong with the others of its report (see the module doc)."""

    dataset: str
    run: str
    run_id: str
    check: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetBands:
    """The band errors of a dataset's ok runs: ``cutoffs`` of the first section, (run,
    its section) of every run with those cutoffs, and the labels of the ok runs
    ``skipped`` (a null section, or other cutoffs)."""

    cutoffs: tuple[float, ...]
    runs: list[tuple[dict[str, Any], Bands]]
    skipped: list[str]


def _first(changes: list[str]) -> str:
    more = len(changes) - CHANGES_SHOWN
    return "; ".join(changes[:CHANGES_SHOWN]) + (f" (and {more} more)" if more > 0 else "")


class Results:
    """The expected runs of ``config`` with their row of the metrics table ``table``.

    Args:
        eval_root: where the evaluation files are (``{eval_root}/{eval_file}``); by
            default the table's ``eval_path``, the file the table was made from.
        runs_root: the results folder with ``teachers/`` and ``students/`` (their
            ``history.csv``), for :meth:`history`.
    """

    def __init__(self, config: Mapping[str, Any], table: pd.DataFrame, *,
                 eval_root: Path | None = None, runs_root: Path | None = None) -> None:
        self.config = config
        self.teacher = str(config["models"]["teacher"])
        self.students = [str(s) for s in config["models"]["students"]]
        self.eval_root = eval_root
        self.runs_root = runs_root
        known = {
            (r["dataset"], r["model"], r["bands"] or "", int(r["seed"])): r
            for r in table.to_dict("records")
        }
        rows = []
        for run in expected_runs(config):
            row = known.get((run["dataset"], run["model"], run["bands"] or "", run["seed"]))
            if row is None:
                row = {"status": "missing", "note": "not in the metrics table"}
            rows.append({**row, **run})
        self.frame = pd.DataFrame(rows)
        self._docs: dict[Path, dict[str, Any]] = {}
        self._histories: dict[Path, pd.DataFrame] = {}

    # ---- runs

    def runs(self, dataset: str | None = None, role: str | None = None,
             model: str | None = None, bands: str | None = None, *,
             ok: bool = False) -> pd.DataFrame:
        """The rows of the runs that match every argument given, in report order."""
        frame = self.frame
        # one mask, one copy: the tables ask this hundreds of times
        keep = pd.Series(True, index=frame.index)
        for column, value in (("dataset", dataset), ("role", role), ("model", model),
                              ("bands", bands), ("status", "ok" if ok else None)):
            if value is not None:
                keep &= frame[column] == value
        return frame[keep]

    def channels(self, dataset: str) -> list[str]:
        """The channels of ``dataset`` that have metrics of their own in the table (in
        column order); [] for a dataset of one channel, whose overall metrics are its
        channel's."""
        rows = self.runs(dataset)
        return [parsed[1] for column in self.frame.columns
                if (parsed := column_channel(column)) is not None
                and parsed[0] == CHANNEL_METRICS[0] and rows[column].notna().any()]

    def students_of(self, dataset: str) -> list[str]:
        """The students ``dataset`` runs, in the order of ``models.students``."""
        return [str(s) for s in dataset_students(self.config, dataset)]

    def settings_of(self, dataset: str) -> list[str]:
        """The band keys ``dataset`` runs, in the order of ``distill.settings``."""
        return [str(s) for s in dataset_settings(self.config, dataset)]

    def method(self, key: str) -> str:
        """The method (``none``, ``dual``, ...) of a band key (``dual_c8``, ...)."""
        return band_setting(self.config["distill"], key).setting

    def none_key(self, dataset: str | None = None) -> str | None:
        """The plain-student key of ``dataset`` (or of the config): :func:`none_key`."""
        return none_key(self.config, dataset)

    def best(self, dataset: str, model: str) -> str | None:
        """The distilled band key of ``model`` on ``dataset`` with the lowest mean test
        MSE over its ok seeds (the first in report order on a tie); None without one."""
        rows = self.runs(dataset, "student", model, ok=True)
        rows = rows[rows["setting"] != "none"]
        if rows.empty:
            return None
        return str(rows.groupby("bands", sort=False)["mse"].mean().idxmin())

    # ---- files

    def doc(self, run: Mapping[str, Any]) -> dict[str, Any] | None:
        """The checked evaluation file of an ``ok`` run; None for a run that is not ok.

        Raises:
            SdkdError: when the file of an ok run is gone or fails the check: it changed
                after the metrics table was made, and showing the run without it, or
                leaving it out, would be silently partial.
        """
        if run["status"] != "ok":
            return None
        path = (self.eval_root / run["eval_file"] if self.eval_root is not None
                else Path(run["eval_path"]))
        if path not in self._docs:
            try:
                self._docs[path] = read_evaluation(path, run)
            except InvalidEvaluation as exc:
                raise SdkdError(f"{exc} (the metrics table lists {run_label(run)} as ok: the "
                                "file changed since; run `sdkd aggregate` again)") from None
        return self._docs[path]

    def docs(self, runs: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(run, evaluation file) of the ok runs among ``runs``."""
        return [(run, doc) for run in runs.to_dict("records")
                if (doc := self.doc(run)) is not None]

    def band_errors(self, dataset: str) -> DatasetBands | None:
        """The band errors of ``dataset``'s ok runs; None when every file's section is
        null."""
        cutoffs: tuple[float, ...] | None = None
        found, skipped = [], []
        for run in self.runs(dataset, ok=True).to_dict("records"):
            doc = self.doc(run)
            bands = band_errors(doc) if doc is not None else None
            if bands is None:
                skipped.append(run_label(run))
                continue
            if cutoffs is None:
                cutoffs = bands.cutoffs
            if bands.cutoffs != cutoffs:
                skipped.append(run_label(run) + " (other cutoffs)")
                continue
            found.append((run, bands))
        return DatasetBands(cutoffs, found, skipped) if cutoffs is not None else None

    def history(self, run: Mapping[str, Any]) -> pd.DataFrame | None:
        """The run's ``history.csv`` under ``runs_root`` (one row per epoch, numbers in
        every column but ``device``), or None when there is none.

        Raises:
            SdkdError: naming the file, when it is there but not such a table.
        """
        if self.runs_root is None:
            return None
        path = self.runs_root / run["run_dir"] / "history.csv"
        if not path.exists():
            return None
        if path not in self._histories:
            frame = read_csv(path, what="training history", required=("epoch",))
            for column in frame.columns:
                if column != "device":
                    frame[column] = numbers(frame, column, path)
            self._histories[path] = frame
        return self._histories[path]

    # ---- do the runs belong together?

    def spec(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """What the reported config says the run is: its :func:`sdkd.plan.run_spec`."""
        if run["role"] == "teacher":
            return run_spec(self.config, run["dataset"], "teacher")
        return run_spec(self.config, run["dataset"], "student", run["model"], run["bands"],
                        int(run["seed"]))

    def findings(self) -> list[Finding]:
        """Every run whose identity does not fit this report (see the module docstring),
        one entry per problem, in report order."""
        out = []
        for dataset in self.config["datasets"]:
            runs = [(run, identity(doc)) for run, doc in self.docs(self.runs(dataset))]
            if not runs:
                continue
            teacher = next((ident.weights for run, ident in runs if run["role"] == "teacher"),
                           None)
            # most_common sorts stably: on a tie the fingerprint seen first wins
            data = collections.Counter(i.data for _, i in runs).most_common(1)[0]
            for run, ident in runs:
                out += [Finding(dataset, run_label(run), ident.run_id, check, message)
                        for check, message in self._problems(run, ident, teacher, data,
                                                             len(runs))]
        return out

    def _problems(self, run: Mapping[str, Any], ident: RunIdentity, teacher: str | None,
                  data: tuple[str, int], n_runs: int) -> list[tuple[str, str]]:
        """(check, message) of each way one run does not fit: ``teacher`` is the evaluated
        teacher's weights (None: no teacher to compare with), ``data`` the fingerprint most
        of the dataset's ``n_runs`` runs share and how many do."""
        problems = []
        changes = identity_changes(ident.spec, self.spec(run), "spec")
        if changes:
            problems.append(("config", "trained with another config (run → this config): "
                                       + _first(changes)))
        distilled = run["role"] == "student" and run["setting"] != "none"
        if distilled and teacher is not None and ident.teacher != teacher:
            problems.append(("teacher", f"distilled from another teacher: its teacher's "
                                        f"weights are {str(ident.teacher)[:12]}…, the "
                                        f"evaluated teacher's {teacher[:12]}…"))
        usual, n_usual = data
        if ident.data != usual:
            problems.append(("data", f"trained on other data: data fingerprint "
                                     f"{ident.data[:12]}…, where {n_usual} of the dataset's "
                                     f"{n_runs} evaluated runs have {usual[:12]}…"))
        return problems
