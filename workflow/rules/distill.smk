rule distill:
    """A student trained with one band setting (or a KD baseline) from the frozen teacher."""
    input:
        data=results("data/{dataset}.h5"),
        teacher=teacher_for_setting,
        tuned=tuned_choice,
    output:
        # Declared and undeclared (last.pt) files as in train_teacher.smk.
        best=results("students/{dataset}/{student}/{bands}/seed-{seed}/best.pt"),
        history=results("students/{dataset}/{student}/{bands}/seed-{seed}/history.csv"),
        done=results("students/{dataset}/{student}/{bands}/seed-{seed}/done.json"),
    log:
        results("logs/distill/{dataset}/{student}/{bands}/seed-{seed}.log"),
    benchmark:
        results("benchmarks/distill/{dataset}/{student}/{bands}/seed-{seed}.tsv")
    # Off unless the config says `execution: {shadow: minimal}` (common.smk, SHADOW).
    shadow:
        SHADOW
    conda:
        "../envs/sdkd.yaml"
    # Students are small: one thread per job and jobs side by side use a CPU's cores
    # better than two threads per job (`--set-threads distill=N` to change).
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    params:
        config=CONFIG_FILE,
        run=lambda w, output: os.path.dirname(output.done),
        teacher=teacher_checkpoint,
        tuned=tuned_option,
        spec=student_spec,
    shell:
        "sdkd --threads {threads:q} distill --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --data {input.data:q} {params.teacher:q}"
        " {params.tuned:q} --student {wildcards.student:q} --bands {wildcards.bands:q}"
        " --seed {wildcards.seed:q} --out {params.run:q} > {log:q} 2>&1"
