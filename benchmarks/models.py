"""Benchmark the teacher and the students: size, FLOPs, speed and training memory.

    python benchmarks/models.py                       # full run, CPU (+ CUDA if present)
    python benchmarks/models.py --quick               # smoke run, a minute or two
    python benchmarks/models.py --device cpu --models teacher-paper,unet-m --repeats 3

Prints ONE JSON document on stdout (progress goes to stderr). For each model at
64×64, C=1, 10→10 frames it reports parameters, forward and training FLOPs per
sample, training throughput (the engine's own step, ``Trainer.step``, on the teacher
job's MSE loss), inference throughput and
latency (batch ``--batch`` and batch 1), and peak training memory; on CPU with
``--threads`` torch threads and, when CUDA is available, on the GPU with bf16
autocast and batch ``--cuda-batch``. It also measures the CPU's dense float32
matmul FLOP/s and computes, in the same run, the ratios the issue targets:

- each ``m`` student's inference throughput ÷ the teacher's (target ≥ 3);
- each ``m`` student's peak training memory ÷ the teacher's (target ≤ 0.25);
- the teacher's training FLOP/s ÷ the matmul FLOP/s (target ≥ 0.25 on CPU).

On CUDA the teacher's model FLOP utilisation is given twice, named for its divisor:
``mfu_vs_measured_matmul`` (÷ the bf16 matmul rate measured around the timing) and
``mfu_vs_spec_peak`` (÷ the GPU's spec-sheet dense bf16 peak, ``_peaks.py``, or
``--spec-peak-tflops``). Every timing record states its ``precision``: ``fp32`` on the
CPU, ``bf16-autocast`` on CUDA (``sdkd evaluate`` times fp32 on every device).

Timings are medians over ``--repeats`` timed repeats after untimed warmup. Models
heavier than ``HEAVY_FLOPS`` forward FLOPs per sample (the paper teacher, ~31
GFLOPs) are timed on CPU with a smaller training batch (``--heavy-batch``) and at
most ``HEAVY_REPEATS`` repeats so that the full run fits in ~10 minutes on two
cores; the batch used is reported per model. CPU training memory is measured in a
fresh subprocess per model (this script with the hidden ``--child`` mode), at one
batch (``--mem-batch``) shared by every model so that the ratios compare like with
like.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _counts import TRAIN_FLOPS_METHOD, count_pass, weights_mb
from _host import loadavg, log, run_json, thread_env
from _peaks import spec_peak_tflops
from _timing import (
    forward_pass,
    host_info,
    peak_memory,
    random_batch,
    time_calls,
    training_step,
)

from sdkd.models import build_model, count_parameters, flops_per_sample, get_family
from sdkd.models.base import ForecastModel
from sdkd.train.engine import TrainConfig
from sdkd.train.jobs import mse_loss

GRID = 64
IN_STEPS = OUT_STEPS = 10
CHANNELS = 1
TEACHER = "teacher-paper"
STUDENTS = [f"{fam}-{size}" for fam in ("unet", "resnet", "mixer") for size in "sml"]
QUICK_MODELS = ["teacher-small", "unet-m", "resnet-m", "mixer-m"]
HEAVY_FLOPS = 5e9  # forward FLOPs per sample above which CPU timing is trimmed
HEAVY_REPEATS = 3
MEM_STEPS = 2  # optimizer state exists from step 1 on: step 2 holds weights+grads+state+activations
TARGETS = {"inference_speedup": 3.0, "train_memory_ratio": 0.25, "teacher_matmul_fraction": 0.25}

STEP = (
    "sdkd.train.engine.Trainer.step, the pipeline's own training step, with the teacher "
    "job's MSE loss (sdkd.train.jobs) and the engine's default TrainConfig: bf16 autocast "
    "on CUDA, backward, gradient clipping at norm 1.0, AdamW (fused on CUDA), warmup-cosine "
    "scheduler step, zero_grad"
)
MEMORY_METHOD = {
    "cpu": (
        "each model trained in a fresh subprocess (this script, --child mode) with the same "
        "threads. Baseline right after imports, model build, Trainer (AdamW) creation and "
        f"input batch allocation; then {MEM_STEPS} training steps ({STEP}) at batch mem_batch "
        "(the same for every model); peak_train_mb = (peak RSS after − peak RSS at baseline) "
        "/ 1024, i.e. gradients + optimizer state + activations + allocator overhead, "
        "excluding the weights already in the baseline (weights_mb is reported; "
        "peak_incl_weights_mb adds it). Peak RSS is read from /proc/self/status VmHWM (KiB), "
        "the kernel's resident high-water mark of the process image. "
        "resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) is reported too "
        "(*_ru_maxrss_mb) but not used when VmHWM exists: Linux carries the *parent's* peak "
        "RSS into a fork+exec'd child's ru_maxrss (signal->maxrss), so after the parent has "
        "run the teacher every child's ru_maxrss is pinned at the parent's peak and the "
        "increase reads 0; VmHWM is reset by exec. source says which was used"
    ),
    "cuda": (
        "in process, per model: model, Trainer (AdamW) and input batch on the GPU, "
        "torch.cuda.reset_peak_memory_stats(), baseline = torch.cuda.memory_allocated(); "
        f"{MEM_STEPS} training steps ({STEP}) at batch mem_batch (same for every model); "
        "peak_train_mb = (torch.cuda.max_memory_allocated() − baseline) / 2**20, excluding "
        "the weights like on CPU; peak_allocated_mb is the absolute peak"
    ),
}
TIMING_METHOD = (
    "time.perf_counter around each repeat (torch.cuda.synchronize() before and after on CUDA); "
    "untimed warmup first; the median repeat is reported, every repeat is listed. Training: "
    f"{STEP}, on a fixed random batch, model in train mode. Inference: model.eval() under "
    "torch.no_grad() (bf16 autocast on CUDA). On CUDA a repeat is several "
    "iterations (iters_per_repeat) and times are per iteration. Targets use the medians; "
    "'*_best' values (fastest repeat) are given too: on a CPU shared with other jobs "
    "(host.loadavg_* above the thread count) 2-thread OpenMP regions stall whenever one "
    "thread is descheduled, which slows models made of many small kernels (the students, the "
    "mixers most) far more than the teacher, so medians are noisy there and the fastest "
    "repeat is the better estimate of an idle machine."
)


def train_flops_per_sample(model: ForecastModel) -> tuple[int, int]:
    """(corrected, torch raw) FLOPs of one training step (fwd + MSE + bwd) for one sample."""
    corrected, raw = (count_pass(model, GRID, GRID, train=True, corrected=c).flops
                      for c in (True, False))
    return corrected, raw


# -- helpers ----------------------------------------------------------------------------------


def make_model(name: str) -> ForecastModel:
    return build_model(
        name, in_steps=IN_STEPS, out_steps=OUT_STEPS, channels=CHANNELS, height=GRID, width=GRID
    )


def make_train_step(model: ForecastModel, batch: int, device: str, steps: int
                    ) -> Callable[[], object]:
    """The engine's training step of ``model`` on a fixed batch; ``steps``: how many the
    benchmark takes (the length of the learning-rate schedule)."""
    x, y = random_batch(model, batch, GRID, GRID, device)
    cfg = TrainConfig(epochs=1, batch_size=batch)
    return training_step(model, mse_loss, cfg, device, x, y, steps_per_epoch=steps)[1]


def make_infer_step(model: ForecastModel, batch: int, device: str) -> Callable[[], None]:
    x, _ = random_batch(model, batch, GRID, GRID, device)
    return forward_pass(model, x, amp=True)


def precision(device: str) -> str:
    """What the benchmark's timings on ``device`` compute in."""
    return "fp32" if device == "cpu" else "bf16-autocast"


def timing_record(times: list[float], batch: int, warmup: int, iters: int, device: str
                  ) -> dict[str, Any]:
    med = statistics.median(times)
    return {
        "precision": precision(device),
        "batch": batch,
        "warmup": warmup,
        "repeats": len(times),
        "iters_per_repeat": iters,
        "median_s": med,
        "min_s": min(times),
        "all_s": [round(t, 6) for t in times],
        "samples_per_s": batch / med,
        "samples_per_s_best": batch / min(times),
    }


def matmul_flops(device: str, n: int, repeats: int) -> dict[str, Any]:
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    iters = 1 if device == "cpu" else 20
    times = time_calls(lambda: torch.mm(a, b), device, warmup=2, repeats=repeats, calls=iters)
    med = statistics.median(times)
    return {
        "shape": f"{n}x{n} @ {n}x{n}",
        "dtype": str(dtype).removeprefix("torch."),
        "flops_per_matmul": 2 * n**3,
        "repeats": len(times),
        "median_s": med,
        "all_s": [round(t, 6) for t in times],
        "gflops_per_s": 2 * n**3 / med / 1e9,
    }


# -- memory -----------------------------------------------------------------------------------


def child_main(name: str, batch: int, steps: int, threads: int) -> None:
    """``--child``: train ``name`` for ``steps`` steps; print the peak-RSS increase as JSON."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step = make_train_step(make_model(name), batch, "cpu", steps)
    with peak_memory("cpu") as memory:
        for _ in range(steps):
            step()
    print(json.dumps(memory))


def memory_record(memory: dict[str, Any], batch: int, weights: float) -> dict[str, Any]:
    """A :func:`_timing.peak_memory` record as this benchmark reports it."""
    rest = {k: v for k, v in memory.items() if k != "increase_mb"}
    peak_mb = memory["increase_mb"]
    return {"batch": batch, "steps": MEM_STEPS, "peak_train_mb": peak_mb, "weights_mb": weights,
            "peak_incl_weights_mb": peak_mb + weights, **rest}


def cpu_memory(name: str, batch: int, threads: int, weights: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--child-batch",
           str(batch), "--child-steps", str(MEM_STEPS), "--threads", str(threads)]
    return memory_record(run_json(cmd, thread_env(threads)), batch, weights)


def cuda_memory(name: str, batch: int, weights: float) -> dict[str, Any]:
    step = make_train_step(make_model(name), batch, "cuda", MEM_STEPS)
    with peak_memory("cuda") as memory:
        for _ in range(MEM_STEPS):
            step()
    del step
    torch.cuda.empty_cache()
    return memory_record(memory, batch, weights)


# -- per model --------------------------------------------------------------------------------


def matmul_size(device: str, args: argparse.Namespace) -> int:
    return args.matmul_size if device == "cpu" else 8192


def bench_device(
    name: str,
    device: str,
    args: argparse.Namespace,
    fwd_flops: int,
    weights: float,
    teacher: bool,
) -> dict[str, Any]:
    heavy = device == "cpu" and fwd_flops > HEAVY_FLOPS
    if device == "cpu":
        train_batch = args.heavy_batch if heavy else args.batch
        infer_batch = args.batch
        mem_batch = args.mem_batch
        repeats = min(args.repeats, HEAVY_REPEATS) if heavy else args.repeats
        warmup = 1
        iters = 1
    else:
        train_batch = infer_batch = mem_batch = args.cuda_batch
        repeats, warmup, iters = args.repeats, 3, 10
    out: dict[str, Any] = {"trimmed_for_cpu_time": heavy}

    log(f"{name} [{device}] memory, batch {mem_batch}")
    if device == "cpu":
        out["memory"] = cpu_memory(name, mem_batch, args.threads, weights)
    else:
        out["memory"] = cuda_memory(name, mem_batch, weights)

    torch.manual_seed(0)
    model = make_model(name).to(device)
    log(f"{name} [{device}] training, batch {train_batch}")
    step = make_train_step(model, train_batch, device, warmup + repeats * iters)
    if teacher:  # the machine's matmul speed right around the timing the target divides
        mm_before = matmul_flops(device, matmul_size(device, args), max(args.repeats, 5))
    t = time_calls(step, device, warmup=warmup, repeats=repeats, calls=iters)
    out["train"] = timing_record(t, train_batch, warmup, iters, device)
    if teacher:
        mm_after = matmul_flops(device, matmul_size(device, args), max(args.repeats, 5))
        pooled = statistics.median(mm_before["all_s"] + mm_after["all_s"])
        out["matmul_around_train"] = {
            "before_gflops_per_s": mm_before["gflops_per_s"],
            "after_gflops_per_s": mm_after["gflops_per_s"],
            "gflops_per_s": mm_before["flops_per_matmul"] / pooled / 1e9,
            "note": "median of the matmul repeats timed just before and just after the "
            "training timing; the matmul ratio uses it (robust to load that varies in time)",
        }
    del step

    log(f"{name} [{device}] inference, batch {infer_batch}")
    t = time_calls(make_infer_step(model, infer_batch, device), device, warmup=warmup,
                   repeats=repeats, calls=iters)
    rec = timing_record(t, infer_batch, warmup, iters, device)
    rec["latency_ms"] = rec["median_s"] * 1e3
    out["inference"] = rec

    log(f"{name} [{device}] latency, batch 1")
    b1_iters = 1 if device == "cpu" else 20
    t = time_calls(make_infer_step(model, 1, device), device, warmup=warmup, repeats=repeats,
                   calls=b1_iters)
    rec = timing_record(t, 1, warmup, b1_iters, device)
    rec["latency_ms"] = rec["median_s"] * 1e3
    out["latency_b1"] = rec
    del model
    return out


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="cpu, cuda or all available (default)",
    )
    p.add_argument(
        "--models",
        default=None,
        help=f"comma-separated model names (default: {TEACHER} + all students)",
    )
    p.add_argument("--batch", type=int, default=16, help="CPU training/inference batch")
    p.add_argument(
        "--heavy-batch",
        type=int,
        default=4,
        help=f"CPU training batch for models over {HEAVY_FLOPS:.0e} fwd FLOPs/sample",
    )
    p.add_argument(
        "--mem-batch",
        type=int,
        default=4,
        help="CPU training-memory batch, the same for every model",
    )
    p.add_argument("--cuda-batch", type=int, default=64, help="CUDA batch (train, infer, memory)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n×n CPU matmul")
    p.add_argument("--spec-peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 spec peak (default: looked up by its name)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {', '.join(QUICK_MODELS)}, 2 repeats, smaller batches",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-batch", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--child-steps", type=int, default=MEM_STEPS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.batch = min(args.batch, 8)
        args.cuda_batch = min(args.cuda_batch, 32)
        args.matmul_size = min(args.matmul_size, 1024)
    if args.models is None:
        args.models = QUICK_MODELS if args.quick else [TEACHER, *STUDENTS]
    else:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for n in (
        args.batch,
        args.heavy_batch,
        args.mem_batch,
        args.cuda_batch,
        args.repeats,
        args.threads,
    ):
        if n < 1:
            p.error("batches, repeats and threads must be positive")
    return args


def ratio_targets(
    models: list[dict[str, Any]], device: str, matmul: dict[str, Any] | None,
    spec_tflops: float | None = None,
) -> dict[str, Any]:
    by_name = {m["name"]: m for m in models if device in m and "error" not in m[device]}
    teachers = [n for n in by_name if by_name[n]["role"] == "teacher"]
    if not teachers:
        return {"error": "no teacher benchmarked on this device"}
    ref = TEACHER if TEACHER in teachers else teachers[0]
    t = by_name[ref]
    t_inf = t[device]["inference"]["samples_per_s"]
    t_mem = t[device]["memory"]["peak_train_mb"]
    students = [n for n in by_name if by_name[n]["role"] == "student"]
    checked = [n for n in students if n.endswith("-m")] or students
    out: dict[str, Any] = {"reference_teacher": ref, "students": {}}
    for n in checked:
        s = by_name[n][device]
        speed = s["inference"]["samples_per_s"] / t_inf
        speed_best = (
            s["inference"]["samples_per_s_best"] / t[device]["inference"]["samples_per_s_best"]
        )
        mem = s["memory"]["peak_train_mb"] / t_mem if t_mem > 0 else float("nan")
        out["students"][n] = {
            "inference_speedup": {
                "value": speed,
                "target": f">= {TARGETS['inference_speedup']}",
                "met": speed >= TARGETS["inference_speedup"],
                "batch": s["inference"]["batch"],
                "value_from_best_repeats": speed_best,
            },
            "train_memory_ratio": {
                "value": mem,
                "target": f"<= {TARGETS['train_memory_ratio']}",
                "met": mem <= TARGETS["train_memory_ratio"],
                "batch": s["memory"]["batch"],
            },
        }
    around = t[device].get("matmul_around_train")
    if around is not None:
        matmul = {"gflops_per_s": around["gflops_per_s"], "measured": "around teacher training"}
    elif matmul is not None:
        matmul = {"gflops_per_s": matmul["gflops_per_s"], "measured": "start of run"}
    if matmul is not None:
        train = t[device]["train"]
        flops_s = t["train_flops_per_sample"] * train["samples_per_s"]
        frac = flops_s / (matmul["gflops_per_s"] * 1e9)
        out["teacher_train_flops_fraction_of_matmul"] = {
            "value": frac,
            "target": f">= {TARGETS['teacher_matmul_fraction']}"
            + ("" if device == "cpu" else " (stated for CPU; bf16 matmul on CUDA)"),
            "met": frac >= TARGETS["teacher_matmul_fraction"],
            "teacher_train_gflops_per_s": flops_s / 1e9,
            "matmul_gflops_per_s": matmul["gflops_per_s"],
            "matmul_measured": matmul["measured"],
            "teacher_train_batch": train["batch"],
            "value_from_best_repeat": t["train_flops_per_sample"]
            * train["samples_per_s_best"]
            / (matmul["gflops_per_s"] * 1e9),
            "value_with_3x_forward_flops": 3
            * t["fwd_flops_per_sample"]
            * train["samples_per_s"]
            / (matmul["gflops_per_s"] * 1e9),
        }
        if device != "cpu":
            out["teacher_mfu"] = teacher_mfu(flops_s, matmul["gflops_per_s"], spec_tflops,
                                             train)
    return out


def teacher_mfu(flops_s: float, matmul_gflops: float, spec_tflops: float | None,
                train: dict[str, Any]) -> dict[str, Any]:
    """The teacher's training FLOP/s as a fraction of the measured bf16 matmul rate and of
    the GPU's spec peak (None when the peak is unknown)."""
    return {
        "precision": train["precision"],
        "teacher_train_tflops_per_s": flops_s / 1e12,
        "mfu_vs_measured_matmul": flops_s / (matmul_gflops * 1e9),
        "measured_matmul_tflops_per_s": matmul_gflops / 1e3,
        "mfu_vs_spec_peak": flops_s / (spec_tflops * 1e12) if spec_tflops else None,
        "spec_peak_tflops_per_s": spec_tflops,
        "batch": train["batch"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child, args.child_batch, args.child_steps, args.threads)
        return 0
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        log("--device cuda but torch.cuda.is_available() is False")
        return 2
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if cuda else [])}[
        args.device
    ]

    doc: dict[str, Any] = {
        "benchmark": "sdkd model zoo: size, FLOPs, throughput, latency, training memory",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        "config": {
            "grid": [GRID, GRID],
            "in_steps": IN_STEPS,
            "out_steps": OUT_STEPS,
            "channels": CHANNELS,
            "devices": devices,
            "threads": args.threads,
            "repeats": args.repeats,
            "cpu_batch": args.batch,
            "cpu_heavy_train_batch": args.heavy_batch,
            "cpu_mem_batch": args.mem_batch,
            "heavy_fwd_flops_threshold": HEAVY_FLOPS,
            "heavy_max_repeats": HEAVY_REPEATS,
            "cuda_batch": args.cuda_batch,
            "cuda_amp": "bfloat16 autocast",
            "quick": args.quick,
            "models": args.models,
        },
        "flops_convention": "2 FLOPs per multiply-add (torch.utils.flop_counter)",
        "train_flops_method": TRAIN_FLOPS_METHOD,
        "memory_method": MEMORY_METHOD,
        "timing_method": TIMING_METHOD,
        "matmul": {},
        "models": [],
        "targets": {},
    }

    for device in devices:
        log(f"matmul [{device}]")
        n = matmul_size(device, args)
        doc["matmul"][device] = matmul_flops(device, n, max(args.repeats, 5))
        log(f"  {doc['matmul'][device]['gflops_per_s']:.1f} GFLOP/s")

    for name in args.models:
        family, _ = get_family(name)
        model = make_model(name)
        params = count_parameters(model)
        weights = weights_mb(model)
        fwd = flops_per_sample(model, GRID, GRID)
        train, train_raw = train_flops_per_sample(model)
        del model
        rec: dict[str, Any] = {
            "name": name,
            "role": "teacher" if family.name == "teacher" else "student",
            "params": params,
            "fwd_flops_per_sample": fwd,
            "fwd_gflops_per_sample": fwd / 1e9,
            "train_flops_per_sample": train,
            "train_gflops_per_sample": train / 1e9,
            "train_flops_torch_raw": train_raw,
            "train_flops_3x_forward": 3 * fwd,
        }
        log(
            f"{name}: {params / 1e6:.2f} M params, {fwd / 1e9:.3f} GFLOPs fwd, "
            f"{train / 1e9:.3f} GFLOPs train"
        )
        for device in devices:
            try:
                r = bench_device(name, device, args, fwd, weights, rec["role"] == "teacher")
                r["train_gflops_per_s"] = train * r["train"]["samples_per_s"] / 1e9
                rec[device] = r
                log(
                    f"  [{device}] train {r['train']['samples_per_s']:.2f}/s, "
                    f"infer {r['inference']['samples_per_s']:.2f}/s, "
                    f"mem {r['memory']['peak_train_mb']:.1f} MB"
                )
            except Exception as exc:  # keep going: one broken model should not lose the rest
                log(f"  [{device}] FAILED: {exc!r}")
                rec[device] = {"error": repr(exc)}
        doc["models"].append(rec)

    for device in devices:
        spec = None
        if device != "cpu":
            spec, source = spec_peak_tflops(torch.cuda.get_device_name(), args.spec_peak_tflops)
            doc["spec_peak"] = {"bf16_dense_tflops_per_s": spec, "source": source}
        doc["targets"][device] = ratio_targets(doc["models"], device,
                                               doc["matmul"].get(device), spec)
    doc["host"]["loadavg_end"] = loadavg()
    doc["wall_s"] = time.perf_counter() - started
    print(json.dumps(doc, indent=2))
    log(f"done in {doc['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
