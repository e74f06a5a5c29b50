"""Every GPU figure the README promises, in one run: ``bash scripts/gpu-check.sh OUT``.

    python benchmarks/gpu_check.py --out OUT            # on a CUDA machine (refuses without)
    python benchmarks/gpu_check.py --out OUT --dry      # every part at tiny shapes on the CPU

Parts, in order (each a subprocess with its own timeout, clipped to what is left of
``--budget`` seconds; a part that fails or times out is recorded and the next one runs):

``env``          torch, CUDA, device name and memory, Python, the packages found.
``gpu_tests``    ``pytest -m gpu`` on the test files that hold gpu-marked tests.
``solver``       ``benchmarks/solver.py`` at the paper's solver grid (128², ν = 1e-5).
``models``       ``benchmarks/models.py``: teacher-paper and the m students (bf16 autocast).
``training``     the paper's shapes (64², 10 → 10 frames, teacher-paper, the m students) on a
                 small simulated Navier–Stokes set: a teacher run SIGKILLed once its first
                 ``last.pt`` exists and resumed, then ``sdkd distill`` (dual bands) and
                 ``sdkd evaluate`` of each m student and of the teacher (fp32 timing).
``paper_hours``  ``benchmarks/paper_hours.py``: the paper grid's hours, measured.
``smoke_dag``    the smoke DAG under ``snakemake --resources gpu=1`` (``-n`` in dry mode).

Writes into ``--out``: ``figures.json`` (every part's status, seconds and figures),
``raw.json`` (the benchmarks' own JSON documents), ``summary.md`` (the figures as a short
table) and ``log.txt`` (each part's command and the end of its output). ``--dry`` runs the
same code at tiny shapes on the CPU (``tests/test_gpu_check.py``), so it cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("env", "gpu_tests", "solver", "models", "training", "paper_hours", "smoke_dag")
M_STUDENTS = ("unet-m", "resnet-m", "mixer-m")
LOG_TAIL = 6000  # characters of each command's output kept in log.txt
MIN_PART_S = 15.0  # a part with less time left than this is skipped, not started

# Seconds each part may take at most (the budget may clip it further).
TIMEOUTS = {"env": 60, "gpu_tests": 90, "solver": 60, "models": 110, "training": 150,
            "paper_hours": 140, "smoke_dag": 420}


@dataclass
class Context:
    """What every part needs: mode, folders, the environment of its subprocesses and
    the shared record of the run."""

    dry: bool
    out: Path
    work: Path
    env: dict[str, str]
    deadline: float
    log: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()


class PartError(Exception):
    """A part could not produce its figures; the message says why."""


# ---- subprocesses ---------------------------------------------------------------------------


def run(ctx: Context, cmd: list[str], timeout: float, *, cwd: Path = ROOT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (its own process group, killed whole on timeout); log its output's end.

    Raises PartError on a timeout or a non-zero exit, with the end of its stderr.
    """
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or ctx.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        _log(ctx, cmd, f"TIMEOUT after {timeout:.0f}s", stdout, stderr)
        raise PartError(f"{Path(cmd[1]).name if len(cmd) > 1 else cmd[0]}: timed out after "
                        f"{timeout:.0f}s; {_tail(stderr, 300)}") from None
    seconds = time.monotonic() - started
    _log(ctx, cmd, f"exit {proc.returncode} after {seconds:.1f}s", stdout, stderr)
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if proc.returncode != 0:
        raise PartError(f"{' '.join(cmd[:4])} …: exit {proc.returncode}; {_tail(stderr, 600)}")
    return result


def _tail(text: str | None, n: int) -> str:
    text = (text or "").strip()
    return text[-n:] if len(text) > n else text


def _log(ctx: Context, cmd: list[str], status: str, stdout: str, stderr: str) -> None:
    ctx.log.append(f"$ {' '.join(cmd)}\n[{status}]\n--- stderr (end) ---\n"
                   f"{_tail(stderr, LOG_TAIL)}\n--- stdout (end) ---\n{_tail(stdout, 2000)}\n")


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def last_json(text: str) -> Any:
    """The JSON document a benchmark printed on stdout (one document, or JSON lines)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ---- parts ----------------------------------------------------------------------------------


def part_env(ctx: Context, timeout: float) -> dict[str, Any]:
    """Versions and the device, from a fresh interpreter (what every other part imports)."""
    probe = r"""
import json, platform, sys, importlib.metadata as md
import torch
info = {"python": platform.python_version(), "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info |= {"device_name": p.name, "device_count": torch.cuda.device_count(),
             "memory_gib": p.total_memory / 2**30, "capability": f"{p.major}.{p.minor}",
             "uuid": str(getattr(p, "uuid", ""))}
found = {}
for name in ("numpy", "h5py", "pandas", "scipy", "jsonschema", "snakemake", "pooch", "pytest"):
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        found[name] = None
info["packages"] = found
import sdkd
info["sdkd_from"] = sdkd.__file__
print(json.dumps(info))
"""
    info = last_json(run(ctx, python("-c", probe), timeout).stdout)
    info["host"] = platform.node()
    info["cpu_count"] = os.cpu_count()
    return info


def gpu_test_files() -> list[str]:
    """The test files that hold ``gpu``-marked tests (collecting only these keeps the
    run short and independent of test-only packages the other files import)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text())


def part_gpu_tests(ctx: Context, timeout: float) -> dict[str, Any]:
    files = gpu_test_files()
    cmd = python("-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rfEs", *files)
    try:
        result = run(ctx, cmd, timeout)
        output, failed_run = result.stdout, False
    except PartError:
        output, failed_run = ctx.log[-1], True  # the failing tests' names are in the log
    counts = {key: int(n) for n, key in re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected)", output.splitlines()[-1]
        if output.strip() else "")}
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    figures = {"files": files, "counts": counts, "failures": failures}
    if failed_run or failures:
        raise PartError(f"gpu tests failed: {', '.join(failures) or 'see log.txt'}; "
                        f"counts {counts}")
    return figures


def part_solver(ctx: Context, timeout: float) -> dict[str, Any]:
    """The pseudo-spectral solver at the paper's solver grid, float32 (vs a float64 run)."""
    if ctx.dry:
        shape = ["--n", "16", "--t-end", "1", "--n-records", "2", "--batch", "2",
                 "--repeats", "1", "--ref-batch", "1", "--threads", "1"]
    else:
        shape = ["--n", "128", "--viscosity", "1e-5", "--t-end", "20", "--n-records", "20",
                 "--batch", "100", "--repeats", "2", "--ref-batch", "2"]
    docs = last_json(run(ctx, python("benchmarks/solver.py", "--device", ctx.device, *shape),
                         timeout).stdout)
    doc = docs[-1] if isinstance(docs, list) else docs
    ctx.raw["solver"] = doc
    return {key: doc.get(key) for key in (
        "device", "grid", "batch", "dtype", "viscosity", "t_end", "steps",
        "seconds_per_trajectory_median", "seconds_per_trajectory_min", "rel_l2_error")}


def part_models(ctx: Context, timeout: float) -> dict[str, Any]:
    """Size, speed and memory of teacher-paper and the m students (bf16 on CUDA)."""
    if ctx.dry:
        args = ["--device", "cpu", "--models", "teacher-tiny,unet-s", "--repeats", "1",
                "--batch", "2", "--heavy-batch", "1", "--mem-batch", "1", "--threads", "1",
                "--matmul-size", "128"]
    else:
        args = ["--device", "cuda", "--models", ",".join(("teacher-paper", *M_STUDENTS)),
                "--repeats", "3"]
    doc = last_json(run(ctx, python("benchmarks/models.py", *args), timeout).stdout)
    ctx.raw["models"] = doc
    figures: dict[str, Any] = {"models": {}}
    for rec in doc["models"]:
        r = rec.get(ctx.device, {})
        if "error" in r or not r:
            figures["models"][rec["name"]] = {"error": r.get("error", "not run")}
            continue
        figures["models"][rec["name"]] = {
            "params": rec["params"],
            "fwd_gflops_per_sample": rec["fwd_gflops_per_sample"],
            "precision": r["train"]["precision"],
            "train_samples_per_s": r["train"]["samples_per_s"],
            "train_batch": r["train"]["batch"],
            "train_tflops_per_s": r["train_gflops_per_s"] / 1e3,
            "inference_samples_per_s": r["inference"]["samples_per_s"],
            "inference_batch": r["inference"]["batch"],
            "latency_b1_ms": r["latency_b1"]["latency_ms"],
            ("peak_cuda_allocated_mb" if ctx.device == "cuda" else "peak_rss_mb"):
                r["memory"].get("peak_allocated_mb", r["memory"].get("peak_vmhwm_mb")),
            "peak_train_increase_mb": r["memory"]["peak_train_mb"],
        }
    targets = doc["targets"].get(ctx.device, {})
    figures["teacher_mfu"] = targets.get("teacher_mfu")
    figures["matmul_tflops_per_s"] = doc["matmul"][ctx.device]["gflops_per_s"] / 1e3
    figures["matmul_dtype"] = doc["matmul"][ctx.device]["dtype"]
    figures["spec_peak"] = doc.get("spec_peak")
    figures["student_vs_teacher"] = {
        name: {"inference_speedup": s["inference_speedup"]["value"],
               "train_memory_ratio": s["train_memory_ratio"]["value"]}
        for name, s in targets.get("students", {}).items()}
    return figures


def training_config(dry: bool) -> dict[str, Any]:
    """config/paper.yaml at the paper's shapes on a small simulated set (real mode), or
    config/smoke.yaml with the m students (dry mode)."""
    import yaml

    base = "smoke.yaml" if dry else "paper.yaml"
    config = yaml.safe_load((ROOT / "config" / base).read_text())
    ns = config["datasets"]["navier_stokes"]
    config["datasets"] = {"navier_stokes": ns}
    if dry:  # the smoke test's data, teacher and band settings; one m student, narrowed
        ns["simulate"]["batch_size"] = ns["simulate"]["n_trajectories"]
        config["models"]["students"] = list(M_STUDENTS[:1])
        epochs, student_epochs, batch = 20, 1, 2  # 20: the kill lands long before the end
    else:
        # 160 trajectories: 128 training windows (8 steps of 16 an epoch) at 64², 10 → 10
        ns["simulate"] |= {"n_trajectories": 160, "batch_size": 160}
        ns["split"] = {"train": 128, "val": 16, "test": 16}
        config["models"]["students"] = list(M_STUDENTS)
        epochs, student_epochs, batch = 4, 2, 16
    # The check times a distillation, not the tuning stage: a tuned setting trains with
    # the first candidate of each of its `tune:` keys.
    for entry in config["distill"]["settings"].values():
        for key, candidates in entry.pop("tune", {}).items():
            entry[key] = candidates[0]
    block = {"batch_size": batch, "warmup_epochs": 1}
    config["training"] = {"teacher": {**config["training"]["teacher"], **block,
                                      "epochs": epochs},
                          "student": {**config["training"]["student"], **block,
                                      "epochs": student_epochs}}
    return config


def history(path: Path) -> dict[str, Any]:
    """Per-epoch figures of a run's history.csv: epochs, devices, mean seconds per epoch
    (the first epoch apart: it pays for lazy set-up), samples/s and peak memory."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    later = rows[1:] or rows

    def peak(column: str) -> float | None:
        values = [float(r[column]) for r in rows if r.get(column)]
        return max(values) if values else None

    return {
        "epochs": [int(r["epoch"]) for r in rows],
        "devices": sorted({r["device"] for r in rows}),
        "first_epoch_s": float(rows[0]["seconds"]),
        "s_per_epoch_after_first": sum(float(r["seconds"]) for r in later) / len(later),
        "train_samples_per_s": max(float(r["samples_per_s"]) for r in rows),
        "peak_cuda_allocated_mb": peak("peak_cuda_allocated_mb"),
        "peak_rss_mb": peak("peak_rss_mb"),
    }


def kill_after_first_checkpoint(ctx: Context, cmd: list[str], run_dir: Path, timeout: float
                                ) -> dict[str, Any]:
    """Start ``cmd``, SIGKILL it as soon as a ``last.pt`` exists below ``run_dir``; the
    epoch that checkpoint holds and the seconds it took."""
    from sdkd.train.checkpoint import load_checkpoint

    started = time.monotonic()
    with (ctx.work / "teacher-killed.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ctx.env, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            while not list(run_dir.rglob("last.pt")):
                if proc.poll() is not None:
                    raise PartError(f"teacher exited ({proc.returncode}) before its first "
                                    "checkpoint; see log.txt")
                if time.monotonic() - started > timeout:
                    raise PartError(f"no checkpoint within {timeout:.0f}s")
                time.sleep(0.005)
            first = time.monotonic() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    ctx.log.append(f"$ {' '.join(cmd)}\n[SIGKILLed after {first:.1f}s]\n"
                   f"{_tail((ctx.work / 'teacher-killed.log').read_text(), LOG_TAIL)}\n")
    if list(run_dir.rglob("done.json")):
        raise PartError("the teacher finished before the kill: give it more epochs")
    (last,) = run_dir.rglob("last.pt")
    return {"killed_after_s": first, "killed_after_epoch": int(load_checkpoint(last)["epoch"])}


def part_training(ctx: Context, timeout: float) -> dict[str, Any]:
    """Teacher killed and resumed, then distillation and evaluation of each m student."""
    import yaml

    end = time.monotonic() + timeout
    work = ctx.work / "training"
    work.mkdir()
    config = training_config(ctx.dry)
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    raw, data = work / "raw" / "ns.h5", work / "data" / "ns.h5"
    common = ["--config", str(config_path), "--dataset", "navier_stokes"]

    def sdkd(*args: str) -> subprocess.CompletedProcess:
        return run(ctx, python("-m", "sdkd", *args), end - time.monotonic())

    figures: dict[str, Any] = {"shapes": {
        "grid": config["datasets"]["navier_stokes"]["simulate"]["resolution"],
        "in_steps": config["datasets"]["navier_stokes"]["in_steps"],
        "out_steps": config["datasets"]["navier_stokes"]["out_steps"],
        "train_windows": config["datasets"]["navier_stokes"]["split"]["train"],
        "teacher": config["models"]["teacher"], "students": config["models"]["students"],
        "batch_size": config["training"]["teacher"]["batch_size"]}}
    t0 = time.monotonic()
    sdkd("acquire", *common, "--out", str(raw))
    figures["acquire_s"] = time.monotonic() - t0
    sdkd("preprocess", *common, "--raw", str(raw), "--out", str(data))

    teacher_dir = work / "teacher"
    teacher_cmd = python("-m", "sdkd", "train-teacher", *common, "--data", str(data),
                         "--out", str(teacher_dir))
    kill = kill_after_first_checkpoint(ctx, teacher_cmd, teacher_dir, end - time.monotonic())
    t0 = time.monotonic()
    resumed = run(ctx, teacher_cmd, end - time.monotonic())
    found = re.search(r"resuming \S+ after epoch (\d+)", resumed.stderr)
    teacher = {**kill, "resume_s": time.monotonic() - t0,
               "resumed_from_epoch": int(found[1]) if found else None,
               **history(teacher_dir / "history.csv")}
    teacher["resumed_where_killed"] = teacher["resumed_from_epoch"] == kill["killed_after_epoch"]
    figures["teacher"] = teacher
    if not teacher["resumed_where_killed"]:
        raise PartError(f"teacher killed after epoch {kill['killed_after_epoch']} resumed "
                        f"from {teacher['resumed_from_epoch']}")

    evaluations = {"teacher": _evaluate(ctx, sdkd, common, data, teacher_dir, work)}
    figures["students"] = {}
    for student in config["models"]["students"]:
        run_dir = work / "students" / student
        t0 = time.monotonic()
        sdkd("distill", *common, "--data", str(data), "--teacher",
             str(teacher_dir / "best.pt"), "--student", student, "--bands", "dual",
             "--seed", "0", "--out", str(run_dir))
        figures["students"][student] = {"distill_s": time.monotonic() - t0,
                                        **history(run_dir / "history.csv")}
        evaluations[student] = _evaluate(ctx, sdkd, common, data, run_dir, work)
    figures["evaluation"] = evaluations
    teacher_speed = evaluations["teacher"]["samples_per_s"]
    figures["student_vs_teacher_fp32"] = {
        s: {"inference_speedup": evaluations[s]["samples_per_s"] / teacher_speed,
            "latency_ratio": evaluations[s]["latency_ms"] / evaluations["teacher"]["latency_ms"]}
        for s in figures["students"]}
    return figures


def _evaluate(ctx: Context, sdkd: Callable[..., Any], common: list[str], data: Path,
              run_dir: Path, work: Path) -> dict[str, Any]:
    out = work / "eval" / f"{run_dir.name}.json"
    t0 = time.monotonic()
    sdkd("evaluate", *common, "--data", str(data), "--run", str(run_dir), "--out", str(out))
    doc = json.loads(out.read_text())
    inference = doc["efficiency"]["inference"]
    return {"evaluate_s": time.monotonic() - t0, "mse": doc["metrics"]["mse"],
            "device": inference["device"], "precision": inference.get("precision"),
            "batch": inference["batch"], "latency_ms": inference["latency_ms"],
            "samples_per_s": inference["samples_per_s"],
            "flops_per_sample": doc["efficiency"]["flops_per_sample"]}


def part_paper_hours(ctx: Context, timeout: float) -> dict[str, Any]:
    """The paper grid's hours on this device (every model timed), and the estimate."""
    if ctx.dry:
        args = ["--config", "config/smoke.yaml", "--device", "cpu", "--steps", "1",
                "--repeats", "1", "--warmup", "0", "--threads", "1"]
    else:
        # 5 steps × 2 repeats per loss: the grid's 10 models × 9 losses fit the part's time
        args = ["--device", "cuda", "--steps", "5", "--repeats", "2", "--warmup", "2"]
    doc = last_json(run(ctx, python("benchmarks/paper_hours.py", *args), timeout).stdout)
    ctx.raw["paper_hours"] = doc
    measured = doc.get("measured") or {}
    return {
        "config": doc["config_file"],
        "device_name": measured.get("device_name"),
        "measured_total_hours": measured.get("total_hours"),
        "measured_total_hours_with_assumed_job_overhead":
            measured.get("total_hours_with_assumed_job_overhead"),
        "estimated_gpu_hours_flop_only": doc["estimated"]["flop_only"]["total_gpu_hours"],
        "estimated_gpu_hours_with_overheads":
            doc["estimated"]["with_overheads"]["total_gpu_hours"],
        "s_per_epoch": {ds: {name: m["s_per_epoch"] for name, m in models.items()}
                        for ds, models in measured.get("models", {}).items()},
    }


def part_smoke_dag(ctx: Context, timeout: float) -> dict[str, Any]:
    """The smoke DAG with one GPU resource: every training and evaluation job leases it."""
    work = ctx.work / "smoke"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    cores = "2" if ctx.dry else str(min(16, os.cpu_count() or 1))
    cmd = python("-m", "snakemake", "--cores", cores, "--resources", "gpu=1",
                 "--configfile", "config/smoke.yaml", *(["-n"] if ctx.dry else []))
    t0 = time.monotonic()
    result = run(ctx, cmd, timeout, cwd=work)
    output = result.stdout + result.stderr
    jobs = re.search(r"^total\s+(\d+)$", output, re.M)
    figures: dict[str, Any] = {"wall_s": time.monotonic() - t0, "dry_run": ctx.dry,
                               "jobs": int(jobs[1]) if jobs else None}
    if not ctx.dry:
        import yaml

        from sdkd.plan import results_root

        # the smoke experiment's own folder (results/experiments/smoke), not results/
        results = work / results_root(yaml.safe_load((work / "config/smoke.yaml").read_text()))
        devices = {}
        for path in sorted((results / "eval").rglob("*.json")):
            doc = json.loads(path.read_text())
            devices[str(path.relative_to(results / "eval"))] = {
                "inference": doc["efficiency"]["inference"]["device"],
                "training": doc["efficiency"]["training"]["device"]}
        figures["devices"] = devices
        figures["report"] = (results / "report.html").is_file()
    return figures


PART_FUNCTIONS: dict[str, Callable[[Context, float], dict[str, Any]]] = {
    "env": part_env, "gpu_tests": part_gpu_tests, "solver": part_solver,
    "models": part_models, "training": part_training, "paper_hours": part_paper_hours,
    "smoke_dag": part_smoke_dag,
}


# ---- driver ---------------------------------------------------------------------------------


def sdkd_on_path(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """The rules call ``sdkd``; where the project is not installed, a shim runs
    ``python -m sdkd`` with this interpreter."""
    if shutil.which("sdkd", path=env.get("PATH")):
        return env
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "sdkd"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sdkd "$@"\n')
    shim.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def summary_markdown(doc: dict[str, Any]) -> str:
    """A short human summary of figures.json."""
    lines = [f"# GPU check {doc['date']} ({'DRY, CPU' if doc['dry'] else 'CUDA'})", "",
             f"device: {doc['parts'].get('env', {}).get('figures', {}).get('device_name')}",
             f"wall: {doc['wall_s']:.0f} s of a {doc['budget_s']:.0f} s budget", "",
             "| part | status | seconds | note |", "| --- | --- | ---: | --- |"]
    for name, part in doc["parts"].items():
        note = (part.get("error") or "").replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {name} | {part['status']} | {part['seconds']:.1f} | {note} |")
    figures = {n: p.get("figures") or {} for n, p in doc["parts"].items()}
    lines += ["", "## Headline figures", ""]
    solver = figures.get("solver", {})
    if solver:
        lines.append(f"- solver ({solver.get('grid')}², {solver.get('dtype')}): "
                     f"{solver.get('seconds_per_trajectory_median')} s/trajectory, "
                     f"rel. L2 error {solver.get('rel_l2_error')}")
    for name, m in figures.get("models", {}).get("models", {}).items():
        if "error" not in m:
            lines.append(f"- {name} ({m['precision']}): train {m['train_samples_per_s']:.1f} "
                         f"samples/s at batch {m['train_batch']}, inference "
                         f"{m['inference_samples_per_s']:.1f} samples/s, batch-1 latency "
                         f"{m['latency_b1_ms']:.2f} ms")
    mfu = figures.get("models", {}).get("teacher_mfu")
    if mfu:
        lines.append(f"- teacher MFU: {mfu['mfu_vs_spec_peak']} of the spec peak, "
                     f"{mfu['mfu_vs_measured_matmul']:.3f} of the measured matmul")
    teacher = figures.get("training", {}).get("teacher")
    if teacher:
        lines.append(f"- teacher killed after epoch {teacher['killed_after_epoch']}, resumed "
                     f"from {teacher['resumed_from_epoch']}; "
                     f"{teacher['s_per_epoch_after_first']:.2f} s/epoch, "
                     f"peak CUDA {teacher['peak_cuda_allocated_mb']} MB")
    for s, r in figures.get("training", {}).get("student_vs_teacher_fp32", {}).items():
        lines.append(f"- {s} vs teacher (fp32 evaluation): {r['inference_speedup']:.2f}× "
                     "throughput")
    hours = figures.get("paper_hours", {})
    if hours:
        lines.append(f"- paper grid: {hours.get('measured_total_hours')} h measured, "
                     f"{hours.get('estimated_gpu_hours_with_overheads')} h estimated")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the figures")
    p.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (no GPU needed)")
    # 470 s: the device run's command is limited to 10 minutes, and the wheels' install
    # and the machine's start come before this script.
    p.add_argument("--budget", type=float, default=470.0, help="seconds for all parts")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")
    if not args.dry:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device is available; run with --dry for the CPU "
                  "rehearsal", file=sys.stderr)
            return 2

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sdkd-gpu-check-"))
    env = {**os.environ, "SDKD_GPU_LOCK_DIR": str(work / "locks"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    if args.dry:  # one thread: the rehearsal runs beside other work on small CPUs
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env = sdkd_on_path(env, work / "bin")
    ctx = Context(dry=args.dry, out=args.out, work=work, env=env,
                  deadline=started + args.budget)
    doc: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "dry": args.dry, "budget_s": args.budget, "parts": {}}
    for name in parts:
        timeout = min(TIMEOUTS[name], ctx.left())
        record: dict[str, Any] = {"status": "skipped", "seconds": 0.0, "timeout_s": timeout}
        if timeout < MIN_PART_S:
            record["error"] = f"budget: {ctx.left():.0f}s left"
        else:
            t0 = time.monotonic()
            try:
                record |= {"status": "ok", "figures": PART_FUNCTIONS[name](ctx, timeout)}
            except Exception as exc:  # one part's failure must not lose the others
                record |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            record["seconds"] = time.monotonic() - t0
        doc["parts"][name] = record
        print(f"gpu_check: {name}: {record['status']} ({record['seconds']:.1f}s)"
              + (f" {record['error'][:200]}" if "error" in record else ""), file=sys.stderr,
              flush=True)
        _write(ctx, doc, started)  # after every part: a killed run keeps what it measured
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p["status"] == "ok" for p in doc["parts"].values()) else 1


def _write(ctx: Context, doc: dict[str, Any], started: float) -> None:
    doc["wall_s"] = time.monotonic() - started
    (ctx.out / "figures.json").write_text(json.dumps(doc, indent=2, default=str))
    (ctx.out / "raw.json").write_text(json.dumps(ctx.raw, default=str))
    (ctx.out / "summary.md").write_text(summary_markdown(doc))
    (ctx.out / "log.txt").write_text("\n".join(ctx.log))


if __name__ == "__main__":
    sys.exit(main())
