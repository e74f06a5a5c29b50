"""The run grid of a config: which runs and which figures it asks for, nothing else.

This module is what the Snakefile imports to build its DAG (``workflow/rules/common.smk``),
so it must stay light: the standard library only, no numpy, pandas, matplotlib or
torch. ``sdkd -n``-style planning of a paper-sized grid then costs milliseconds, not the
seconds those imports take. The heavy modules build on it:

- :func:`band_setting` resolves one ``distill.settings`` key (the method named by the
  key or by ``setting:``, cutoffs, weights, the teacher feature of each band, and
  ``lam``/``latent_weight``/``output_weight``/``normalize_bands``/
  ``standardize_latents``/``seeds`` with the ``distill`` block's defaults);
  :mod:`sdkd.distill.settings` adds the loss it trains with.
- :func:`dataset_students` / :func:`dataset_settings` give the students and band
  settings a dataset runs (its ``students:``/``settings:`` subset, or all of them).
- :func:`expected_runs` lists every run (teacher and students × band settings × seeds)
  in report order; :mod:`sdkd.report.aggregate` makes its table from it.
- :func:`figure_plan` / :func:`figure_files` name the report's figures;
  :mod:`sdkd.report.figures` draws them.
- :func:`run_spec` says what a training run depends on, as far as the config decides
  it; :func:`run_identity` adds the fingerprints of the files it reads, and
  :func:`run_id` names the result. The rules pass the spec as a param (a change reruns
  the job) and the job stores the identity in its checkpoints (a change restarts
  training instead of resuming): one definition decides both.
- :func:`results_root` is the folder of an experiment's derived files (``results`` for
  the embedded default, ``results/experiments/<name>`` for a named one), and
  :func:`raw_dir` the folder of a dataset's raw file, keyed by :func:`raw_identity` for
  a named experiment so that experiments share equal raw data and never overwrite
  each other's.

The config is the validated one (schema defaults filled, as ``sdkd.config.validate``
leaves it; the Snakefile calls it too).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from sdkd.errors import SdkdError

# The methods a band setting can name (README, "Models and distillation"); the same tuple as
# sdkd.distill.losses.SETTINGS, kept here so that planning does not import torch
# (tests/test_snakefile.py checks that the two agree).
SETTINGS = (
    "none", "low", "high", "dual", "multi", "sdkd_latent", "decoupled", "output", "fitnet",
)

# The methods that align frequency bands (the others are KD baselines or none), and
# those of them without the forecast-level term.
FREQUENCY_SETTINGS = ("low", "high", "dual", "multi", "sdkd_latent", "decoupled")
LATENT_ONLY_SETTINGS = ("sdkd_latent", "decoupled")

# The teacher features the bands of `decoupled` align to when its setting names none:
# the low band to the attention path, the high band to the convolution path.
DECOUPLED_FEATURES = ("attn_path", "conv_path")

# The keys of a band setting that its `tune:` grid may search (every value it sets
# itself, apart from the method and its seeds).
TUNABLE_KEYS = (
    "cutoffs", "weights", "features", "lam", "latent_weight", "output_weight",
    "normalize_bands", "standardize_latents",
)
_TUPLE_KEYS = ("cutoffs", "weights", "features")

# The figure manifest written beside the PNGs (sdkd.report.figures).
MANIFEST = "figures.json"

# Figure kinds, in the order of the report; workflow/report/<kind>.rst captions each.
FIGURE_KINDS = ("gain", "lead_time", "spectrum", "band_error", "samples", "training", "cost")


# ---- band settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class BandSetting:
    """One resolved ``distill.settings`` entry (see :func:`band_setting`)."""

    key: str
    setting: str
    cutoffs: tuple[float, ...] | None
    weights: tuple[float, ...] | None
    features: tuple[str, ...] | None
    lam: float
    latent_weight: float
    output_weight: float
    normalize_bands: bool
    standardize_latents: bool
    seeds: tuple[int, ...]
    tune: dict[str, list[Any]] | None = None

    def values(self) -> dict[str, Any]:
        """The fields as keyword arguments (to build a subclass from a plain setting)."""
        return {f.name: getattr(self, f.name) for f in fields(BandSetting)}

    def points(self) -> list[dict[str, Any]]:
        """The grid of a tuned setting: one dict of values per point, the Cartesian product
        of its ``tune`` lists in sorted key order (the last key varies fastest); ``[]``
        for a setting without ``tune``."""
        if not self.tune:
            return []
        keys = sorted(self.tune)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.tune[k] for k in keys))]

    def first_point(self) -> BandSetting:
        """This setting as one of its runs trains: itself, or a tuned setting with the
        first point of its grid (for what any point of it costs)."""
        return self.with_values(self.points()[0]) if self.tune else self

    def with_values(self, values: Mapping[str, Any]) -> BandSetting:
        """This setting with ``values`` (a point of :meth:`points`, or the choice of the
        tuning stage) in place of its own, and no grid left to search."""
        unknown = set(values) - set(TUNABLE_KEYS)
        if unknown:
            raise SdkdError(f"band setting {self.key!r}: {sorted(unknown)} cannot be tuned; "
                            f"tunable keys are {', '.join(TUNABLE_KEYS)}")
        fixed = {k: tuple(v) if k in _TUPLE_KEYS and v is not None else v
                 for k, v in values.items()}
        return replace(self, tune=None, **fixed)


def band_setting(distill: Mapping[str, Any], key: str) -> BandSetting:
    """Resolve ``distill.settings[key]`` with the ``distill`` block's defaults.

    The key is the method itself (one of :data:`SETTINGS`) or, with ``setting:``, a
    named variant of one (``dual_c8: {setting: dual, cutoffs: [8]}``).

    Raises:
        SdkdError: for an unknown key, or a key that names no method and gives no
            ``setting:``.
    """
    settings = distill["settings"]
    if key not in settings:
        raise SdkdError(
            f"unknown band setting {key!r}: config defines {', '.join(settings)}"
        )
    entry = settings[key]
    setting = entry.get("setting", key)
    if setting not in SETTINGS:
        raise SdkdError(
            f"distill.settings.{key}: {key!r} is not a method ({', '.join(SETTINGS)}); "
            "name the method with `setting:` to make it a variant"
        )
    cutoffs, weights, features = (entry.get(k) for k in ("cutoffs", "weights", "features"))
    if setting == "decoupled" and features is None:
        features = DECOUPLED_FEATURES
    return BandSetting(
        key=key,
        setting=setting,
        cutoffs=tuple(cutoffs) if cutoffs is not None else None,
        weights=tuple(weights) if weights is not None else None,
        features=tuple(features) if features is not None else None,
        lam=entry.get("lam", distill["lam"]),
        latent_weight=entry.get("latent_weight", distill["latent_weight"]),
        output_weight=entry.get("output_weight", distill["output_weight"]),
        normalize_bands=entry.get("normalize_bands", distill["normalize_bands"]),
        standardize_latents=entry.get("standardize_latents", distill["standardize_latents"]),
        seeds=tuple(entry.get("seeds", distill["seeds"])),
        tune={k: list(v) for k, v in entry["tune"].items()} if entry.get("tune") else None,
    )


# ---- the grid of each dataset -------------------------------------------------------------


def _subset(names: list[str], chosen: list[str] | None) -> list[str]:
    """``names`` restricted to ``chosen`` (all of them when ``chosen`` is absent).

    The config's order is kept, not the subset's, so that a student or setting sits at
    the same place (and keeps its colour) in every dataset's tables and figures.
    """
    if chosen is None:
        return list(names)
    wanted = set(chosen)
    return [name for name in names if name in wanted]


def dataset_students(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The students ``dataset`` runs: its ``students:`` list, or all of ``models.students``,
    in the order of ``models.students``."""
    chosen = config["datasets"][dataset].get("students")
    return _subset(list(config["models"]["students"]), chosen)


def dataset_settings(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The band-setting keys ``dataset`` runs: its ``settings:`` list, or every key of
    ``distill.settings``, in the order of ``distill.settings``."""
    chosen = config["datasets"][dataset].get("settings")
    return _subset(list(config["distill"]["settings"]), chosen)


# ---- runs ---------------------------------------------------------------------------------


def split_name(name: str) -> tuple[str, str]:
    """(family, size) of a registry name ``family-size``."""
    family, _, size = name.rpartition("-")
    return (family, size) if family else (name, "")


def expected_runs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run the config asks for, in report order.

    Per dataset: the teacher, then each of its students (:func:`dataset_students`) ×
    band settings (:func:`dataset_settings`) × seeds. Each entry has
    the identity columns (``dataset, role, model, family, size, bands, setting, seed``;
    ``bands``/``setting`` are ``None`` for the teacher, whose seed is the config's
    top-level ``seed``) plus ``eval_file``, the evaluation file relative to the eval
    root, and ``run_dir``, the training folder relative to the results root (it holds
    ``done.json``, ``best.pt`` and ``history.csv``).
    """
    teacher = config["models"]["teacher"]
    resolved = {key: band_setting(config["distill"], key) for key in config["distill"]["settings"]}
    runs: list[dict[str, Any]] = []
    for dataset in config["datasets"]:
        settings = [resolved[key] for key in dataset_settings(config, dataset)]
        family, size = split_name(teacher)
        runs.append({
            "dataset": dataset, "role": "teacher", "model": teacher, "family": family,
            "size": size, "bands": None, "setting": None, "seed": int(config["seed"]),
            "eval_file": f"{dataset}/teacher/{teacher}.json",
            "run_dir": f"teachers/{dataset}/{teacher}",
        })
        for student in dataset_students(config, dataset):
            family, size = split_name(student)
            for bs in settings:
                for seed in bs.seeds:
                    runs.append({
                        "dataset": dataset, "role": "student", "model": student,
                        "family": family, "size": size, "bands": bs.key,
                        "setting": bs.setting, "seed": int(seed),
                        "eval_file": f"{dataset}/{student}/{bs.key}/seed-{seed}.json",
                        "run_dir": f"students/{dataset}/{student}/{bs.key}/seed-{seed}",
                    })
    return runs


# ---- the tuning stage ---------------------------------------------------------------------
#
# A band setting with a `tune:` grid has its values chosen inside the pipeline: one
# student (the dataset's first) trains once per grid point with the tuning seed, the
# point with the lowest validation MSE is written to results/tuning/{dataset}/{bands}.json,
# and the setting's runs of every student and seed read their values from that file.


def tuned_settings(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The band-setting keys ``dataset`` runs whose values the tuning stage chooses."""
    return [key for key in dataset_settings(config, dataset)
            if band_setting(config["distill"], key).tune]


def tuning_student(config: Mapping[str, Any], dataset: str) -> str:
    """The student the tuning stage trains on ``dataset``: the first it runs."""
    return dataset_students(config, dataset)[0]


def tuning_file(dataset: str, bands: str) -> str:
    """The tuning stage's choice for one setting, relative to the results root."""
    return f"tuning/{dataset}/{bands}.json"


def tuning_runs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every training run of the tuning stage: ``dataset``, ``bands``, ``point`` (the
    index into :meth:`BandSetting.points`), ``values`` (that point), ``student``,
    ``seed`` and ``run_dir`` (``tuning/{dataset}/{bands}/point-{point}``, relative to the
    results root)."""
    runs = []
    seed = int(config["tuning"]["seed"])
    for dataset in config["datasets"]:
        student = tuning_student(config, dataset)
        for key in tuned_settings(config, dataset):
            for point, values in enumerate(band_setting(config["distill"], key).points()):
                runs.append({
                    "dataset": dataset, "bands": key, "point": point, "values": values,
                    "student": student, "seed": seed,
                    "run_dir": f"tuning/{dataset}/{key}/point-{point}",
                })
    return runs


def tuning_training(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """How a tuning run trains: the dataset's student block, with ``tuning.epochs`` (when
    set) in place of its epochs."""
    training = training_block(config, dataset, "student")
    epochs = config["tuning"].get("epochs")
    return training if epochs is None else {**training, "epochs": epochs}


def tuning_spec(config: Mapping[str, Any], dataset: str, bands: str, point: int) -> dict[str, Any]:
    """The :func:`run_spec` of one tuning run: the tuning student and seed, the setting
    with the point's values, the tuning training block, and ``tuning_point``."""
    setting = band_setting(config["distill"], bands)
    points = setting.points()
    if not 0 <= point < len(points):
        raise SdkdError(f"band setting {bands!r} has {len(points)} tuning points "
                        f"(0 to {len(points) - 1}), not {point}")
    spec = run_spec(config, dataset, "student", tuning_student(config, dataset), bands,
                    int(config["tuning"]["seed"]))
    values = setting.with_values(points[point]).values()
    del values["key"], values["seeds"]
    spec["bands"] = _plain(values)
    spec["training"] = _training_spec(tuning_training(config, dataset))
    spec["tuning_point"] = point
    return spec


# ---- run identity -------------------------------------------------------------------------

# Training keys that change how fast a run goes, never what it computes: a change to them
# neither reruns a job nor restarts its training. (The teacher-forecast cache,
# distill.teacher_cache_mb, is of this kind too: cached and live forecasts agree to float
# rounding.)
SPEED_ONLY_TRAINING_KEYS = ("in_memory", "num_workers", "log_every")

# Keys of a dataset block that are about its runs, not its data: which jobs exist
# (dataset_students/dataset_settings) and how they train (training_block).
RUN_KEYS = ("students", "settings", "training")


def data_spec(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The config of ``dataset`` that decides its data: the dataset block without the
    keys about its runs (:data:`RUN_KEYS`); acquisition and preprocessing depend on this
    alone."""
    block = config["datasets"][dataset]
    return {key: value for key, value in block.items() if key not in RUN_KEYS}


def training_block(config: Mapping[str, Any], dataset: str, role: str) -> dict[str, Any]:
    """How ``role`` (``"teacher"`` or ``"student"``) trains on ``dataset``: the config's
    ``training.<role>`` block with the keys the dataset's own ``training.<role>`` sets
    in its place (one dataset may need more epochs or a smaller batch than another)."""
    own = config["datasets"][dataset].get("training", {}).get(role, {})
    return {**config["training"][role], **own}


def run_spec(
    config: Mapping[str, Any],
    dataset: str,
    role: str,
    student: str | None = None,
    bands: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything the config decides about one training run, as plain JSON data.

    A teacher (``role="teacher"``) depends on its dataset's config (:func:`data_spec`),
    the teacher model and its overrides, its training block on that dataset
    (:func:`training_block`) and the config's ``seed``. A student (``role="student"``,
    with ``student``, ``bands`` and ``seed``) depends on its dataset's config, the
    student model and overrides, its training block, its seed, the resolved band
    setting (method, cutoffs, weights and every weight and switch it inherits from the
    ``distill`` block) and, unless it learns from the ground truth alone, the teacher's
    spec. Keys that change only the speed (:data:`SPEED_ONLY_TRAINING_KEYS`) are left
    out, and so is every name that does not change the result (the band setting's key,
    its seed list).

    What the config cannot say (the content of the data file, the teacher's weights)
    is added by the job: :func:`run_identity`.
    """
    if role == "teacher":
        return {
            "role": "teacher",
            "dataset": dataset,
            "data": data_spec(config, dataset),
            "model": config["models"]["teacher"],
            "overrides": dict(config["models"]["teacher_overrides"]),
            "training": _training_spec(training_block(config, dataset, "teacher")),
            "seed": int(config["seed"]),
        }
    if role != "student" or student is None or bands is None or seed is None:
        raise SdkdError(
            f"run_spec: role {role!r} with student={student!r}, bands={bands!r}, "
            f"seed={seed!r}; a student run needs all three, a teacher none"
        )
    setting = band_setting(config["distill"], bands).values()
    del setting["key"], setting["seeds"]
    teacher = setting["setting"] != "none"
    return {
        "role": "student",
        "dataset": dataset,
        "data": data_spec(config, dataset),
        "model": student,
        "overrides": dict(config["models"]["student_overrides"]),
        "training": _training_spec(training_block(config, dataset, "student")),
        "bands": _plain(setting),
        "seed": int(seed),
        "teacher": run_spec(config, dataset, "teacher") if teacher else None,
    }


def _training_spec(training: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in training.items() if k not in SPEED_ONLY_TRAINING_KEYS}


def run_identity(
    spec: Mapping[str, Any], *, data: str, teacher: str | None = None
) -> dict[str, Any]:
    """The full identity of a run: its :func:`run_spec` and the fingerprints of what it
    reads, ``data`` (:func:`sdkd.data.dataset.fingerprint` of the canonical file) and,
    for a distilled student, ``teacher`` (the sha256 of the teacher's weights,
    :func:`sdkd.train.checkpoint.weights_sha256`).

    A training job resumes or reuses stored results only when their identity equals
    this one: a teacher retrained on changed data has other weights, so its students
    train again; a student whose teacher's weights did not change does not.
    """
    return {"spec": _plain(spec), "inputs": {"data": data, "teacher": teacher}}


def run_id(identity: Mapping[str, Any]) -> str:
    """A short name of an identity (or spec): the first 12 hex digits of the sha256 of its
    canonical JSON (sorted keys), so equal identities get equal ids whatever the key order."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal data, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def identity_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """What differs between two identities (or any JSON data), one ``key: old → new`` line
    per changed leaf, with dotted key paths (``spec.bands.weights: [1, 1] → [1, 2]``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            changes += identity_changes(old.get(key), new.get(key), where)
        return changes
    if old == new:
        return []
    return [f"{path or '(identity)'}: {_short(old)} → {_short(new)}"]


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    """JSON data as a JSON round trip gives it back (tuples become lists)."""
    return json.loads(json.dumps(value, allow_nan=True))


# ---- where an experiment's files go ------------------------------------------------------
#
# The embedded default (config/config.yaml, no `experiment` key) writes where it always
# has: results/ and resources/raw/<dataset>/, the paths DVC versions (dvc.yaml) and the
# README names. A named experiment (`experiment: smoke`) writes every derived file
# (data, teachers, tuning, students, eval, tables, figures, report.html, logs,
# benchmarks) under results/experiments/<name>/, a tree laid out like results/ itself,
# so every tool that takes a results folder (`sdkd readme-results --results`, `sdkd
# compare`) takes it too. No file of the default lies under results/experiments/ (its
# first level is a fixed set of folder names and report.html), and names are single
# path components (the schema's pattern), so no experiment can reach the default's
# files or another experiment's.
#
# Raw data of a named experiment is shared, not per experiment: it lies in
# resources/shared/<dataset>-<raw id>/, where the raw id hashes what decides the file
# (raw_identity). Equal identities share one file, acquired once; different ones never
# meet. The folder is outside resources/raw/, DVC's out of the default's `data` stage,
# so a named experiment's raw files never change what DVC hashes there. (A forced rerun
# of a shared acquire job, `--forceall`, rewrites the file for every experiment that
# reads it: their preprocessing runs again, and their training runs, whose identity
# holds the data's fingerprint, are reused when the data came out the same.) Canonical
# datasets (results/.../data/<dataset>.h5) stay per experiment: preprocessing takes
# seconds, and the runs' identities hold the data's fingerprint anyway.

RESULTS = "results"
EXPERIMENTS = "experiments"
RAW_ROOT = "resources/raw"
SHARED_RAW_ROOT = "resources/shared"


def experiment_name(config: Mapping[str, Any]) -> str | None:
    """The config's ``experiment`` name, or None for the embedded default."""
    return config.get("experiment")


def results_root(config: Mapping[str, Any]) -> str:
    """The folder of every derived file of the config's experiment, relative to the
    project: ``results`` for the default, ``results/experiments/<name>`` for a named one.
    Run folders (``run_dir``), evaluation files and tuning files are relative to it."""
    name = experiment_name(config)
    return RESULTS if name is None else f"{RESULTS}/{EXPERIMENTS}/{name}"


def raw_identity(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """What decides the raw file of ``dataset``, as plain JSON data.

    A simulation: its ``simulate`` block and its seed (the config's ``seed`` and the
    dataset's name, from which ``sdkd acquire`` derives the generator's seed). A
    download: its ``download`` block (which file, from where, which slice). Nothing else
    of the config changes the file: split, strides and windows are preprocessing's,
    ``limits`` only bound what may be read. A ``file`` source is read in place and has no
    raw file; its identity is its ``file`` block.
    """
    block = config["datasets"][dataset]
    source = block["source"]
    identity: dict[str, Any] = {"source": source, source: _plain(block[source])}
    if source == "simulate":
        identity.update(dataset=dataset, seed=int(config["seed"]))
    return identity


def raw_folder_pattern(config: Mapping[str, Any]) -> str:
    """The acquire rule's output folder, with Snakemake wildcards: the default's
    ``resources/raw/{dataset}``, or ``resources/shared/{dataset}-{rawid}`` for a named
    experiment (``rawid``: :func:`run_id` of :func:`raw_identity`)."""
    if experiment_name(config) is None:
        return f"{RAW_ROOT}/{{dataset}}"
    return f"{SHARED_RAW_ROOT}/{{dataset}}-{{rawid}}"


def raw_dir(config: Mapping[str, Any], dataset: str) -> str:
    """The folder of the raw file of ``dataset`` (:func:`raw_folder_pattern` filled in)."""
    return raw_folder_pattern(config).format(
        dataset=dataset, rawid=run_id(raw_identity(config, dataset)))


# ---- figures ------------------------------------------------------------------------------


def curve_file(run: Mapping[str, Any]) -> str:
    """The training-curve CSV of ``run`` (an entry of :func:`expected_runs`), relative to
    the curves folder (``plots/training`` of the results root): its evaluation file's
    path with ``.csv`` for ``.json``. The figures job writes it; dvc.yaml plots it."""
    return run["eval_file"].removesuffix(".json") + ".csv"



@dataclass(frozen=True)
class FigurePlan:
    """One figure the config asks for: its file name in the figures folder, the dataset
    it shows (``None`` for figures over all datasets), its kind (:data:`FIGURE_KINDS`),
    its title, and the arguments its drawing function takes after the results
    (``(metric,)`` for ``gain``, ``(dataset,)`` or ``(dataset, student)`` otherwise)."""

    file: str
    dataset: str | None
    kind: str
    title: str
    args: tuple[Any, ...] = ()


def figure_plan(config: Mapping[str, Any]) -> list[FigurePlan]:
    """The report's figures, in report order (names depend on the config only).

    A dataset gets one sample figure per student it runs (:func:`dataset_students`).
    """
    plan = [
        FigurePlan("gain_mse.png", None, "gain", "MSE change vs the plain student", ("mse",)),
        FigurePlan("gain_mae.png", None, "gain", "MAE change vs the plain student", ("mae",)),
    ]
    for dataset in config["datasets"]:
        plan += [
            FigurePlan(f"lead_time_{dataset}.png", dataset, "lead_time",
                       f"{dataset}: error per lead time", (dataset,)),
            FigurePlan(f"spectrum_{dataset}.png", dataset, "spectrum",
                       f"{dataset}: energy spectra", (dataset,)),
            FigurePlan(f"band_error_{dataset}.png", dataset, "band_error",
                       f"{dataset}: error per frequency band", (dataset,)),
        ]
        plan += [
            FigurePlan(f"samples_{dataset}_{model}.png", dataset, "samples",
                       f"{dataset}: sample forecast, {model}", (dataset, model))
            for model in dataset_students(config, dataset)
        ]
        plan += [
            FigurePlan(f"training_{dataset}.png", dataset, "training",
                       f"{dataset}: training curves", (dataset,)),
            FigurePlan(f"cost_{dataset}.png", dataset, "cost",
                       f"{dataset}: accuracy vs cost", (dataset,)),
        ]
    return plan


def figure_files(config: Mapping[str, Any]) -> list[str]:
    """Names of the PNGs ``sdkd figures`` writes (fixed by the config), then the manifest."""
    return [figure.file for figure in figure_plan(config)] + [MANIFEST]


__all__ = [
    "DECOUPLED_FEATURES", "EXPERIMENTS", "FIGURE_KINDS", "FREQUENCY_SETTINGS",
    "LATENT_ONLY_SETTINGS", "MANIFEST", "RAW_ROOT", "RESULTS", "RUN_KEYS", "SETTINGS",
    "SHARED_RAW_ROOT", "SPEED_ONLY_TRAINING_KEYS", "TUNABLE_KEYS",
    "BandSetting", "FigurePlan", "band_setting", "canonical_json", "curve_file",
    "data_spec", "dataset_settings", "dataset_students", "expected_runs", "experiment_name",
    "figure_files", "figure_plan", "identity_changes", "raw_dir", "raw_folder_pattern",
    "raw_identity", "results_root", "run_id", "run_identity", "run_spec", "split_name",
    "training_block", "tuned_settings", "tuning_file", "tuning_runs", "tuning_spec",
    "tuning_student", "tuning_training",
]
