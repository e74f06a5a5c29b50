rule preprocess:
    """Raw data → canonical HDF5: grid fitted, splits, per-channel train statistics, provenance."""
    input:
        raw=raw_path,
    output:
        results("data/{dataset}.h5"),
    log:
        results("logs/preprocess/{dataset}.log"),
    benchmark:
        results("benchmarks/preprocess/{dataset}.tsv")
    # Before the students of datasets whose data is ready, like acquire and the teachers.
    priority: 10
    conda:
        "../envs/sdkd.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        dataset=dataset_params,
        raw=raw_option,
    shell:
        "sdkd --threads {threads:q} preprocess --config {params.config:q}"
        " --dataset {wildcards.dataset:q} {params.raw:q} --out {output:q} > {log:q} 2>&1"
