rule acquire:
    """Simulate, download (checksummed) or link a dataset's raw file."""
    output:
        "resources/raw/{dataset}/{filename}",
    log:
        "results/logs/acquire/{dataset}/{filename}.log",
    benchmark:
        "results/benchmarks/acquire/{dataset}/{filename}.tsv"
    conda:
        "../envs/sdkd.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        dataset=dataset_params,
    shell:
        "sdkd --threads {threads:q} acquire --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"
