# The tuning stage (sdkd.tuning): a band setting with a `tune:` grid has its
# values chosen on the validation split, by one run per grid point, before the setting's
# compared runs (distill.smk) start.


localrules:
    tune,


rule tune_point:
    """One point of a tuned setting's grid: the dataset's first student, the tuning seed."""
    input:
        data=results("data/{dataset}.h5"),
        # `none` cannot be tuned (sdkd.config), so every tuned setting has a teacher.
        teacher=results(f"teachers/{{dataset}}/{TEACHER}/best.pt"),
    output:
        # Declared and undeclared (last.pt) files as in train_teacher.smk.
        best=results("tuning/{dataset}/{bands}/point-{point}/best.pt"),
        history=results("tuning/{dataset}/{bands}/point-{point}/history.csv"),
        done=results("tuning/{dataset}/{bands}/point-{point}/done.json"),
    log:
        results("logs/tune_point/{dataset}/{bands}/point-{point}.log"),
    benchmark:
        results("benchmarks/tune_point/{dataset}/{bands}/point-{point}.tsv")
    # The compared runs of a tuned setting wait for the whole search: start it early.
    priority: 5
    # Off unless the config says `execution: {shadow: minimal}` (common.smk, SHADOW).
    shadow:
        SHADOW
    conda:
        "../envs/sdkd.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    params:
        config=CONFIG_FILE,
        run=lambda w, output: os.path.dirname(output.done),
        student=lambda w: tuning_student(config, w.dataset),
        seed=config["tuning"]["seed"],
        spec=tuning_point_spec,
    shell:
        "sdkd --threads {threads:q} distill --config {params.config:q}"
        " --dataset {wildcards.dataset:q} --data {input.data:q} --teacher {input.teacher:q}"
        " --student {params.student:q} --bands {wildcards.bands:q} --seed {params.seed:q}"
        " --tune-point {wildcards.point:q} --out {params.run:q} > {log:q} 2>&1"


rule tune:
    """The grid point with the lowest validation MSE: the values the setting's runs use."""
    input:
        points=tuning_point_runs,
    output:
        results("tuning/{dataset}/{bands}.json"),
    log:
        results("logs/tune/{dataset}/{bands}.log"),
    benchmark:
        results("benchmarks/tune/{dataset}/{bands}.tsv")
    conda:
        "../envs/sdkd.yaml"
    params:
        config=CONFIG_FILE,
        results_root=lambda w, input: _root(
            input.points[0], f"tuning/{w.dataset}/{w.bands}/point-0/done.json"
        ),
    shell:
        "sdkd tune --config {params.config:q} --dataset {wildcards.dataset:q}"
        " --bands {wildcards.bands:q} --results-root {params.results_root:q}"
        " --out {output:q} > {log:q} 2>&1"
