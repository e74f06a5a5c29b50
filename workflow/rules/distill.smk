rule distill:
    """A student trained with one band setting (or a KD baseline) from the frozen teacher."""
    input:
        data="results/data/{dataset}.h5",
        teacher=teacher_for_setting,
    output:
        "results/students/{dataset}/{student}/{bands}/seed-{seed}/done.json",
    params:
        run=lambda w: f"results/students/{w.dataset}/{w.student}/{w.bands}/seed-{w.seed}",
        teacher=lambda w, input: (
            f"--teacher {os.path.dirname(input.teacher)}/best.pt" if input.teacher else ""
        ),
        settings=lambda w: [
            config["models"]["student_overrides"],
            config["training"]["student"],
            config["distill"]["settings"][w.bands],
        ],
    log:
        "results/logs/distill/{dataset}/{student}/{bands}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/distill/{dataset}/{student}/{bands}/seed-{seed}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    shell:
        "sdkd --threads {threads} distill --config {CONFIG_FILE}"
        " --dataset {wildcards.dataset} --data {input.data} {params.teacher}"
        " --student {wildcards.student} --bands {wildcards.bands} --seed {wildcards.seed}"
        " --out {params.run} 2> {log}"
