# Evaluation is a few seconds of small tensor work per run: one thread per job and jobs
# side by side use a CPU's cores better (`--set-threads evaluate_student=N` to change).
# On a GPU machine `sdkd evaluate` leases a GPU like a training job and times the model
# there, so each evaluation holds `gpu=1`: under `--resources gpu=N` it never runs beside
# a training job on one GPU, where its latency and throughput would be measured under
# contention. Without `--resources gpu=N` (a CPU machine) the resource limits nothing.


rule evaluate_teacher:
    """Test-split metrics of the teacher (docs/evaluation-format.md)."""
    input:
        data=results("data/{dataset}.h5"),
        # the files `sdkd evaluate --run <folder>` reads: weights and training cost
        checkpoint=results("teachers/{dataset}/{teacher}/best.pt"),
        history=results("teachers/{dataset}/{teacher}/history.csv"),
    output:
        results("eval/{dataset}/teacher/{teacher}.json"),
    log:
        results("logs/evaluate/{dataset}/teacher/{teacher}.log"),
    benchmark:
        results("benchmarks/evaluate/{dataset}/teacher/{teacher}.tsv")
    # Off unless the config says `execution: {shadow: minimal}` (common.smk, SHADOW).
    shadow:
        SHADOW
    conda:
        "../envs/sdkd.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        run=lambda w, input: os.path.dirname(input.checkpoint),
        settings=lambda w: canonical_json(config["evaluate"]),
    shell:
        "sdkd --threads {threads:q} evaluate --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --data {input.data:q} --run {params.run:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_student:
    """Test-split metrics of one student run."""
    input:
        data=results("data/{dataset}.h5"),
        # the files `sdkd evaluate --run <folder>` reads: weights and training cost
        checkpoint=results("students/{dataset}/{student}/{bands}/seed-{seed}/best.pt"),
        history=results("students/{dataset}/{student}/{bands}/seed-{seed}/history.csv"),
    output:
        results("eval/{dataset}/{student}/{bands}/seed-{seed}.json"),
    log:
        results("logs/evaluate/{dataset}/{student}/{bands}/seed-{seed}.log"),
    benchmark:
        results("benchmarks/evaluate/{dataset}/{student}/{bands}/seed-{seed}.tsv")
    # Off unless the config says `execution: {shadow: minimal}` (common.smk, SHADOW).
    shadow:
        SHADOW
    conda:
        "../envs/sdkd.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        config=CONFIG_FILE,
        run=lambda w, input: os.path.dirname(input.checkpoint),
        settings=lambda w: canonical_json(config["evaluate"]),
    shell:
        "sdkd --threads {threads:q} evaluate --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --data {input.data:q} --run {params.run:q}"
        " --out {output:q} > {log:q} 2>&1"
