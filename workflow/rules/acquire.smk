rule acquire:
    """Simulate, download (checksummed) or link a dataset's raw file."""
    output:
        "resources/raw/{dataset}/{filename}",
    params:
        dataset=dataset_params,
    log:
        "results/logs/acquire/{dataset}/{filename}.log",
    benchmark:
        "results/benchmarks/acquire/{dataset}/{filename}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "sdkd --threads {threads} acquire --config {CONFIG_FILE} --dataset {wildcards.dataset}"
        " --out {output} 2> {log}"
