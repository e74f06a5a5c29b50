rule aggregate:
    """All evaluation files → one table (a row per expected run) and the headline numbers."""
    input:
        evaluation_files,
    output:
        table="results/tables/metrics.csv",
        summary="results/tables/summary.json",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    shell:
        "sdkd aggregate --config {CONFIG_FILE} --eval-root results/eval"
        " --out {output.table} --summary {output.summary} 2> {log}"


rule figures:
    """The report's figures, each with a caption in figures.json."""
    input:
        table="results/tables/metrics.csv",
        runs=training_runs,
    output:
        manifest="results/figures/figures.json",
        images=expand("results/figures/{name}", name=FIGURES),
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    shell:
        "sdkd figures --config {CONFIG_FILE} --metrics {input.table} --eval-root results/eval"
        " --runs-root results --out-dir results/figures 2> {log}"


rule report:
    """results/report.html: one self-contained page, images embedded."""
    input:
        table="results/tables/metrics.csv",
        summary="results/tables/summary.json",
        manifest="results/figures/figures.json",
        data=expand("results/data/{dataset}.h5", dataset=DATASETS),
    output:
        "results/report.html",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "sdkd report --config {CONFIG_FILE} --metrics {input.table} --summary {input.summary}"
        " --figures results/figures --data {input.data} --out {output} 2> {log}"
