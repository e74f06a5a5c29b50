rule acquire:
    """Simulate or download (checksummed) a dataset's raw file."""
    output:
        "resources/raw/{dataset}/{filename}",
    log:
        "results/logs/acquire/{dataset}/{filename}.log",
    benchmark:
        "results/benchmarks/acquire/{dataset}/{filename}.tsv"
    # Data jobs head every chain of the DAG, and this one's two threads wait for both
    # cores to be free: without a priority the scheduler keeps filling them with other
    # datasets' one-thread jobs first (the default's Navier–Stokes simulation, which its
    # long teacher waits for, once started 8 minutes late on 2 cores).
    priority: 10
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
