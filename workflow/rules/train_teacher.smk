rule train_teacher:
    """The dataset's teacher; resumes from last.pt when a killed job is rerun."""
    input:
        data="results/data/{dataset}.h5",
    output:
        # done.json appears only when training has finished; best.pt, last.pt and
        # history.csv beside it are not declared, so Snakemake never deletes the
        # checkpoint a rerun resumes from.
        "results/teachers/{dataset}/{teacher}/done.json",
    params:
        config=CONFIG_FILE,
        run=lambda w, output: os.path.dirname(output[0]),
        settings=lambda w: canonical(
            [
                config["seed"],
                TEACHER,
                config["models"]["teacher_overrides"],
                config["training"]["teacher"],
            ]
        ),
    log:
        "results/logs/train_teacher/{dataset}/{teacher}.log",
    benchmark:
        "results/benchmarks/train_teacher/{dataset}/{teacher}.tsv"
    conda:
        "../envs/sdkd.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "sdkd --threads {threads} train-teacher --config {params.config}"
        " --dataset {wildcards.dataset} --data {input.data} --out {params.run} > {log} 2>&1"
