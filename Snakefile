# sdkd — the one DAG: raw data → canonical HDF5 → teachers → students → evaluation →
# tables, figures → results/report.html (a named experiment's under
# results/experiments/<name>/, see workflow/rules/common.smk).
# Rules stay thin: each calls the `sdkd` command line with the paths given here.
#
#   snakemake --cores 8 --resources gpu=2                 # this machine
#   snakemake --profile workflow/profiles/gpu             # this machine, all its GPUs
#   snakemake --profile workflow/profiles/slurm           # a SLURM cluster
#   snakemake --report results/snakemake-report.zip       # figures with captions, provenance

import subprocess
import sys

from snakemake.utils import min_version

from sdkd.config import config_source, validate
from sdkd.errors import SdkdError
from sdkd.hardware import visible_gpus

min_version("8.20")


# A variant given with --configfile is a whole experiment: it replaces the embedded
# default instead of being merged into it (Snakemake's default would merge).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# sdkd's validation, not Snakemake's `validate`: the checks of `sdkd check-config` and
# its one-line message naming the user's file and key (Snakemake's prints the schema
# and the whole config). The checks that import torch (model names, band settings) wait
# for `onstart` below, so that planning the DAG stays light.
CONFIG_SOURCE = config_source(workflow.configfiles, workflow.config_settings.config)
try:
    validate(config, source=CONFIG_SOURCE, models=False)
except SdkdError as error:
    print(f"sdkd: error: {error}", file=sys.stderr)
    sys.exit(2)


# A GPU machine without a GPU limit: `snakemake --cores all` alone would start a GPU job
# per core, all but one per GPU waiting for a lease (sdkd.train.lease). Unless the
# command line or a profile sets `--resources gpu=N`, the limit is the number of GPUs
# visible here (sdkd.hardware.visible_gpus), so surplus GPU jobs wait in Snakemake's
# queue, where they hold neither a process nor memory. Only for jobs run on this
# machine: a cluster executor's jobs get their GPUs from the cluster.
if workflow.is_main_process and workflow.local_exec and "gpu" not in workflow.global_resources:
    GPUS = visible_gpus()
    if GPUS:
        workflow.register_resource("gpu", GPUS)
        print(
            f"sdkd: {GPUS} GPU(s) visible and no gpu limit given: at most {GPUS} GPU "
            "job(s) at once (set another with --resources gpu=N)",
            file=sys.stderr,
        )


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train_teacher.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Before the first job of a real run (not a dry run): the whole of `sdkd check-config`
# on the resolved config, in its own process (it imports torch). It prints its own
# one-line error, naming the user's file through the resolved file's header.
onstart:
    check = [sys.executable, "-m", "sdkd", "check-config", "--config", str(CONFIG_FILE)]
    if subprocess.run(check, stdout=subprocess.DEVNULL, check=False).returncode:
        sys.exit(2)


localrules:
    all,


# results/report.html for the embedded default, results/experiments/<name>/report.html
# for a named experiment (common.smk, RESULTS).
rule all:
    input:
        results("report.html"),
        CURVES,
