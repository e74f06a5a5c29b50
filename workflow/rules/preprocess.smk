rule preprocess:
    """Raw file → canonical HDF5: splits, per-channel train statistics, provenance."""
    input:
        raw_path,
    output:
        "results/data/{dataset}.h5",
    log:
        "results/logs/preprocess/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../envs/sdkd.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        dataset=dataset_params,
    shell:
        "sdkd --threads {threads} preprocess --config {params.config}"
        " --dataset {wildcards.dataset} --raw {input} --out {output} > {log} 2>&1"
