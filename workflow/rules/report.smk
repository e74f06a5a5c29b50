# The light end of the DAG (tables, figures, the HTML page): run by Snakemake itself,
# never submitted to a cluster.
localrules:
    aggregate,
    figures,
    report,


rule aggregate:
    """All evaluation files → one table (a row per expected run) and the headline numbers."""
    input:
        evals=evaluation_files,
        tuning=tuning_results,
    output:
        table=report(
            results("tables/metrics.csv"),
            caption="../report/metrics.rst",
            category="Tables",
            labels={"table": "metrics of every run"},
        ),
        summary=results("tables/summary.json"),
    log:
        results("logs/aggregate.log"),
    benchmark:
        results("benchmarks/aggregate.tsv")
    conda:
        "../envs/sdkd.yaml"
    params:
        config=CONFIG_FILE,
        eval_root=eval_root,
        tuning_root=tuning_root_option,
    shell:
        "sdkd aggregate --config {params.config:q} --eval-root {params.eval_root:q}"
        " {params.tuning_root:q} --out {output.table:q} --summary {output.summary:q} > {log:q} 2>&1"


rule figures:
    """The report's figures, each with a caption in figures.json."""
    input:
        table=results("tables/metrics.csv"),
        evals=evaluation_files,
        runs=training_runs,
    output:
        manifest=results("figures/figures.json"),
        images=[figure_output(figure) for figure in FIGURES],
        # each run's training curves as CSV: the data series of dvc.yaml's plots
        curves=CURVES,
    log:
        results("logs/figures.log"),
    benchmark:
        results("benchmarks/figures.tsv")
    conda:
        "../envs/sdkd.yaml"
    params:
        config=CONFIG_FILE,
        eval_root=eval_root,
        runs_root=runs_root,
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        curves_dir=curves_root,
    shell:
        "sdkd figures --config {params.config:q} --metrics {input.table:q}"
        " --eval-root {params.eval_root:q} --runs-root {params.runs_root:q}"
        " --out-dir {params.out_dir:q} --curves-dir {params.curves_dir:q} > {log:q} 2>&1"


rule report:
    """report.html (of the results root): one self-contained page, images embedded."""
    input:
        table=results("tables/metrics.csv"),
        summary=results("tables/summary.json"),
        manifest=results("figures/figures.json"),
        images=[results(f"figures/{figure.file}") for figure in FIGURES],
        data=expand(results("data/{dataset}.h5"), dataset=DATASETS),
    output:
        results("report.html"),
    log:
        results("logs/report.log"),
    benchmark:
        results("benchmarks/report.tsv")
    conda:
        "../envs/sdkd.yaml"
    params:
        config=CONFIG_FILE,
        figures=lambda w, input: os.path.dirname(input.manifest),
    shell:
        "sdkd report --config {params.config:q} --metrics {input.table:q}"
        " --summary {input.summary:q} --figures {params.figures:q} --data {input.data:q}"
        " --out {output:q} > {log:q} 2>&1"
