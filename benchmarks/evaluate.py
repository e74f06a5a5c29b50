"""Benchmark ``sdkd evaluate``: wall time of the whole command and where it goes.

    python benchmarks/evaluate.py                          # teacher-small + unet-m, 3 runs each
    python benchmarks/evaluate.py --repeats 5 --students unet-s,unet-m
    python benchmarks/evaluate.py --workdir /tmp/evalbench  # keep (and reuse) data and runs

Prints ONE JSON document on stdout (progress goes to stderr). The set-up is the default
experiment's evaluation at 64×64, C = 1, 10 → 10 frames with a 20-window test split,
built with the project's own steps: smooth random fields (the evaluation's cost does not
depend on the values) written as a raw file, ``preprocess``, a 1-epoch teacher
(``train_teacher``) and 1-epoch students distilled from it (``distill_student``), on the
CPU. Then, for each run:

- ``command_s``: wall time of ``python -m sdkd evaluate ... --device cpu`` in a fresh
  process (interpreter start and imports included, as in the pipeline), every repeat
  and their median;
- ``evaluation_seconds``: what the evaluation file itself reports (``evaluate_run``
  only), per repeat;
- ``phases_s``: one ``evaluate_run`` in a fresh process (this script's hidden
  ``--child`` mode) with the steps it calls wrapped in ``time.perf_counter`` (model
  forward, metrics, SSIM, spectra, FLOP count, timing, …); a step pays its own lazy
  imports (the FLOP count: ``torch._dynamo``, ~2.5 s on two cores);
- ``import_s`` (top level): the imports of the ``sdkd evaluate`` path, in a fresh process.

The machine is often shared: ``host.loadavg_*`` are recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _host import loadavg, log, run_json

GRID = 64
IN_STEPS = OUT_STEPS = 10
TEST_WINDOWS = 20
FRAMES = IN_STEPS + OUT_STEPS  # one window per trajectory, as in the default config
# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads
# fight the other jobs for the cores and the wall times swing.
PASSIVE = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def build(workdir: Path, teacher: str, students: list[str]) -> tuple[Path, Path, dict[str, Path]]:
    """(config path, canonical data path, {model: run folder}); reuses what exists."""
    import h5py
    import numpy as np
    import yaml

    from sdkd.config import validate
    from sdkd.data.preprocess import preprocess
    from sdkd.train.jobs import distill_student, train_teacher

    workdir.mkdir(parents=True, exist_ok=True)
    block = {
        "source": "file",
        "file": {"path": str(workdir / "raw.h5"), "variable": "u", "axes": "N T H W"},
        "split": {"train": 8, "val": 2, "test": TEST_WINDOWS},
        "in_steps": IN_STEPS, "out_steps": OUT_STEPS,
    }
    raw_config = {
        "seed": 0, "datasets": {"navier_stokes": block},
        "models": {"teacher": teacher, "students": students},
        "training": {"teacher": {"epochs": 1, "batch_size": 4},
                     "student": {"epochs": 1, "batch_size": 4}},
        "distill": {"settings": {"dual": {"cutoffs": [4], "weights": [1.0, 1.0]}}},
    }
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw_config))
    config = validate(raw_config)

    data = workdir / "navier_stokes.h5"
    if not data.is_file():
        log("writing the raw fields and preprocessing")
        rng = np.random.default_rng(0)
        n = 8 + 2 + TEST_WINDOWS
        k = np.fft.fftfreq(GRID) * GRID
        lowpass = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / 36)
        field = lambda: np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, GRID, GRID))) * lowpass).real  # noqa: E731
        start, drift = field(), field()
        frames = np.stack([start * np.exp(-0.02 * s) + 0.05 * s * drift for s in range(FRAMES)], 1)
        with h5py.File(workdir / "raw.h5", "w") as f:
            f["u"] = (5 * frames).astype("f4")
        preprocess(workdir / "raw.h5", data, config["datasets"]["navier_stokes"],
                   name="navier_stokes")
    runs = {teacher: workdir / teacher}
    if not (runs[teacher] / "best.pt").is_file():
        log(f"training {teacher} for 1 epoch")
        train_teacher(config, "navier_stokes", data, runs[teacher], device="cpu")
    for student in students:
        runs[student] = workdir / student
        if not (runs[student] / "best.pt").is_file():
            log(f"distilling {student} for 1 epoch")
            distill_student(config, "navier_stokes", data, runs[teacher] / "best.pt", student,
                            "dual", 0, runs[student], device="cpu")
    return config_path, data, runs


def command_times(config: Path, data: Path, run: Path, out: Path, repeats: int) -> dict[str, Any]:
    """Wall times of ``sdkd evaluate`` in fresh processes, and the file's own figures."""
    cmd = [sys.executable, "-m", "sdkd", "--log-level", "WARNING", "evaluate",
           "--config", str(config), "--dataset", "navier_stokes", "--data", str(data),
           "--run", str(run), "--out", str(out), "--device", "cpu"]
    env = {**os.environ, **PASSIVE}
    walls, inside, inference = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
        result = json.loads(out.read_text())
        inside.append(result["evaluation_seconds"])
        inference.append(result["efficiency"]["inference"])
    return {"command_s": walls, "command_median_s": statistics.median(walls),
            "evaluation_seconds": inside, "inference": inference,
            "metrics": result["metrics"]}


def phase_times(config_path: Path, data: Path, run: Path, out: Path) -> dict[str, float]:
    """Seconds per step of one in-process ``evaluate_run`` (perf_counter wrappers).

    ``ForecastMetrics.update`` includes ``SSIMAccumulator.update``; model forward passes
    are reported per caller ("forward in inference_cost", "forward in flops_per_sample"
    (the meta-device pass of the FLOP count), "forward in the evaluation loop") and are
    included in their caller's time too.
    """
    from sdkd import config as configuration
    from sdkd.evaluate import run as evaluate_module
    from sdkd.evaluate.metrics import ForecastMetrics, SSIMAccumulator
    from sdkd.evaluate.spectra import SpectrumAccumulator
    from sdkd.models.base import ForecastModel

    phases: dict[str, float] = {}
    active: list[str] = []  # the steps being timed, outermost first

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = name
            if name == "forward":  # charged to the step that runs it
                key = f"forward in {active[0] if active else 'the evaluation loop'}"
            active.append(name)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                active.pop()
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - t0
        return wrapper

    patches: list[tuple[Any, str, Any]] = [
        (evaluate_module, name, getattr(evaluate_module, name))
        for name in ("load_model", "data_range", "flops_per_sample", "inference_cost",
                     "sha256sum", "training_cost")
    ] + [(ForecastMetrics, "update", ForecastMetrics.update),
         (SSIMAccumulator, "update", SSIMAccumulator.update),
         (SpectrumAccumulator, "update", SpectrumAccumulator.update),
         (ForecastModel, "forward", ForecastModel.forward)]
    for owner, name, original in patches:
        label = name if owner in (evaluate_module, ForecastModel) else f"{owner.__name__}.{name}"
        setattr(owner, name, timed(label, original))
    try:
        config = configuration.load(config_path)
        t0 = time.perf_counter()
        evaluate_module.evaluate_run(config, "navier_stokes", data, run, out, device="cpu")
        phases["evaluate_run"] = time.perf_counter() - t0
    finally:
        for owner, name, original in patches:
            setattr(owner, name, original)
    return phases


def _child_phases(config: Path, data: Path, run: Path, out: Path) -> dict[str, float]:
    """:func:`phase_times` in a fresh interpreter, so that lazy imports count where paid."""
    return run_json(
        [sys.executable, __file__, "--child", str(config), str(data), str(run), str(out)],
        PASSIVE,
    )


def import_time() -> float:
    """Seconds to import what ``sdkd evaluate`` imports, in a fresh process."""
    code = ("import time; t = time.perf_counter(); import sdkd.cli, sdkd.evaluate.run; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the data and runs live (reused when there); default: a temp dir")
    p.add_argument("--teacher", default="teacher-small")
    p.add_argument("--students", default="unet-m", help="comma-separated, e.g. unet-s,unet-m")
    p.add_argument("--repeats", type=int, default=3, help="sdkd evaluate runs per model")
    p.add_argument("--no-phases", action="store_true", help="skip the per-step breakdown")
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS,
                   metavar=("CONFIG", "DATA", "RUN", "OUT"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(phase_times(*(Path(a) for a in args.child))))
        return 0
    import torch
    students = [s for s in args.students.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="sdkd-eval-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        config, data, runs = build(workdir, args.teacher, students)
        doc: dict[str, Any] = {
            "benchmark": "sdkd evaluate",
            "setup": {"grid": [GRID, GRID], "channels": 1, "in_steps": IN_STEPS,
                      "out_steps": OUT_STEPS, "test_windows": TEST_WINDOWS, "device": "cpu",
                      "batch_size": 16, "repeats": args.repeats},
            "host": {"platform": platform.platform(), "python": platform.python_version(),
                     "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "loadavg_before": loadavg()},
            "import_s": import_time(),
            "runs": {},
        }
        for model, run in runs.items():
            log(f"sdkd evaluate {model} × {args.repeats}")
            out = workdir / f"{model}.eval.json"
            entry = command_times(config, data, run, out, args.repeats)
            if not args.no_phases:
                entry["phases_s"] = _child_phases(config, data, run, workdir / f"{model}.p.json")
            doc["runs"][model] = entry
        doc["host"]["loadavg_after"] = loadavg()
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
