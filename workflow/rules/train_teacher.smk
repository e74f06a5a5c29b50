rule train_teacher:
    """The dataset's teacher; resumes from last.pt when a killed job is rerun."""
    input:
        data=results("data/{dataset}.h5"),
    output:
        # What later jobs read is declared, so a cluster executor without a shared file
        # system (Kubernetes) ships it to them. last.pt, the checkpoint a rerun resumes
        # from, is not: Snakemake deletes the declared outputs of an incomplete job
        # before rerunning it, and the resumed run rebuilds best.pt and history.csv
        # from last.pt. done.json appears only when training has finished.
        best=results("teachers/{dataset}/{teacher}/best.pt"),
        history=results("teachers/{dataset}/{teacher}/history.csv"),
        done=results("teachers/{dataset}/{teacher}/done.json"),
    log:
        results("logs/train_teacher/{dataset}/{teacher}.log"),
    benchmark:
        results("benchmarks/train_teacher/{dataset}/{teacher}.tsv")
    # Teachers head the longest chains of the DAG (every distilled student waits for
    # one): start them before the students that need none.
    priority: 10
    # Off unless the config says `execution: {shadow: minimal}` (common.smk, SHADOW).
    shadow:
        SHADOW
    conda:
        "../envs/sdkd.yaml"
    # One thread: on a small CPU the students that need no teacher (`none`) and the
    # other dataset's jobs train beside it (`--set-threads train_teacher=N` to change).
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    params:
        config=CONFIG_FILE,
        run=lambda w, output: os.path.dirname(output.done),
        spec=teacher_spec,
    shell:
        "sdkd --threads {threads:q} train-teacher --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --data {input.data:q} --out {params.run:q}"
        " > {log:q} 2>&1"
