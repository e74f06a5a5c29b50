# Shared helpers of the workflow: the config as the sdkd steps see it, the run grid,
# wildcard constraints and input functions.
#
# Only light modules are imported here (sdkd.plan, sdkd.config: the standard library,
# PyYAML and jsonschema), never torch, pandas or matplotlib, so that Snakemake builds
# the DAG of a paper-sized grid in about a second.

import os
import re
import sys

from sdkd.config import raw_file, raw_filename, write_resolved
from sdkd.data.paths import file_pattern, input_files
from sdkd.errors import SdkdError
from sdkd.plan import (
    band_setting,
    canonical_json,
    curve_file,
    data_spec,
    expected_runs,
    experiment_name,
    figure_plan,
    raw_folder_pattern,
    raw_identity,
    results_root,
    run_id,
    run_spec,
    tuning_file,
    tuning_runs,
    tuning_spec,
    tuning_student,
)

# Where this experiment's files go (sdkd.plan, "where an experiment's files go"): every
# derived file under RESULTS, `results` for the embedded default (config/config.yaml,
# no `experiment` key: the paths DVC versions and the README names) and
# `results/experiments/<name>` for a named experiment, so that running one never
# touches another's files. Every rule names its files through `results(...)`.
EXPERIMENT = experiment_name(config)
RESULTS = results_root(config)


def results(path):
    """``path`` (relative to the results root, wildcards allowed) under RESULTS."""
    return f"{RESULTS}/{path}"


# Raw files: the default's resources/raw/{dataset}/ (DVC's out, as before); a named
# experiment's resources/shared/{dataset}-{rawid}/, keyed by the raw identity (what
# decides the file: sdkd.plan.raw_identity), so experiments with equal raw data share
# one file and different raw data never lands in one path. The log and benchmark of an
# acquire job go to the results root of the experiment that ran it.
RAW_FOLDER = raw_folder_pattern(config)
RAW_KEY = RAW_FOLDER.rsplit("/", 1)[1]
RAW_FILE = f"{RAW_FOLDER}/{{filename}}"
RAW_LOG = results(f"logs/acquire/{RAW_KEY}/{{filename}}.log")
RAW_BENCHMARK = results(f"benchmarks/acquire/{RAW_KEY}/{{filename}}.tsv")

# The sdkd steps read the config Snakemake resolved (files merged, `--config`
# overrides applied, defaults filled), written once per distinct content. Jobs get its
# path as the `config` param: a pathlib.Path, which Snakemake's params rerun trigger
# does not record (it records plain values only), so the path may change (another
# clone, another folder) without rerunning anything. What a job depends on is recorded
# by its other params (below), so a changed key reruns exactly the jobs that use it,
# not the whole grid. The path is absolute: a job in a shadow folder (SHADOW) runs
# elsewhere, where a relative .snakemake/ does not exist. The file records the user's
# config files (CONFIG_SOURCE, Snakefile), which a job's config error then names.
CONFIG_FILE = write_resolved(config, os.path.abspath(".snakemake/sdkd"), CONFIG_SOURCE)
# `execution: {shadow: minimal}` (workflow/schemas/config.schema.yaml) runs the training
# and evaluation rules, which use it in their `shadow:` directive, in shadow folders
# holding links to their declared inputs only: a cluster pod's view of the files, on
# one machine. None (the default) runs them in the project folder.
SHADOW = config.get("execution", {}).get("shadow")
DATASETS = list(config["datasets"])
TEACHER = config["models"]["teacher"]
STUDENTS = list(config["models"]["students"])
BANDS = list(config["distill"]["settings"])
RUNS = expected_runs(config)
# The tuning stage (sdkd.tuning): one run per point of each tuned setting's grid,
# and the file of each (dataset, setting) that its runs read the chosen values from.
TUNING_RUNS = tuning_runs(config)
TUNING_FILES = sorted({tuning_file(run["dataset"], run["bands"]) for run in TUNING_RUNS})
# A `file` source is read where it is: its files (a glob's matches, a Zarr store's
# files) are the preprocess job's inputs, so editing one reruns that dataset's jobs.
try:
    USER_FILES = {
        name: [str(path) for path in input_files(file_pattern(block["file"]))]
        for name, block in config["datasets"].items()
        if block["source"] == "file"
    }
except SdkdError as error:
    print(f"sdkd: error: {CONFIG_SOURCE}: {error}", file=sys.stderr)
    sys.exit(2)
# Each acquired dataset's raw file name: the only values the {filename} wildcard may take.
RAW_FILES = sorted(
    {raw_filename(block) for name, block in config["datasets"].items() if name not in USER_FILES}
)
# Each acquired dataset's raw id (a named experiment's raw folders are keyed by it).
RAW_IDS = {name: run_id(raw_identity(config, name)) for name in DATASETS if name not in USER_FILES}
# Runs and figures follow each dataset's students/settings subset (sdkd.plan); the
# wildcard constraints below stay global, the union over datasets.
# Figures are named by the config (datasets, students), so they can be declared outputs.
FIGURES = figure_plan(config)
# Each run's training curves as CSV (DVC's plots), written by the figures job: files,
# not a directory() output, whose timestamp file DVC would try to plot.
CURVES = [results(f"plots/training/{curve_file(run)}") for run in RUNS]


def _one_of(names):
    """A wildcard constraint matching exactly one of ``names``."""
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    dataset=_one_of(DATASETS),
    filename=_one_of(RAW_FILES),
    teacher=_one_of([TEACHER]),
    student=_one_of(STUDENTS),
    bands=_one_of(BANDS),
    seed=r"\d+",
    point=r"\d+",
    rawid=r"[0-9a-f]{12}",


# What a job depends on, as Snakemake's params rerun trigger sees it: canonical JSON
# (sorted keys), so a reordered but equal config reruns nothing. A training job's param
# is its run spec (sdkd.plan.run_spec), the same dict the job stores in its checkpoints:
# what reruns a job and what restarts its training are one definition.


def dataset_params(wildcards):
    """A dataset's data config: a change to it reruns that dataset's jobs only (its run
    subset is left out, so adding a student does not acquire the data again)."""
    return canonical_json(data_spec(config, wildcards.dataset))


def raw_params(wildcards):
    """What an acquire job's params trigger sees. The default's resources/raw/{dataset}/
    keeps its dataset's data config (dataset_params), the param it always had, so a
    checkout that has run the default reruns nothing. A shared raw file's param is its
    raw identity, which its path also holds: every experiment sharing the file records
    the same param, so none reruns it for another (a per-experiment key such as the
    split would make two experiments acquire the file in turn, each run outdating the
    other's data)."""
    if EXPERIMENT is None:
        return dataset_params(wildcards)
    if wildcards.rawid != RAW_IDS.get(wildcards.dataset):
        raise ValueError(
            f"raw id {wildcards.rawid} is not that of dataset {wildcards.dataset} in "
            f"{CONFIG_SOURCE} ({RAW_IDS.get(wildcards.dataset)})"
        )
    return canonical_json(raw_identity(config, wildcards.dataset))


def teacher_spec(wildcards):
    return canonical_json(run_spec(config, wildcards.dataset, "teacher"))


def student_spec(wildcards):
    return canonical_json(
        run_spec(
            config,
            wildcards.dataset,
            "student",
            wildcards.student,
            wildcards.bands,
            int(wildcards.seed),
        )
    )


def tuning_point_spec(wildcards):
    return canonical_json(
        tuning_spec(config, wildcards.dataset, wildcards.bands, int(wildcards.point))
    )


def tuning_point_runs(wildcards):
    """The done.json of every tuning run of one (dataset, setting)."""
    return [
        results(f"{run['run_dir']}/done.json")
        for run in TUNING_RUNS
        if (run["dataset"], run["bands"]) == (wildcards.dataset, wildcards.bands)
    ]


def tuned_choice(wildcards):
    """The tuning file a tuned setting's runs read their values from (none: untuned)."""
    path = tuning_file(wildcards.dataset, wildcards.bands)
    return [results(path)] if path in TUNING_FILES else []


def tuned_option(wildcards, input):
    """`--tuned <tuning file>` for a tuned setting, else nothing."""
    return ["--tuned", input.tuned] if input.tuned else []


def tuning_results(wildcards):
    """Every tuning file: the summary shows each search."""
    return [results(path) for path in TUNING_FILES]


def tuning_root_option(wildcards, input):
    """`--tuning-root RESULTS/tuning` when the config tunes a setting, else nothing."""
    if not input.tuning:
        return []
    return ["--tuning-root", _root(input.tuning[0], TUNING_FILES[0].removeprefix("tuning/"))]


def raw_path(wildcards):
    """The dataset's raw file (sdkd.config.raw_file: in RAW_FOLDER, named after its
    source), or a file source's own files."""
    if wildcards.dataset in USER_FILES:
        return USER_FILES[wildcards.dataset]
    return raw_file(config, wildcards.dataset)


def raw_option(wildcards, input):
    """`--raw <file>` for an acquired dataset; nothing for a file source (read in place)."""
    if wildcards.dataset in USER_FILES:
        return []
    return ["--raw", input.raw]


def teacher_for_setting(wildcards):
    """The teacher weights a band setting distils from (none: no teacher at all).

    best.pt itself, the one file of the teacher run that distill reads, so that an
    executor without a shared file system stages it for the job.
    """
    if band_setting(config["distill"], wildcards.bands).setting == "none":
        return []
    return results(f"teachers/{wildcards.dataset}/{TEACHER}/best.pt")


def teacher_checkpoint(wildcards, input):
    """`--teacher <teacher best.pt>` when the setting has a teacher, else nothing.

    A list, not one string: `{params.teacher:q}` in distill.smk quotes each item, so
    the path stays one shell word whatever it holds, and an empty list adds nothing.
    """
    if not input.teacher:
        return []
    return ["--teacher", input.teacher]


def evaluation_files(wildcards):
    return [results(f"eval/{run['eval_file']}") for run in RUNS]


def training_runs(wildcards):
    """Every run's history.csv: the figures job draws the training curves from them."""
    return [results(f"{run['run_dir']}/history.csv") for run in RUNS]


def _root(path, relative):
    """The folder ``path`` lies in once its grid-relative part ``relative`` is taken off."""
    path = os.path.normpath(path)
    suffix = os.sep + os.path.normpath(relative)
    if not path.endswith(suffix):
        raise ValueError(f"{path} does not end with {relative}")
    return path[: -len(suffix)]


def eval_root(wildcards, input):
    """RESULTS/eval, as the rule's inputs name it (storage-prefixed or not)."""
    return _root(input.evals[0], RUNS[0]["eval_file"])


def runs_root(wildcards, input):
    """RESULTS, the folder holding teachers/ and students/, from the rule's inputs."""
    return _root(input.runs[0], f"{RUNS[0]['run_dir']}/history.csv")


def curves_root(wildcards, output):
    """RESULTS/plots/training, as the rule's outputs name it (storage-prefixed or not)."""
    return _root(output.curves[0], curve_file(RUNS[0]))


def figure_output(figure):
    """A figure of the figures job, flagged for `snakemake --report` with its caption."""
    return report(
        results(f"figures/{figure.file}"),
        caption=f"../report/{figure.kind}.rst",
        category="Figures",
        subcategory=figure.dataset or "all datasets",
        labels={"figure": figure.title, "kind": figure.kind},
    )
