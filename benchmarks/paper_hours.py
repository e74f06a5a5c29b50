"""GPU hours of a config's whole grid (default: config/paper.yaml) on one device.

    python benchmarks/paper_hours.py --device cuda                   # measure on the GPU
    python benchmarks/paper_hours.py --device cpu --steps 1 --batch 2 --models unet-m,teacher-paper
    python benchmarks/paper_hours.py --estimate-only                 # FLOP-based H100 estimate
    python benchmarks/paper_hours.py --config config/smoke.yaml --steps 1 --repeats 1

Prints ONE JSON document on stdout (progress goes to stderr). The grid is read with the
project's own code: ``sdkd.config.load`` (schema defaults filled), ``sdkd.plan
.expected_runs`` (teacher, then students × band settings × seeds per dataset), the
dataset's split sizes (``sdkd.data.preprocess.split_sizes``) and the window rule of
``sdkd.data.dataset.ForecastWindows`` (``(frames − in − out) // window_stride + 1`` per
trajectory), and ``training.{teacher,student}.{epochs,batch_size}``.

What one grid costs, per dataset (the pipeline's jobs, ``sdkd.train.jobs`` and
``sdkd.evaluate.run``):

- the teacher: ``epochs × (steps/epoch × s/step + validation pass + checkpoint)``;
- each student run (students × settings × seeds): the same with the student's costs;
  a distilled run (every setting but ``none``) adds ONE teacher inference pass over
  train + val, because ``sdkd.distill.cache`` computes the teacher's forecasts once per
  run (when they fit in ``distill.teacher_cache_mb``; otherwise the teacher runs at
  every training and validation step, and that is what is counted);
- every run (teacher included): one float32 inference pass over the test split
  (``sdkd evaluate`` runs without autocast).

Two separate answers:

``measured`` (unless ``--estimate-only``): on ``--device`` (cpu or cuda), per model, the
seconds of one training step of the engine itself (``sdkd.train.engine.Trainer.step``:
bf16 autocast on CUDA per the config's ``amp``, backward, clipping per ``grad_clip``,
AdamW (fused on CUDA), scheduler step, zero_grad) with the loss its jobs train it with:
the teacher's MSE, and for a student each band setting it runs with (its distillation
loss against a cached teacher forecast), averaged weighted by runs; the seconds of the
validation pass (``Trainer.losses``) and of a float32 inference pass (evaluation), peak
memory (``torch.cuda.max_memory_allocated`` on CUDA; on CPU VmHWM of a fresh subprocess
with ``--cpu-memory``, else null) and the time of one ``torch.save`` of a checkpoint of
the engine's size. Timings are the median over ``--repeats`` repeats of ``--steps``
steps after untimed warmup, at ``--batch`` (default: the config's batch size of the
role); with another batch, seconds per sample are scaled to the config's batch.

``estimated``: a FLOP-based figure for a GPU that has not been measured (default: an
H100 SXM, 989 dense bf16 TFLOP/s, at 30 % MFU): training FLOPs per sample (forward +
MSE + backward, counted by ``torch.utils.flop_counter`` on the meta device, with the
convolution-backward correction of ``benchmarks/_counts.py``) ÷ (peak × MFU). Small models
at 64 × 64 are not FLOP-bound on such a GPU, so a second figure floors each step at
(aten ops of the step, × ``--estimate-autocast-op-factor`` for bf16 casts) ×
``--estimate-op-overhead-us`` (eager PyTorch's per-op host cost) and adds checkpoint
writes at ``--estimate-disk-gbps`` and ``--estimate-job-overhead-s`` per pipeline job
(process start, imports, CUDA context, data loading). These are assumptions, stated in
the JSON, not measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _counts import TRAIN_FLOPS_METHOD, count_pass, weights_mb
from _host import loadavg, log, run_json, thread_env
from _timing import forward_pass, host_info, peak_memory, random_batch, time_calls, training_step
from torch import Tensor, nn

from sdkd import config as sdkd_config
from sdkd.data.dataset import ForecastWindows
from sdkd.data.preprocess import SPLITS, split_sizes
from sdkd.distill.settings import band_setting
from sdkd.errors import SdkdError
from sdkd.machine import cpu_model_name
from sdkd.models import build_model, count_parameters
from sdkd.models.base import ForecastModel
from sdkd.plan import dataset_settings, expected_runs, results_root
from sdkd.train.engine import LossFn, TrainConfig, Trainer
from sdkd.train.jobs import mse_loss, student_loss, train_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "paper.yaml"
H100_SXM_BF16_DENSE_TFLOPS = 989.0
MEM_STEPS = 2  # AdamW state exists from step 1 on: step 2 holds weights+grads+state+activations
# Ops a training step launches besides forward+backward: grad-norm clipping (foreach
# norms, a stack, a norm, a scale) and the fused AdamW step (a launch per tensor group).
EXTRA_STEP_OPS = 10


# -- the grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetGrid:
    """Shapes and window counts of one dataset, as the canonical file will have them."""

    name: str
    channels: int
    height: int
    width: int
    frames: int  # per trajectory (per split segment for a single series)
    in_steps: int
    out_steps: int
    window_stride: int
    trajectories: dict[str, int]
    windows: dict[str, int]
    source: str  # "config" (simulated: shapes known) or the canonical file read


def _windows(frames: int, in_steps: int, out_steps: int, stride: int) -> int:
    """ForecastWindows.starts_per_trajectory (0 when a trajectory is too short)."""
    span = in_steps + out_steps
    return 0 if span > frames else (frames - span) // stride + 1


def dataset_grid(name: str, ds: Mapping[str, Any], data_dir: Path) -> DatasetGrid:
    """Windows per split of dataset ``name``.

    A simulated dataset's raw shape follows from its ``simulate`` block, and preprocess's
    rules (strides, ``max_trajectories``, split sizes) give the canonical shape. A
    downloaded or file dataset's raw shape is not in the config: its canonical file
    ``data_dir/{name}.h5`` is read instead (``ForecastWindows``, the training code's own
    count), or the grid cannot be sized.
    """
    ins, outs, stride = ds["in_steps"], ds["out_steps"], ds["window_stride"]
    if ds["source"] != "simulate":
        path = data_dir / f"{name}.h5"
        if not path.exists():
            raise SdkdError(
                f"datasets.{name}: source {ds['source']!r} has no shape in the config; "
                f"run `sdkd preprocess` first ({path} not found) or pass --data-dir"
            )
        splits = {s: ForecastWindows(path, s) for s in SPLITS}
        c, h, w = splits["train"].frame_shape
        return DatasetGrid(
            name, c, h, w, splits["train"].n_frames, ins, outs, stride,
            {s: d.n_trajectories for s, d in splits.items()},
            {s: len(d) for s, d in splits.items()}, str(path),
        )
    sim = ds["simulate"]
    if sim["equation"] == "navier_stokes":
        t_raw, channels = sim["n_records"], 1
    else:  # diffusion_reaction: frames at linspace(0, t_end, n_frames), channels u, v
        t_raw, channels = sim["n_frames"], 2
    n_raw = sim["n_trajectories"]
    n = min(n_raw, ds["max_trajectories"] or n_raw)
    t = len(range(0, t_raw, ds["temporal_stride"]))
    h = w = len(range(0, sim["resolution"], ds["spatial_stride"]))
    if n == 1:  # one long series, cut in time into three segments (preprocess.plan_splits)
        frames = split_sizes(ds["split"], t, "frames of the single series")
        trajectories = dict.fromkeys(SPLITS, 1)
        windows = {s: _windows(frames[s], ins, outs, stride) for s in SPLITS}
        t = frames["train"]
    else:
        trajectories = split_sizes(ds["split"], n, "trajectories")
        per = _windows(t, ins, outs, stride)
        windows = {s: trajectories[s] * per for s in SPLITS}
    return DatasetGrid(name, channels, h, w, t, ins, outs, stride, trajectories, windows,
                       "config")


def build(name: str, grid: DatasetGrid, overrides: Mapping[str, Any]) -> ForecastModel:
    """The model as sdkd.train.jobs builds it for this dataset."""
    return build_model(name, in_steps=grid.in_steps, out_steps=grid.out_steps,
                       channels=grid.channels, height=grid.height, width=grid.width,
                       **overrides)


def grid_plan(config: Mapping[str, Any], grids: Mapping[str, DatasetGrid]) -> dict[str, Any]:
    """What the grid trains and evaluates, per dataset, from ``expected_runs``."""
    runs = expected_runs(config)
    out: dict[str, Any] = {"runs_total": len(runs), "datasets": {}}
    for name, grid in grids.items():
        mine = [r for r in runs if r["dataset"] == name]
        students: dict[str, dict[str, Any]] = {}
        for r in mine:
            if r["role"] != "student":
                continue
            rec = students.setdefault(r["model"], {"runs": 0, "distilled_runs": 0,
                                                   "runs_by_setting": {}})
            rec["runs"] += 1
            # `none` learns from the ground truth alone: no teacher, no cache pass.
            rec["distilled_runs"] += r["setting"] != "none"
            by_setting = rec["runs_by_setting"]
            by_setting[r["bands"]] = by_setting.get(r["bands"], 0) + 1
        training = {}
        for role in ("teacher", "student"):
            t = config["training"][role]
            training[role] = {
                "epochs": t["epochs"],
                "batch_size": t["batch_size"],
                # DataLoader without drop_last: the last, partial batch is a step too.
                "steps_per_epoch": math.ceil(grid.windows["train"] / t["batch_size"]),
                "val_batches": math.ceil(grid.windows["val"] / t["batch_size"]),
                "grad_clip": t["grad_clip"],
            }
        out["datasets"][name] = {
            **asdict(grid),
            "teacher": config["models"]["teacher"],
            "teacher_runs": sum(r["role"] == "teacher" for r in mine),
            "student_runs": sum(r["role"] == "student" for r in mine),
            "students": students,
            "training": training,
            "evaluate_batch_size": config["evaluate"]["batch_size"],
            "teacher_cache": teacher_cache(config, grid),
        }
    return out


def teacher_cache(config: Mapping[str, Any], grid: DatasetGrid) -> dict[str, Any]:
    """Does the teacher's forecast cache fit ``distill.teacher_cache_mb`` (sdkd.distill.cache)?

    The cache holds, per window, the prediction (T_out, C, H, W) and the teacher features
    (D, h, w) each (``feature_shape``) that the distillation loss reads, in float32: at
    most ``features`` of them over the dataset's band settings. The train split is
    cached first; if the train and val splits do not both fit, the teacher runs at every
    step instead.
    """
    with torch.device("meta"):  # only its shapes are needed
        teacher = build(config["models"]["teacher"], grid, config["models"]["teacher_overrides"])
    h, w = teacher.latent_grid(grid.height, grid.width)
    features = max(len(band_setting(config["distill"], key).first_point()
                       .loss(student_channels=1, teacher_channels=1).teacher_features)
                   for key in dataset_settings(config, grid.name))
    per_window = (grid.out_steps * grid.channels * grid.height * grid.width
                  + features * teacher.latent_channels * h * w) * 4 / 2**20
    limit = float(config["distill"]["teacher_cache_mb"])
    train_mb, val_mb = grid.windows["train"] * per_window, grid.windows["val"] * per_window
    fits = train_mb + val_mb <= limit
    # Windows the teacher runs once per distilled run before training: both splits when
    # they fit; the train split (wasted) when only it fits; the size probe otherwise.
    once = (grid.windows["train"] + grid.windows["val"] if fits
            else grid.windows["train"] + 1 if train_mb <= limit else 1)
    return {"mb_needed": train_mb + val_mb, "limit_mb": limit, "fits": fits,
            "teacher_windows_once_per_run": once,
            "teacher_at_every_step": not fits,
            "features": features, "feature_shape": [teacher.latent_channels, h, w]}


# -- counting: FLOPs and ops ------------------------------------------------------------------


def count_model(model: ForecastModel, grid: DatasetGrid) -> dict[str, Any]:
    """Parameters, FLOPs per sample (forward; training step corrected) and op counts."""
    counts: dict[str, Any] = {"params": count_parameters(model)}
    for train, key in ((False, "fwd"), (True, "train")):
        c = count_pass(model, grid.height, grid.width, train=train)
        counts[f"{key}_flops_per_sample"] = c.flops
        counts[f"{key}_gflops_per_sample"] = c.flops / 1e9
        counts[f"{key}_aten_ops"] = c.aten_ops
    counts["weights_mb"] = weights_mb(model)
    # What the engine writes per epoch (sdkd.train.engine.fit): last.pt holds the weights,
    # AdamW's two moments and the best weights; best.pt (the weights) when val improved.
    counts["checkpoint_mb_per_epoch"] = counts["weights_mb"] * 5
    return counts


# -- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """One loss a model trains with in the grid, and the runs that use it."""

    label: str  # "mse" (the teacher) or a band setting key (a student)
    runs: int
    module: nn.Module  # what the engine optimizes: the teacher, or {"student", "kd"}
    loss_fn: LossFn
    target: Any  # y, or (y, prediction, feature) from the teacher cache


@dataclass(frozen=True)
class Setup:
    """What timing one model needs: the model, a batch, its training config, its losses."""

    model: ForecastModel
    x: Tensor
    cfg: TrainConfig
    steps_per_epoch: int
    objectives: list[Objective]

    def trainers(self, device: str) -> Iterator[tuple[Objective, Trainer, Callable[[], Tensor]]]:
        """The engine's trainer and bound step of each objective, one at a time (a new
        optimizer each: runs of different settings do not share one)."""
        for o in self.objectives:
            trainer, step = training_step(o.module, o.loss_fn, self.cfg, device, self.x,
                                          o.target, steps_per_epoch=self.steps_per_epoch)
            yield o, trainer, step


def setup(config: Mapping[str, Any], dplan: Mapping[str, Any], grid: DatasetGrid, name: str,
          batch: int, device: str) -> Setup:
    """Model ``name`` as the jobs build it, on ``device``, with a random batch of ``batch``
    windows and the job's training config at that batch. The teacher trains on MSE; a
    student once per band setting it runs with, against stand-ins for the cached teacher
    forecast (random values of the cache's shapes: a step's cost does not depend on them)."""
    role = _role(config, name)
    torch.manual_seed(0)
    model = build(name, grid, config["models"][f"{role}_overrides"]).to(device)
    x, y = random_batch(model, batch, grid.height, grid.width, device)
    cfg = dataclasses.replace(train_config(config["training"][role], config["seed"]),
                              batch_size=batch)
    if role == "teacher":
        objectives = [Objective("mse", dplan["teacher_runs"], model, mse_loss, y)]
    else:
        d, h, w = dplan["teacher_cache"]["feature_shape"]
        objectives = []
        for key, runs in dplan["students"][name]["runs_by_setting"].items():
            setting = band_setting(config["distill"], key).first_point()
            distilled = setting.setting != "none"
            kd = setting.loss(student_channels=model.latent_channels,
                              teacher_channels=d if distilled else 1).to(device)
            kd.set_teacher_statistics({n: (torch.zeros(d), torch.ones(d))
                                       for n in kd.teacher_features})
            cached = (y, torch.randn_like(y), tuple(torch.randn(batch, d, h, w, device=device)
                                                    for _ in kd.teacher_features))
            objectives.append(Objective(key, runs, nn.ModuleDict({"student": model, "kd": kd}),
                                        student_loss(None), cached if distilled else y))
    return Setup(model, x, cfg, dplan["training"][role]["steps_per_epoch"], objectives)


def checkpoint_seconds(trainer: Trainer) -> float:
    """One torch.save of a last.pt-sized payload (trainer state, best weights) plus a
    best.pt, to a temporary file on this host's disk."""
    best = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        torch.save({**trainer.state(), "best": best}, Path(tmp) / "last.pt")
        torch.save({"model": best}, Path(tmp) / "best.pt")
        return time.perf_counter() - t0


def child_main(spec_json: str, batch: int, threads: int) -> None:
    """``--child``: the training steps of one model (:func:`setup` of the spec that
    :func:`cpu_memory` writes), MEM_STEPS per objective, on the CPU; print the peak
    resident memory as JSON (``_host.rss_peak``: VmHWM of this fresh process)."""
    torch.set_num_threads(threads)
    spec = json.loads(spec_json)
    config = sdkd_config.load(spec["config"])
    name, ds = spec["model"], spec["dataset"]
    grid = dataset_grid(ds, config["datasets"][ds], Path(spec["data_dir"]))
    dplan = grid_plan(config, {ds: grid})["datasets"][ds]
    model_setup = setup(config, dplan, grid, name, batch, "cpu")
    with peak_memory("cpu") as memory:
        for _, _, step in model_setup.trainers("cpu"):
            for _ in range(MEM_STEPS):
                step()
    print(json.dumps(memory))


def cpu_memory(args: argparse.Namespace, dataset: str, name: str, batch: int) -> dict[str, Any]:
    spec = {"config": str(args.config), "data_dir": str(args.data_dir), "dataset": dataset,
            "model": name}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec),
           "--child-batch", str(batch), "--threads", str(args.threads)]
    res = run_json(cmd, thread_env(args.threads))
    return {
        "source": f"{res['source']} of a fresh subprocess",
        "batch": batch,
        "peak_mb": res["peak_vmhwm_mb"] if res["source"] == "VmHWM" else res["peak_ru_maxrss_mb"],
        "peak_increase_mb": res["increase_mb"],
    }


def _run_weighted(by_loss: Mapping[str, Mapping[str, Any]], key: str) -> float:
    """``key`` averaged over a model's objectives, each weighted by its runs: the mean over
    the grid's runs of the model, which is what the totals need."""
    runs = sum(v["runs"] for v in by_loss.values())
    return sum(v["runs"] * v[key] for v in by_loss.values()) / runs


def measure(config: Mapping[str, Any], dplan: Mapping[str, Any], grid: DatasetGrid,
            dataset: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per training step, validation and inference sample of ``name`` on
    ``args.device``: the engine's ``Trainer.step`` and ``Trainer.losses`` per objective."""
    device = args.device
    role_batch = dplan["training"][_role(config, name)]["batch_size"]
    batch = args.batch or role_batch
    warmup = args.warmup if args.warmup is not None else (1 if device == "cpu" else 3)
    timed = functools.partial(time_calls, device=device, warmup=warmup, repeats=args.repeats,
                              calls=args.steps)
    model_setup = setup(config, dplan, grid, name, batch, device)
    by_loss: dict[str, dict[str, Any]] = {}
    # Used on CUDA only: on the CPU this process's peak is no model's (--cpu-memory is).
    with peak_memory(device) as memory:
        for o, trainer, step in model_setup.trainers(device):
            train = timed(step)
            trainer.model.eval()  # validation, as fit runs it
            val = timed(functools.partial(trainer.losses, model_setup.x, o.target))
            s_step = statistics.median(train)
            by_loss[o.label] = {
                "runs": o.runs,
                "train_s_per_step_all": [round(t, 6) for t in train],
                "train_s_per_step_at_timing_batch": s_step,
                # Scaled per sample to the config's batch: exact when timing at that batch.
                "train_s_per_step": s_step / batch * role_batch,
                "train_samples_per_s": batch / s_step,
                "val_s_per_sample": statistics.median(val) / batch,
            }
    ckpt = checkpoint_seconds(trainer)
    # sdkd evaluate: the model alone, float32 (no autocast).
    fp32 = timed(forward_pass(model_setup.model, model_setup.x, amp=False))
    peak: dict[str, Any] | None = None
    if device == "cuda":
        peak = {"source": memory["source"], "batch": batch,
                "peak_mb": memory["peak_allocated_mb"]}
    elif args.cpu_memory:
        peak = cpu_memory(args, dataset, name, batch)
    s_step = _run_weighted(by_loss, "train_s_per_step_at_timing_batch")
    return {
        "timing_batch": batch,
        "config_batch": role_batch,
        "warmup": warmup,
        "steps_per_repeat": args.steps,
        "train_by_loss": by_loss,
        "train_s_per_step_at_timing_batch": s_step,
        "train_s_per_step": _run_weighted(by_loss, "train_s_per_step"),
        "train_samples_per_s": batch / s_step,
        "infer_s_per_sample_amp": _run_weighted(by_loss, "val_s_per_sample"),
        "infer_s_per_sample_fp32": statistics.median(fp32) / batch,
        "checkpoint_s_per_epoch": ckpt,
        "peak_memory": peak,
    }


# -- totals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """Seconds of the pieces of a run, for one model on one dataset."""

    train_s_per_step: float  # at the config's batch size of the role
    infer_s_per_sample_amp: float  # validation, teacher cache (bf16 autocast on CUDA)
    infer_s_per_sample_fp32: float  # sdkd evaluate
    checkpoint_s_per_epoch: float


def epoch_seconds(c: Costs, plan: Mapping[str, Any], role: str) -> float:
    t = plan["training"][role]
    return (t["steps_per_epoch"] * c.train_s_per_step
            + plan["windows"]["val"] * c.infer_s_per_sample_amp + c.checkpoint_s_per_epoch)


def grid_seconds(plan: Mapping[str, Any], cache: Mapping[str, Any],
                 costs: Mapping[str, Costs]) -> dict[str, Any]:
    """Seconds of one dataset's grid: teacher, student runs, cache passes, evaluation."""
    teacher = plan["teacher"]
    tc = costs[teacher]
    windows = plan["windows"]
    epochs_t = plan["training"]["teacher"]["epochs"]
    epochs_s = plan["training"]["student"]["epochs"]
    out = {
        "teacher_train_s": plan["teacher_runs"] * epochs_t * epoch_seconds(tc, plan, "teacher"),
        "student_train_s": 0.0,
        "teacher_cache_s": 0.0,
        "evaluate_s": plan["teacher_runs"] * windows["test"] * tc.infer_s_per_sample_fp32,
        "per_student": {},
    }
    for name, rec in plan["students"].items():
        sc = costs[name]
        train = rec["runs"] * epochs_s * epoch_seconds(sc, plan, "student")
        cached = rec["distilled_runs"] * cache["teacher_windows_once_per_run"]
        if cache["teacher_at_every_step"]:  # the teacher's forward at every train/val step
            cached += rec["distilled_runs"] * epochs_s * (windows["train"] + windows["val"])
        cache_s = cached * tc.infer_s_per_sample_amp
        eval_s = rec["runs"] * windows["test"] * sc.infer_s_per_sample_fp32
        out["student_train_s"] += train
        out["teacher_cache_s"] += cache_s
        out["evaluate_s"] += eval_s
        out["per_student"][name] = {
            "runs": rec["runs"],
            "s_per_epoch": epoch_seconds(sc, plan, "student"),
            "train_h": train / 3600,
            "teacher_cache_h": cache_s / 3600,
            "evaluate_h": eval_s / 3600,
        }
    out["teacher_s_per_epoch"] = epoch_seconds(tc, plan, "teacher")
    out["total_s"] = (out["teacher_train_s"] + out["student_train_s"]
                      + out["teacher_cache_s"] + out["evaluate_s"])
    return out


def hours(parts: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds → hours for the summary keys, with the per-student table kept."""
    keys = ("teacher_train_s", "student_train_s", "teacher_cache_s", "evaluate_s", "total_s")
    return {k.removesuffix("_s") + "_h": parts[k] / 3600 for k in keys} | {
        "teacher_s_per_epoch": parts["teacher_s_per_epoch"],
        "per_student": parts["per_student"],
    }


def total(datasets: Mapping[str, dict[str, Any]], extra_h: float = 0.0) -> float:
    return sum(d["total_h"] for d in datasets.values()) + extra_h


def estimate_costs(counts: Mapping[str, Any], batch: int, eval_batch: int,
                   args: argparse.Namespace, floor: bool) -> Costs:
    """FLOP-bound seconds at ``peak × MFU``. With ``floor``, each training step or inference
    batch takes at least its aten ops × the per-op overhead (ops under bf16 autocast ×
    the autocast factor; evaluation runs in float32), and checkpoints are written at the
    disk rate."""
    rate = args.estimate_peak_tflops * 1e12 * args.estimate_mfu
    overhead = args.estimate_op_overhead_us * 1e-6
    amp = args.estimate_autocast_op_factor
    step = counts["train_flops_per_sample"] * batch / rate
    infer = infer_fp32 = counts["fwd_flops_per_sample"] / rate
    ckpt = 0.0
    if floor:
        step = max(step, (counts["train_aten_ops"] * amp + EXTRA_STEP_OPS) * overhead)
        infer = max(infer, counts["fwd_aten_ops"] * amp * overhead / batch)
        infer_fp32 = max(infer_fp32, counts["fwd_aten_ops"] * overhead / eval_batch)
        ckpt = counts["checkpoint_mb_per_epoch"] / 1024 / args.estimate_disk_gbps
    return Costs(step, infer, infer_fp32, ckpt)


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline config (YAML)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to measure (default: cuda if available, else cpu)")
    p.add_argument("--models", default=None,
                   help="comma-separated subset of the grid's models (default: all of them)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per repeat after warmup (default: 2 on CPU, 20 on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed warmup steps (default: 1 on CPU, 3 on CUDA)")
    p.add_argument("--batch", type=int, default=None,
                   help="timing batch (default: the config's); seconds per sample are scaled "
                   "to the config's batch (use a small one on CPU: teacher-paper at 16 takes "
                   "~15 s a step on 2 cores)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--cpu-memory", action="store_true",
                   help="on CPU, measure peak memory (VmHWM) in a fresh subprocess per model")
    p.add_argument("--data-dir", default=None,
                   help="canonical files of datasets whose shape the config does not give "
                   "(default: the config's results root's data/, e.g. results/data)")
    p.add_argument("--estimate-only", action="store_true",
                   help="no timing: FLOP counts and the estimate only")
    p.add_argument("--estimate-peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS,
                   help="peak TFLOP/s of the estimated GPU (default: H100 SXM, dense bf16)")
    p.add_argument("--estimate-mfu", type=float, default=0.3,
                   help="model FLOP utilisation assumed for the estimate")
    p.add_argument("--estimate-op-overhead-us", type=float, default=10.0,
                   help="eager PyTorch host cost per aten op (µs), the floor of a step")
    p.add_argument("--estimate-autocast-op-factor", type=float, default=2.0,
                   help="aten ops under bf16 autocast ÷ ops without (casts; measured 2.0-2.2 "
                   "with CPU autocast for teacher-paper, unet-s, resnet-m, mixer-m)")
    p.add_argument("--estimate-disk-gbps", type=float, default=1.0,
                   help="checkpoint write rate (GB/s) assumed for the estimate")
    p.add_argument("--estimate-job-overhead-s", type=float, default=15.0,
                   help="seconds per pipeline job for start-up (imports, CUDA, data loading)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-batch", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.steps is None:
        args.steps = 2 if args.device == "cpu" else 20
    for key in ("steps", "repeats", "threads"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be positive")
    if args.batch is not None and args.batch < 1:
        p.error("--batch must be positive")
    if not 0 < args.estimate_mfu <= 1 or args.estimate_peak_tflops <= 0:
        p.error("--estimate-mfu must be in (0, 1] and --estimate-peak-tflops positive")
    if args.models is not None:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    return args


def _role(config: Mapping[str, Any], name: str) -> str:
    return "teacher" if name == config["models"]["teacher"] else "student"


def _costs(m: Mapping[str, Any]) -> Costs:
    return Costs(m["train_s_per_step"], m["infer_s_per_sample_amp"],
                 m["infer_s_per_sample_fp32"], m["checkpoint_s_per_epoch"])


def _grid_hours(plan: Mapping[str, Any], costs: Mapping[str, Mapping[str, Costs]]
                ) -> dict[str, Any]:
    """Hours of every dataset's grid from per-(dataset, model) costs."""
    return {ds: hours(grid_seconds(d, d["teacher_cache"], costs[ds]))
            for ds, d in plan["datasets"].items()}


def measured_section(args: argparse.Namespace, config: Mapping[str, Any],
                     plan: Mapping[str, Any], grids: Mapping[str, DatasetGrid],
                     chosen: list[str], cpu_name: str) -> dict[str, Any]:
    """Time the chosen models on ``args.device``; the grid's total if all were timed."""
    models: dict[str, dict[str, Any]] = {}
    for ds, grid in grids.items():
        dplan = plan["datasets"][ds]
        models[ds] = {}
        for name in chosen:
            role = _role(config, name)
            t = dplan["training"][role]
            log(f"{ds}/{name}: timing on {args.device}, batch {args.batch or t['batch_size']}, "
                f"{args.steps} steps × {args.repeats}")
            m = measure(config, dplan, grid, ds, name, args)
            m["s_per_epoch"] = epoch_seconds(_costs(m), dplan, role)
            models[ds][name] = m
            log(f"  {m['train_s_per_step']:.4f} s/step at batch {t['batch_size']}, "
                f"{m['s_per_epoch']:.2f} s/epoch")
    sec: dict[str, Any] = {
        "device": args.device,
        "device_name": (torch.cuda.get_device_name() if args.device == "cuda"
                        else f"{cpu_name} ({args.threads} threads)"),
        "what": "seconds measured on this device: the engine's training steps "
                "(sdkd.train.engine.Trainer.step) and validation passes (Trainer.losses) on a "
                "fixed on-device batch (no data loading), with the jobs' losses: the "
                "teacher's MSE; each student once per band setting it runs with "
                "(train_by_loss), its distillation loss against a cached teacher forecast, "
                "averaged weighted by runs; float32 inference passes; one checkpoint "
                "torch.save on this host's disk; bf16 autocast on CUDA (when the config's "
                "amp is on) for training, validation and the teacher cache, float32 for "
                "evaluation; no job start-up. The teacher cache pass is costed at the "
                "teacher's validation pass",
        "timing_batch": args.batch or "config",
        "models": models,
    }
    grid_models = [config["models"]["teacher"], *config["models"]["students"]]
    if set(chosen) == set(grid_models):
        per_ds = _grid_hours(plan, {ds: {n: _costs(m) for n, m in models[ds].items()}
                                    for ds in grids})
        sec["datasets"] = per_ds
        # Hours on the measuring device: GPU hours only when it is a GPU.
        sec["total_hours"] = total(per_ds)
        # Job start-up is not measured here; the estimate's assumption, for reference.
        jobs_h = plan["runs_total"] * 2 * args.estimate_job_overhead_s / 3600
        sec["assumed_job_overhead_h"] = jobs_h
        sec["total_hours_with_assumed_job_overhead"] = sec["total_hours"] + jobs_h
    else:
        sec["total_hours"] = None
        sec["note"] = "not every model of the grid was timed (--models): no total"
    return sec


def estimated_section(args: argparse.Namespace, config: Mapping[str, Any],
                      plan: Mapping[str, Any], counts: Mapping[tuple[str, str], Any],
                      cpu_name: str) -> dict[str, Any]:
    """The FLOP-based estimate (and the op-floored one) for every model of the grid."""
    n_jobs = plan["runs_total"] * 2  # one training and one evaluation job per run
    est: dict[str, Any] = {
        "label": f"ESTIMATE, not a measurement: FLOP counts ÷ ({args.estimate_peak_tflops:g} "
                 f"TFLOP/s × MFU {args.estimate_mfu:g}); default peak = H100 SXM dense bf16",
        "counted_on": f"{cpu_name} (meta device: counts, no arithmetic)",
        "assumptions": {
            "peak_tflops": args.estimate_peak_tflops,
            "mfu": args.estimate_mfu,
            "effective_tflops": args.estimate_peak_tflops * args.estimate_mfu,
            "op_overhead_us": args.estimate_op_overhead_us,
            "autocast_op_factor": args.estimate_autocast_op_factor,
            "extra_ops_per_step": EXTRA_STEP_OPS,
            "disk_gbps": args.estimate_disk_gbps,
            "job_overhead_s": args.estimate_job_overhead_s,
            "pipeline_jobs": n_jobs,
            "flop_only": "training, validation, teacher cache and evaluation at peak × MFU; "
                         "no checkpoints, no job start-up",
            "with_overheads": "each training step and inference batch takes at least its "
                              "aten ops (× autocast_op_factor under bf16 autocast, + "
                              "extra_ops_per_step for clipping and AdamW) × op_overhead_us "
                              "(eager PyTorch is host-bound for small models); + "
                              "checkpoints at disk_gbps; + job_overhead_s per pipeline job "
                              "(a training and an evaluation job per run)",
            "op_counts": "aten ops of one fwd+MSE+bwd on the meta device, without autocast; "
                         "views excluded; the meta device may decompose fused ops (the "
                         "teacher's attention: 625 meta vs 513 CPU ops)",
            "not_counted": "distillation loss terms (FFT bands, 1×1 projection), data "
                           "loading, the optimizer's FLOPs, the step's host work outside "
                           "aten ops (Python, nn.Module calls)",
        },
        "models": {},
    }
    by_floor: dict[bool, dict[str, dict[str, Costs]]] = {False: {}, True: {}}
    for ds, dplan in plan["datasets"].items():
        est["models"][ds] = {}
        for floor in by_floor:
            by_floor[floor][ds] = {}
        for (d, name), c in counts.items():
            if d != ds:
                continue
            role = _role(config, name)
            batch = dplan["training"][role]["batch_size"]
            for floor in by_floor:
                by_floor[floor][ds][name] = estimate_costs(
                    c, batch, dplan["evaluate_batch_size"], args, floor)
            flop_c, floor_c = by_floor[False][ds][name], by_floor[True][ds][name]
            est["models"][ds][name] = {
                "train_gflops_per_sample": c["train_gflops_per_sample"],
                "s_per_step_flop_only": flop_c.train_s_per_step,
                "s_per_epoch_flop_only": epoch_seconds(flop_c, dplan, role),
                "train_samples_per_s_flop_only": batch / flop_c.train_s_per_step,
                "s_per_step_with_overheads": floor_c.train_s_per_step,
                "s_per_epoch_with_overheads": epoch_seconds(floor_c, dplan, role),
            }
    for key, floor in (("flop_only", False), ("with_overheads", True)):
        per_ds = _grid_hours(plan, by_floor[floor])
        extra = n_jobs * args.estimate_job_overhead_s / 3600 if floor else 0.0
        est[key] = {"datasets": per_ds, "job_overhead_h": extra,
                    "total_gpu_hours": total(per_ds, extra)}
    return est


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """The benchmark: the JSON document as a dict (main prints it)."""
    args = parse_args(argv)
    started = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SdkdError("--device cuda but torch.cuda.is_available() is False")
    config = sdkd_config.load(args.config)
    if args.data_dir is None:  # the config's own canonical files (a named experiment's)
        args.data_dir = str(ROOT / results_root(config) / "data")
    grids = {name: dataset_grid(name, ds, Path(args.data_dir))
             for name, ds in config["datasets"].items()}
    plan = grid_plan(config, grids)
    models_cfg = config["models"]
    grid_models = [models_cfg["teacher"], *models_cfg["students"]]
    chosen = args.models or grid_models
    unknown = sorted(set(chosen) - set(grid_models))
    if unknown:
        raise SdkdError(f"--models: {', '.join(unknown)} not in the grid "
                        f"({', '.join(grid_models)})")
    cpu_name = cpu_model_name()
    doc: dict[str, Any] = {
        "benchmark": "GPU hours of a config's full grid on one device",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config_file": str(args.config),
        "host": host_info() | {"threads": args.threads},
        "grid": plan,
        "flops_convention": "2 FLOPs per multiply-add (torch.utils.flop_counter)",
        "train_flops_method": TRAIN_FLOPS_METHOD,
        "models": {},
    }
    # Counting is cheap (meta device), so every model of the grid is counted and the
    # estimate always covers the whole grid; --models only limits the timing.
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    for ds, grid in grids.items():
        doc["models"][ds] = {}
        for name in grid_models:
            role = _role(config, name)
            model = build(name, grid, models_cfg[f"{role}_overrides"])
            c = counts[ds, name] = count_model(model, grid)
            doc["models"][ds][name] = {"role": role, **c}
            log(f"{ds}/{name}: {c['params'] / 1e6:.2f} M params, "
                f"{c['fwd_gflops_per_sample']:.3f} GFLOPs fwd, "
                f"{c['train_gflops_per_sample']:.3f} GFLOPs train, "
                f"{c['train_aten_ops']} aten ops per training step")

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:  # restored: run() is also called in-process (tests)
        doc["measured"] = (None if args.estimate_only
                           else measured_section(args, config, plan, grids, chosen, cpu_name))
    finally:
        torch.set_num_threads(threads)
    doc["estimated"] = estimated_section(args, config, plan, counts, cpu_name)
    doc["host"]["loadavg_end"] = loadavg()
    doc["wall_s"] = time.perf_counter() - started
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child, args.child_batch, args.threads)
        return 0
    try:
        doc = run(argv)
    except SdkdError as exc:
        log(f"error: {exc}")
        return 2
    print(json.dumps(doc, indent=2))
    log(f"done in {doc['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
