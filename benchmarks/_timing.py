"""Timing and memory of the engine's training step and of inference, on CPU or CUDA.

Training is timed through :class:`sdkd.train.engine.Trainer` itself (autocast, backward,
clipping, AdamW, schedule step, zero_grad: the step ``fit`` takes), so a benchmark's
throughput is the pipeline's, not that of a re-implementation.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from _host import loadavg, rss_peak
from torch import Tensor, nn

from sdkd.machine import cpu_model_name
from sdkd.models.base import ForecastModel
from sdkd.train.engine import LossFn, TrainConfig, Trainer


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU does not)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device | str, *, warmup: int,
               repeats: int, calls: int = 1) -> list[float]:
    """Seconds per call of ``fn``: one value per timed repeat of ``calls`` calls, after
    ``warmup`` untimed calls, with the device synchronised around each repeat."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / calls)
    return times


def random_batch(model: ForecastModel, batch: int, height: int, width: int,
                 device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Input (B, T_in, C, H, W) and target (B, T_out, C, H, W) of ``model``, N(0, 1), seeded:
    the cost of a step does not depend on the values."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.in_steps, model.channels, height, width, generator=g)
    y = torch.randn(batch, model.out_steps, model.channels, height, width, generator=g)
    return x.to(device), y.to(device)


def training_step(module: nn.Module, loss_fn: LossFn, cfg: TrainConfig,
                  device: torch.device | str, x: Tensor, y: Any, *, steps_per_epoch: int
                  ) -> tuple[Trainer, Callable[[], Tensor]]:
    """The engine's trainer of ``module`` and one call of its step on the fixed batch.

    ``module``, ``loss_fn`` and ``cfg`` are what :func:`sdkd.train.engine.fit` receives;
    ``steps_per_epoch`` shapes the learning-rate schedule only.
    """
    trainer = Trainer(module, loss_fn, cfg, torch.device(device), steps_per_epoch=steps_per_epoch)
    trainer.model.train()  # fit() sets the mode once per epoch, outside the step
    return trainer, functools.partial(trainer.step, x, y)


def forward_pass(model: nn.Module, x: Tensor, *, amp: bool) -> Callable[[], None]:
    """One inference pass as a callable: eval mode, ``no_grad``, bf16 autocast on CUDA
    when ``amp`` (validation and the teacher cache), float32 without (``sdkd evaluate``)."""
    model.eval()
    enabled = amp and x.device.type == "cuda"

    def run() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled):
            model(x)

    return run


@contextmanager
def peak_memory(device: torch.device | str) -> Iterator[dict[str, Any]]:
    """How much memory the body adds at its peak, in MiB (the record is filled on exit).

    CUDA: ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` at entry
    (tensors only, not the allocator's cache); keys ``increase_mb``,
    ``baseline_allocated_mb``, ``peak_allocated_mb``. CPU: the process's resident
    high-water mark (:func:`_host.rss_peak`; meaningful in a fresh process only).
    """
    device = torch.device(device)
    if device.type != "cuda":
        with rss_peak() as record:
            yield record
        return
    record: dict[str, Any] = {}
    torch.cuda.empty_cache()
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    yield record
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    record.update(source="torch.cuda.max_memory_allocated", increase_mb=(peak - base) / 2**20,
                  baseline_allocated_mb=base / 2**20, peak_allocated_mb=peak / 2**20)


def host_info() -> dict[str, Any]:
    """The machine and software a benchmark ran on, and the load when it started."""
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu_model_name(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "loadavg_start": loadavg(),
    }
