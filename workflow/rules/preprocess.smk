rule preprocess:
    """Raw file → canonical HDF5: splits, per-channel train statistics, provenance."""
    input:
        raw_path,
    output:
        "results/data/{dataset}.h5",
    params:
        dataset=dataset_params,
    log:
        "results/logs/preprocess/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "sdkd --threads {threads} preprocess --config {CONFIG_FILE} --dataset {wildcards.dataset}"
        " --raw {input} --out {output} 2> {log}"
