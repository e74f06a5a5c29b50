# Shared helpers of the rule files.

from sdkd.config import raw_filename, write_resolved

# The sdkd steps read the config Snakemake resolved (files merged, `--config`
# overrides applied, defaults filled), written once per distinct content.
CONFIG_FILE = write_resolved(config, ".snakemake/sdkd")
DATASETS = list(config["datasets"])


wildcard_constraints:
    dataset="|".join(DATASETS),


def dataset_params(wildcards):
    """A dataset's config block: a change to it reruns that dataset's jobs only."""
    return config["datasets"][wildcards.dataset]


def raw_path(wildcards):
    """resources/raw/{dataset}/<file name of its source>."""
    name = raw_filename(config["datasets"][wildcards.dataset])
    return f"resources/raw/{wildcards.dataset}/{name}"
