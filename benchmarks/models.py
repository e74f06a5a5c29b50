"""Benchmark the teacher and the students: size, FLOPs, speed and training memory.

    python benchmarks/models.py                       # full run, CPU (+ CUDA if present)
    python benchmarks/models.py --quick               # smoke run, a minute or two
    python benchmarks/models.py --device cpu --models teacher-paper,unet-m --repeats 3

Prints ONE JSON document on stdout (progress goes to stderr). For each model at
64×64, C=1, 10→10 frames it reports parameters, forward and training FLOPs per
sample, training throughput (AdamW step on an MSE loss), inference throughput and
latency (batch ``--batch`` and batch 1), and peak training memory; on CPU with
``--threads`` torch threads and, when CUDA is available, on the GPU with bf16
autocast and batch ``--cuda-batch``. It also measures the CPU's dense float32
matmul FLOP/s and computes, in the same run, the ratios the issue targets:

- each ``m`` student's inference throughput ÷ the teacher's (target ≥ 3);
- each ``m`` student's peak training memory ÷ the teacher's (target ≤ 0.25);
- the teacher's training FLOP/s ÷ the matmul FLOP/s (target ≥ 0.25 on CPU).

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
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sdkd.machine import cpu_model_name
from sdkd.models import build_model, count_parameters, flops_per_sample, get_family
from sdkd.models.registry import build_from_spec, model_spec

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

TRAIN_FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode around one training step (forward, MSE loss, "
    "backward) on batch 1, run on the meta device (same aten ops as a real step, no arithmetic), "
    "with torch's aten.convolution_backward formula replaced: torch 2.x counts the weight "
    "gradient of a grouped/depthwise convolution as if it were dense (groups× too many; the "
    "teacher's depthwise 3×3/5×5 convs inflate its count by ~38 %); here each gradient of a "
    "convolution (input and/or weight, per output_mask) costs the forward convolution's FLOPs. "
    "'train_flops_torch_raw' is torch's uncorrected count and 'train_flops_3x_forward' the 3× "
    "forward rule of thumb, for reference. Optimizer-step FLOPs are not counted."
)
MEMORY_METHOD = {
    "cpu": (
        "each model trained in a fresh subprocess (this script, --child mode) with the same "
        "threads. Baseline right after imports, model build, AdamW creation and input batch "
        f"allocation; then {MEM_STEPS} AdamW training steps at batch mem_batch (the same for "
        "every model); peak_train_mb = (peak RSS after − peak RSS at baseline) / 1024, i.e. "
        "gradients + optimizer state + activations + allocator overhead, excluding the weights "
        "already in the baseline (weights_mb is reported; peak_incl_weights_mb adds it). Peak "
        "RSS is read from /proc/self/status VmHWM (KiB), the kernel's resident high-water mark "
        "of the process image. resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) is "
        "reported too (*_ru_maxrss_mb) but not used when VmHWM exists: Linux carries the "
        "*parent's* peak RSS into a fork+exec'd child's ru_maxrss (signal->maxrss), so after "
        "the parent has run the teacher every child's ru_maxrss is pinned at the parent's peak "
        "and the increase reads 0; VmHWM is reset by exec. source says which was used"
    ),
    "cuda": (
        "in process, per model: model, AdamW and input batch on the GPU, "
        "torch.cuda.reset_peak_memory_stats(), baseline = torch.cuda.memory_allocated(); "
        f"{MEM_STEPS} AdamW training steps (bf16 autocast) at batch mem_batch (same for every "
        "model); peak_train_mb = (torch.cuda.max_memory_allocated() − baseline) / 2**20, "
        "excluding the weights like on CPU; peak_allocated_mb is the absolute peak"
    ),
}
TIMING_METHOD = (
    "time.perf_counter around each repeat (torch.cuda.synchronize() before and after on CUDA); "
    "untimed warmup first; the median repeat is reported, every repeat is listed. Training: "
    "zero_grad, forward, MSE loss against a random target, backward, AdamW step, model in "
    "train mode. Inference: model.eval() under torch.no_grad(). On CUDA a repeat is several "
    "iterations (iters_per_repeat) and times are per iteration. Targets use the medians; "
    "'*_best' values (fastest repeat) are given too: on a CPU shared with other jobs "
    "(host.loadavg_* above the thread count) 2-thread OpenMP regions stall whenever one "
    "thread is descheduled, which slows models made of many small kernels (the students, the "
    "mixers most) far more than the teacher, so medians are noisy there and the fastest "
    "repeat is the better estimate of an idle machine."
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- FLOPs ------------------------------------------------------------------------------------


def _conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """Each requested gradient of a convolution costs what the forward convolution costs.

    ``w_shape`` is (C_out, C_in / groups, *k) (for a transposed conv (C_in, C_out / groups,
    *k)): 2 · (spatial positions) · prod(k) · batch · C_out · C_in/groups FLOPs, which
    is right for grouped and depthwise convs too.
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * x_shape[0] * prod(w_shape) * prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def train_flops_per_sample(name: str) -> tuple[int, int]:
    """(corrected, torch raw) FLOPs of one training step (fwd + MSE + bwd) for one sample."""
    results = []
    for custom in ({torch.ops.aten.convolution_backward: _conv_backward_flops}, None):
        model = make_model(name)
        with torch.device("meta"):
            shadow = build_from_spec(model_spec(model))
        shadow.train()
        x = torch.empty(1, IN_STEPS, CHANNELS, GRID, GRID, device="meta")
        y = torch.empty(1, OUT_STEPS, CHANNELS, GRID, GRID, device="meta")
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            F.mse_loss(shadow(x).prediction, y).backward()
        results.append(int(counter.get_total_flops()))
    return results[0], results[1]


# -- helpers ----------------------------------------------------------------------------------


def make_model(name: str) -> torch.nn.Module:
    return build_model(
        name, in_steps=IN_STEPS, out_steps=OUT_STEPS, channels=CHANNELS, height=GRID, width=GRID
    )


def batch_tensors(batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, IN_STEPS, CHANNELS, GRID, GRID, generator=g)
    y = torch.randn(batch, OUT_STEPS, CHANNELS, GRID, GRID, generator=g)
    return x.to(device), y.to(device)


def make_train_step(model: torch.nn.Module, batch: int, device: str) -> Callable[[], None]:
    x, y = batch_tensors(batch, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    use_amp = device == "cuda"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = F.mse_loss(model(x).prediction.float(), y)
        loss.backward()
        opt.step()

    return step


def make_infer_step(model: torch.nn.Module, batch: int, device: str) -> Callable[[], None]:
    x, _ = batch_tensors(batch, device)
    use_amp = device == "cuda"

    def step() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            model(x)

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_repeats(
    fn: Callable[[], None], device: str, warmup: int, repeats: int, iters: int = 1
) -> list[float]:
    """Seconds per call of ``fn``, one value per timed repeat of ``iters`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / iters)
    return times


def timing_record(times: list[float], batch: int, warmup: int, iters: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {
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
    times = time_repeats(lambda: torch.mm(a, b), device, warmup=2, repeats=repeats, iters=iters)
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


def proc_status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``), None where unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# -- memory -----------------------------------------------------------------------------------


def child_main(name: str, batch: int, steps: int, threads: int) -> None:
    """``--child``: train ``name`` for ``steps`` steps; print the peak-RSS increase as JSON."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make_model(name)
    step = make_train_step(model, batch, "cpu")
    base_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base_hwm = proc_status_kib("VmHWM")
    base_rss = proc_status_kib("VmRSS")
    for _ in range(steps):
        step()
    peak_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_hwm = proc_status_kib("VmHWM")
    if base_hwm is not None and peak_hwm is not None:
        source, increase = "VmHWM", peak_hwm - base_hwm
    else:
        source, increase = "ru_maxrss", peak_ru - base_ru
    print(
        json.dumps(
            {
                "source": source,
                "increase_kib": max(0, increase),
                "baseline_ru_maxrss_kib": base_ru,
                "peak_ru_maxrss_kib": peak_ru,
                "baseline_vmhwm_kib": base_hwm,
                "peak_vmhwm_kib": peak_hwm,
                "baseline_vmrss_kib": base_rss,
            }
        )
    )


def cpu_memory(name: str, batch: int, threads: int, weights_mb: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        "--child-batch",
        str(batch),
        "--child-steps",
        str(MEM_STEPS),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {name} exited with {proc.returncode}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = res["increase_kib"] / 1024
    kib = {k: v for k, v in res.items() if k.endswith("_kib") and k != "increase_kib"}
    return {
        "batch": batch,
        "steps": MEM_STEPS,
        "peak_train_mb": peak_mb,
        "weights_mb": weights_mb,
        "peak_incl_weights_mb": peak_mb + weights_mb,
        "source": res["source"],
        **{k.replace("_kib", "_mb"): (v / 1024 if v is not None else None) for k, v in kib.items()},
    }


def cuda_memory(name: str, batch: int, weights_mb: float) -> dict[str, Any]:
    torch.cuda.empty_cache()
    model = make_model(name).to("cuda")
    step = make_train_step(model, batch, "cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for _ in range(MEM_STEPS):
        step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, step
    torch.cuda.empty_cache()
    peak_mb = (peak - base) / 2**20
    return {
        "batch": batch,
        "steps": MEM_STEPS,
        "peak_train_mb": peak_mb,
        "weights_mb": weights_mb,
        "peak_incl_weights_mb": peak_mb + weights_mb,
        "peak_allocated_mb": peak / 2**20,
        "baseline_allocated_mb": base / 2**20,
    }


# -- per model --------------------------------------------------------------------------------


def matmul_size(device: str, args: argparse.Namespace) -> int:
    return args.matmul_size if device == "cpu" else 8192


def bench_device(
    name: str,
    device: str,
    args: argparse.Namespace,
    fwd_flops: int,
    weights_mb: float,
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
        out["memory"] = cpu_memory(name, mem_batch, args.threads, weights_mb)
    else:
        out["memory"] = cuda_memory(name, mem_batch, weights_mb)

    torch.manual_seed(0)
    model = make_model(name).to(device)
    log(f"{name} [{device}] training, batch {train_batch}")
    step = make_train_step(model, train_batch, device)
    if teacher:  # the machine's matmul speed right around the timing the target divides
        mm_before = matmul_flops(device, matmul_size(device, args), max(args.repeats, 5))
    t = time_repeats(step, device, warmup, repeats, iters)
    out["train"] = timing_record(t, train_batch, warmup, iters)
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
    model.eval()
    t = time_repeats(make_infer_step(model, infer_batch, device), device, warmup, repeats, iters)
    rec = timing_record(t, infer_batch, warmup, iters)
    rec["latency_ms"] = rec["median_s"] * 1e3
    out["inference"] = rec

    log(f"{name} [{device}] latency, batch 1")
    b1_iters = 1 if device == "cpu" else 20
    t = time_repeats(make_infer_step(model, 1, device), device, warmup, repeats, b1_iters)
    rec = timing_record(t, 1, warmup, b1_iters)
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
    models: list[dict[str, Any]], device: str, matmul: dict[str, Any] | None
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
    return out


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
        "host": {
            "cpu": cpu_model_name(),
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if cuda else None,
            "loadavg_start": list(os.getloadavg()),
        },
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
        weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        fwd = flops_per_sample(model, GRID, GRID)
        train, train_raw = train_flops_per_sample(name)
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
                r = bench_device(name, device, args, fwd, weights_mb, rec["role"] == "teacher")
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
        doc["targets"][device] = ratio_targets(doc["models"], device, doc["matmul"].get(device))
    doc["host"]["loadavg_end"] = list(os.getloadavg())
    doc["wall_s"] = time.perf_counter() - started
    print(json.dumps(doc, indent=2))
    log(f"done in {doc['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
