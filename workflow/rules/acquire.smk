rule acquire:
    """Simulate or download (checksummed) a dataset's raw file."""
    output:
        # resources/raw/{dataset}/... (the default) or a named experiment's shared
        # resources/shared/{dataset}-{rawid}/... (common.smk, RAW_FOLDER)
        RAW_FILE,
    log:
        RAW_LOG,
    benchmark:
        RAW_BENCHMARK
    # Data jobs head every chain of the DAG, and this one's two threads wait for both
    # cores to be free. Snakemake's scheduler maximises the sum of the priorities of
    # the jobs it starts, so its priority must beat two one-thread jobs of priority 10
    # (preprocess, teachers) together: at 10, and at 20, the default's Navier–Stokes
    # simulation, which its long teacher waits for, started 8 minutes late on 2 cores.
    priority: 50
    conda:
        "../envs/sdkd.yaml"
    threads: 2
    # No `gpu` resource: a download needs none, and the SLURM plugin turns even a `gpu`
    # of 0 into `sbatch --gpus=0`. A simulation on a GPU machine (`simulate.device` auto
    # or cuda) leases a free GPU in `sdkd acquire` itself, like a training job, so it never
    # shares one; under `--resources gpu=N` a training job that starts meanwhile waits for
    # the lease of another GPU.
    resources:
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        dataset=raw_params,
    shell:
        "sdkd --threads {threads:q} acquire --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"
