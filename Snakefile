# sdkd — the one DAG: raw data → canonical HDF5 → teachers → students → evaluation →
# tables, figures → results/report.html.
# Rules stay thin: each calls the `sdkd` command line with the paths given here.
#
#   snakemake --cores 8 --resources gpu=2                 # this machine
#   snakemake --profile workflow/profiles/slurm           # a SLURM cluster
#   snakemake --report results/snakemake-report.zip       # figures with captions, provenance

from snakemake.utils import min_version, validate

min_version("8.20")


# A variant given with --configfile is a whole experiment: it replaces the embedded
# default instead of being merged into it (Snakemake's default would merge).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train_teacher.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        "results/report.html",
