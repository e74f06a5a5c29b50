# Shared helpers of the rule files: the config Snakemake resolved, and the run grid.

import os

from sdkd.config import raw_filename, write_resolved
from sdkd.distill.settings import band_setting
from sdkd.report.aggregate import expected_runs
from sdkd.report.figures import figure_files

# The sdkd steps read the config Snakemake resolved (files merged, `--config`
# overrides applied, defaults filled), written once per distinct content.
CONFIG_FILE = write_resolved(config, ".snakemake/sdkd")
DATASETS = list(config["datasets"])
RUNS = expected_runs(config)
# Figures are named by the config (datasets, students), so they can be declared outputs.
FIGURES = [name for name in figure_files(config) if name != "figures.json"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    teacher=r"teacher-[a-z0-9_]+",
    student=r"[a-z][a-z0-9_]*-[a-z0-9_]+",
    bands="|".join(config["distill"]["settings"]),
    seed=r"\d+",


def dataset_params(wildcards):
    """A dataset's config block: a change to it reruns that dataset's jobs only."""
    return config["datasets"][wildcards.dataset]


def raw_path(wildcards):
    """resources/raw/{dataset}/<file name of its source>."""
    name = raw_filename(config["datasets"][wildcards.dataset])
    return f"resources/raw/{wildcards.dataset}/{name}"


def teacher_for_setting(wildcards):
    """The teacher run a band setting distils from (none: no teacher at all)."""
    if band_setting(config["distill"], wildcards.bands).setting == "none":
        return []
    return f"results/teachers/{wildcards.dataset}/{config['models']['teacher']}/done.json"


def evaluation_files(wildcards):
    return [f"results/eval/{run['eval_file']}" for run in RUNS]


def training_runs(wildcards):
    return [f"results/{run['run_dir']}/done.json" for run in RUNS]
