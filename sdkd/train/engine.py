"""The one training loop, for teachers and students alike.

:func:`fit` optimizes one ``nn.Module`` with AdamW under a per-step warmup + cosine
learning-rate schedule, validates after every epoch, keeps the best weights, stops
early when asked, and checkpoints every epoch so that a killed job resumes exactly
where it stopped. It reads top to bottom; there is no framework and no callback
machinery.

What is trained
    ``model`` is *everything* that is optimized and checkpointed. A student alone is
    passed as is. A distillation run that also learns a projection passes both in one
    module, e.g. ``nn.ModuleDict({"student": student, "projection": projection})``, and
    its ``loss_fn`` indexes into it (``sub_state_dict`` in :mod:`sdkd.train.checkpoint`
    extracts the student from the saved weights). The frozen teacher is *not* part of
    ``model``: it lives in the caller's ``loss_fn`` closure, already in ``eval()`` mode
    with ``requires_grad_(False)``. The engine calls ``.train()`` / ``.eval()`` only on
    ``model``, so it never switches the teacher into training mode.

The loss
    ``loss_fn(model, x, y) -> (total, terms)``: ``total`` is the scalar that is
    back-propagated, ``terms`` names its parts (``{"mse": ..., "kd_low": ...}``) for the
    history. Both are assumed to be means over the batch; the epoch values are the
    per-sample means (batch values weighted by batch size). The validation loss is the
    same ``loss_fn`` under ``torch.no_grad()`` with ``model.eval()``.

Reproducibility and resume
    A fresh run seeds torch, numpy and ``random`` with ``cfg.seed`` (the caller seeds
    model initialisation before calling). The shuffle order of epoch ``e`` comes from a
    ``torch.Generator`` seeded from ``(cfg.seed, e)`` and nothing else, so it does not
    depend on what ran before. ``out_dir/last.pt`` holds the model, optimizer, scheduler
    and all RNG states at the end of each epoch; resuming restores them, so on the CPU a
    run killed after epoch k and resumed ends with bit-identical weights and history
    losses to an uninterrupted run.

Files in ``out_dir`` (written atomically, in this order, every epoch):
    ``best.pt`` (when the validation loss improved: weights, meta, epoch, val loss),
    ``history.csv`` (one row per epoch), ``last.pt`` (everything needed to resume; written
    last, it is the commit point of an epoch). ``done.json`` appears only when training
    has finished (all epochs, or early stop) and summarises the run.

Resuming from ``last.pt`` alone
    ``last.pt`` also holds the payload of ``best.pt`` (a CPU copy of the best weights,
    with its epoch and score) and every history row, so a resumed run first rewrites
    ``best.pt`` and ``history.csv`` from it. A workflow manager may therefore delete
    those two (Snakemake deletes the declared outputs of an incomplete job before
    rerunning it, and they must be declared for a cluster executor to ship them to
    later jobs); only ``last.pt`` has to survive. The rewrite also rolls back an epoch
    that a kill interrupted between ``best.pt`` and ``last.pt``.

Non-finite losses
    Step losses are checked on the host every ``cfg.log_every`` steps and at the end of
    each epoch (not every step, which would force a GPU sync per step). A NaN/Inf in the
    total, a term or the gradient norm stops training with an :class:`SdkdError` naming
    the epoch, step and offending terms; nothing is written for that epoch, so
    ``last.pt``/``best.pt`` from earlier epochs stay as they were.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.train.checkpoint import load_checkpoint, plain, save_checkpoint

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Mapping[str, Tensor]]]

LAST, BEST, HISTORY, DONE = "last.pt", "best.pt", "history.csv", "done.json"

# Config fields that may change between a run and its resumption without changing the
# result (for datasets without randomness of their own); any other difference makes
# resuming an error.
_RESUME_FREE = frozenset({"num_workers", "log_every"})


@dataclass
class TrainConfig:
    """Optimisation settings of one training run (teacher or student)."""

    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.05  # AdamW; applied to weights with ≥ 2 dims only (not biases/norms)
    warmup_epochs: float = 1.0  # linear warmup over this many epochs' steps, then cosine
    min_lr: float = 0.0  # the cosine ends here at the last step
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    patience: int | None = None  # stop after this many epochs without a better val loss
    amp: bool = True  # bf16 autocast; only has an effect on CUDA
    compile: bool = False  # torch.compile the loss function (model + teacher + loss)
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes
    log_every: int = 50  # steps between host syncs (NaN check, progress-bar loss)

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> SdkdError:
            return SdkdError(f"train.{key}: expected {expected}, got {getattr(self, key)!r}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "an integer ≥ 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "an integer ≥ 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a finite number > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "a finite number ≥ 0")
        if not (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise bad("warmup_epochs", "a finite number ≥ 0")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise bad("min_lr", f"a number between 0 and lr={self.lr}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise bad("grad_clip", "a number > 0 or null")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise bad("patience", "an integer ≥ 1 or null")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise bad("num_workers", "an integer ≥ 0")
        if not isinstance(self.log_every, int) or self.log_every < 1:
            raise bad("log_every", "an integer ≥ 1")


@dataclass
class TrainResult:
    best_val: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path = Path()


def warmup_cosine(steps_per_epoch: int, cfg: TrainConfig) -> Callable[[int], float]:
    """LR multiplier of step ``s`` (0-based): linear warmup to 1, then cosine to min_lr/lr."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total)
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle generator: a function of (seed, epoch) only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: torch.device,
    meta: Mapping[str, Any] | None = None,
    resume: bool = True,
    monitor: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set``, validate on ``val_set``, write checkpoints to ``out_dir``.

    ``model`` is everything that is optimized and checkpointed (for distillation a
    ``nn.ModuleDict`` of student and projection; the frozen teacher stays in ``loss_fn``'s
    closure, see the module docstring). ``device`` is where it trains, e.g. the device of a
    :func:`sdkd.train.lease.gpu_lease`; ``loss_fn`` must keep any teacher on that device.
    ``meta`` (JSON-serialisable) describes what is trained (dataset, shapes, model spec,
    config) and is stored in every checkpoint and in ``done.json``. With ``resume=True``
    a finished run (``done.json``) is returned as stored, and an unfinished one
    continues from ``last.pt`` — both only when they were written with the same train
    config and meta; otherwise (a changed parameter) training starts over, with a
    warning. Resuming first rewrites ``best.pt`` and ``history.csv`` from ``last.pt``, so
    they may be missing (a finished run missing them is rebuilt the same way). With
    ``resume=False`` training always starts over (an old ``done.json`` is removed first,
    the other files are replaced epoch by epoch).

    ``monitor`` names the validation term that picks ``best.pt`` and drives early
    stopping (default: the total loss). A distilled student is selected on ``gt``, its
    forecast error, not on a total that also holds the distillation terms.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = plain(dict(meta or {}), where="meta")
    config = dataclasses.asdict(cfg)
    device = torch.device(device)
    done_path, last_path = out_dir / DONE, out_dir / LAST

    if resume and done_path.exists():
        finished = _finished(done_path, config, meta)
        if finished is not None:
            missing = [name for name in (BEST, HISTORY) if not (out_dir / name).exists()]
            if not missing:
                return finished
            # Not returned as is: later steps read these files. last.pt of the last
            # epoch rebuilds them below (the loop then has nothing left to run).
            then = f"rebuilding from {LAST}" if last_path.exists() else f"no {LAST}: training again"
            log.warning("%s: finished, but %s missing; %s", out_dir, " and ".join(missing), then)
    done_path.unlink(missing_ok=True)
    for name, dataset in (("train_set", train_set), ("val_set", val_set)):
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise SdkdError(f"{name}: is empty, expected at least one (x, y) sample")

    # ---- data: the shuffle generator is re-seeded from (seed, epoch) every epoch -------
    shuffle_gen = torch.Generator()
    loader_args = dict(
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    train_loader = DataLoader(train_set, shuffle=True, generator=shuffle_gen, **loader_args)
    val_loader = DataLoader(
        val_set, shuffle=False, generator=torch.Generator().manual_seed(0), **loader_args
    )
    steps_per_epoch = len(train_loader)

    # ---- model, optimizer (decay on weights, not on biases/norms), schedule -------------
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SdkdError("model: has no trainable parameters")
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps_per_epoch, cfg))

    # ---- state: fresh, or restored from last.pt -------------------------------------------
    epoch, best_val, best_epoch, bad_epochs = 0, math.inf, 0, 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None  # the payload of best.pt, kept for every last.pt
    ckpt = load_checkpoint(last_path, what="checkpoint") if resume and last_path.exists() else None
    if ckpt is not None and (stale := _stale(ckpt, config, meta)):
        log.warning("%s was written %s; starting over", last_path, stale)
        ckpt = None
    if ckpt is not None and "best" not in ckpt:
        # Written before last.pt carried the best weights: best.pt cannot be rebuilt
        # from it (and may have been deleted), so this run cannot be finished correctly.
        log.warning("%s holds no best weights (an older sdkd wrote it); starting over",
                    last_path)
        ckpt = None
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise SdkdError(
                f"checkpoint {last_path}: does not fit this model/optimizer ({exc})"
            ) from None
        set_rng_state(ckpt["rng"], device)
        epoch, best_val, best_epoch = ckpt["epoch"], ckpt["best_val"], ckpt["best_epoch"]
        bad_epochs, history, best = ckpt["bad_epochs"], list(ckpt["history"]), ckpt["best"]
        log.info("resuming %s after epoch %d of %d", out_dir, epoch, cfg.epochs)
        # Back to this commit point: best.pt and history.csv may be missing (deleted by
        # the workflow manager) or one epoch ahead (killed before last.pt was written).
        save_checkpoint(out_dir / BEST, best)
        write_history(out_dir / HISTORY, history)
    else:
        seed_everything(cfg.seed)

    step_fn = torch.compile(loss_fn) if cfg.compile else loss_fn
    autocast = _autocast(device, cfg.amp)
    device_name = _device_name(device)
    stopped_early = cfg.patience is not None and bad_epochs >= cfg.patience
    term_names: list[str] | None = None

    # ---- the loop ---------------------------------------------------------------------------
    while epoch < cfg.epochs and not stopped_early:
        epoch += 1
        t0 = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        # train
        model.train()
        shuffle_gen.manual_seed(epoch_seed(cfg.seed, epoch))
        sums: Tensor | None = None
        pending: list[Tensor] = []  # per-step [total, *terms, grad norm], checked in batches
        seen = 0
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=None)
        for step, (x, y) in enumerate(bar, start=1):
            x, y = _to_device(x, device), _to_device(y, device)
            with autocast:
                loss, terms = step_fn(model, x, y)
            term_names = _check_terms(term_names, terms, loss, epoch, step)
            loss.backward()
            norm = (
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if cfg.grad_clip is not None
                else loss.new_zeros(())
            )
            lr = optimizer.param_groups[0]["lr"]  # the LR this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            pending.append(_row(loss, terms, norm) * x.shape[0])
            seen += x.shape[0]
            if step % cfg.log_every == 0 or step == steps_per_epoch:
                block = torch.stack(pending).cpu()  # the one host sync per block of steps
                _raise_if_nonfinite(block, term_names, epoch, step - len(pending) + 1, last_path)
                sums = block.sum(0) if sums is None else sums + block.sum(0)
                pending.clear()
                bar.set_postfix(loss=f"{sums[0].item() / seen:.4g}", lr=f"{lr:.3g}")
        assert sums is not None and term_names is not None
        train_seconds = time.perf_counter() - t0
        train_means = (sums[:-1] / seen).tolist()

        # validate
        val_means = _evaluate(step_fn, model, val_loader, device, autocast)
        if not all(math.isfinite(v) for v in val_means):
            bad = [n for n, v in zip(["total", *term_names], val_means, strict=True)
                   if not math.isfinite(v)]
            raise SdkdError(
                f"validation loss is non-finite at epoch {epoch} ({', '.join(bad)}); "
                f"nothing was written for this epoch; {_last_good(last_path, epoch)}"
            )

        # bookkeeping
        val_loss = val_means[0]
        if monitor is not None and monitor not in term_names:
            raise SdkdError(f"monitor: {monitor!r} is not a loss term ({', '.join(term_names)})")
        score = val_loss if monitor is None else val_means[1 + term_names.index(monitor)]
        improved = score < best_val
        if improved:
            best_val, best_epoch, bad_epochs = score, epoch, 0
        else:
            bad_epochs += 1
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_means[0], "val_loss": val_loss}
        row |= {f"train_{n}": v for n, v in zip(term_names, train_means[1:], strict=True)}
        row |= {f"val_{n}": v for n, v in zip(term_names, val_means[1:], strict=True)}
        row |= {
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            "samples_per_s": seen / train_seconds,
            "peak_memory_mb": _peak_memory_mb(device),
            "device": device_name,
        }
        history.append(row)
        log.info(
            "epoch %d/%d  train %.4g  val %.4g%s  lr %.3g  %.1fs  %.0f samples/s",
            epoch, cfg.epochs, row["train_loss"], val_loss, " *" if improved else "",
            lr, row["seconds"], row["samples_per_s"],
        )

        # outputs: best.pt, history.csv, then last.pt (the commit point of this epoch)
        if improved:
            # A CPU copy: the weights change next epoch, and every last.pt carries it.
            best = {
                "kind": "best", "model": _cpu_copy(model.state_dict()), "meta": meta,
                "config": config, "epoch": epoch, "val_loss": val_loss, "history_row": row,
            }
            save_checkpoint(out_dir / BEST, best)
        write_history(out_dir / HISTORY, history)
        save_checkpoint(last_path, {
            "kind": "last", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": get_rng_state(device),
            "epoch": epoch, "best_val": best_val, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "history": history, "meta": meta, "config": config,
            "best": best,
        })
        stopped_early = cfg.patience is not None and bad_epochs >= cfg.patience
        if stopped_early:
            log.info("early stop after epoch %d: no improvement for %d epochs (best: epoch %d)",
                     epoch, bad_epochs, best_epoch)

    # ---- done -------------------------------------------------------------------------------
    result = TrainResult(best_val=best_val, best_epoch=best_epoch, epochs_run=epoch,
                         stopped_early=stopped_early, history=history, out_dir=out_dir)
    summary = {
        "format_version": 1,
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "best_val": best_val,
        "total_seconds": sum(r["seconds"] for r in history),
        "stopped_early": stopped_early,
        "device": device_name,
        "meta": meta,
        "config": config,
        "history": history,
    }
    with atomic_path(done_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("finished %s: best val %.4g at epoch %d", out_dir, best_val, best_epoch)
    return result


# ---- pieces of the loop ---------------------------------------------------------------------


def _check_terms(
    names: list[str] | None, terms: Mapping[str, Tensor], loss: Tensor, epoch: int, step: int
) -> list[str]:
    """Term names of this step; they must not change between steps (checked on the host)."""
    current = list(terms)
    if names is None:
        if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.requires_grad:
            raise SdkdError(
                "loss_fn: must return a scalar tensor that requires grad as its first value "
                f"(got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))})"
            )
        if "loss" in current:
            raise SdkdError("loss_fn: a term may not be named 'loss' (it is the total)")
        return current
    if current != names:
        raise SdkdError(f"loss_fn: returned terms {current} at epoch {epoch} step {step}, "
                        f"earlier {names}; the terms must be the same every step")
    return names


def _row(loss: Tensor, terms: Mapping[str, Tensor], norm: Tensor) -> Tensor:
    """One step's numbers as a float32 vector on the device: [total, *terms, grad norm]."""
    values = [loss.detach(), *(torch.as_tensor(t).detach() for t in terms.values()), norm.detach()]
    return torch.stack([v.to(device=loss.device, dtype=torch.float32) for v in values])


def _raise_if_nonfinite(
    block: Tensor, names: list[str], epoch: int, first_step: int, last_path: Path
) -> None:
    """Raise for the first step in ``block`` (rows of :func:`_row`) that is not finite."""
    finite = torch.isfinite(block)
    if bool(finite.all()):
        return
    row = int((~finite.all(1)).nonzero()[0])
    labels = ["total", *names, "gradient norm"]
    bad = [f"{n}={v:g}" for n, v, ok in zip(labels, block[row].tolist(), finite[row].tolist(),
                                            strict=True) if not ok]
    raise SdkdError(
        f"training loss is non-finite at epoch {epoch}, step {first_step + row}: "
        f"{', '.join(bad)}; nothing was written for this epoch; {_last_good(last_path, epoch)}"
    )


def _last_good(last_path: Path, epoch: int) -> str:
    if epoch > 1 and last_path.exists():
        return f"{last_path} still holds epoch {epoch - 1}"
    return "no checkpoint has been written yet"


@torch.no_grad()
def _evaluate(
    step_fn: LossFn,
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
) -> list[float]:
    """Per-sample means of [total, *terms] over ``loader`` with ``model.eval()``."""
    model.eval()
    sums, seen = None, 0
    for x, y in loader:
        x, y = _to_device(x, device), _to_device(y, device)
        with autocast:
            loss, terms = step_fn(model, x, y)
        row = _row(loss, terms, loss.new_zeros(())) * x.shape[0]
        sums = row if sums is None else sums + row
        seen += x.shape[0]
    assert sums is not None
    return (sums[:-1] / seen).tolist()


def _cpu_copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of a ``state_dict`` in host memory, detached from the live parameters."""
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _to_device(batch: Any, device: torch.device) -> Any:
    """A batch tensor, or a tuple of them (targets with cached teacher forecasts), on device."""
    if isinstance(batch, tuple | list):
        return tuple(_to_device(b, device) for b in batch)
    return batch.to(device, non_blocking=True)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated this epoch. CPU: the process's peak resident set size so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs KiB


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Write ``history`` as CSV atomically; columns in order of first appearance."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _stale(stored: Mapping[str, Any], config: dict, meta: dict) -> str | None:
    """Why a checkpoint or summary cannot continue this run (None when it can).

    A run continues only with the train config and meta it started with; anything else
    (the pipeline changed a parameter, or another model/dataset took the folder) means
    the old state describes another experiment, so training starts over.
    """
    old_config = stored.get("config", {})
    changed = [f"{k}: {old_config.get(k)!r} → {v!r}" for k, v in config.items()
               if k not in _RESUME_FREE and old_config.get(k) != v]
    if changed:
        return f"with another train config ({'; '.join(changed)})"
    old_meta = stored.get("meta") or {}
    if old_meta != meta:
        keys = sorted(k for k in set(old_meta) | set(meta) if old_meta.get(k) != meta.get(k))
        return f"for other meta (differs in {', '.join(keys)})"
    return None


def _finished(done_path: Path, config: dict, meta: dict) -> TrainResult | None:
    """The result stored in ``done.json`` by a finished run of this config and meta.

    None when the finished run was another experiment (see :func:`_stale`).
    """
    try:
        summary = json.loads(done_path.read_text())
        result = TrainResult(
            best_val=float(summary["best_val"]),
            best_epoch=int(summary["best_epoch"]),
            epochs_run=int(summary["epochs_run"]),
            stopped_early=bool(summary["stopped_early"]),
            history=list(summary["history"]),
            out_dir=done_path.parent,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SdkdError(f"{done_path}: unreadable training summary ({exc}); "
                        "delete it to train again") from None
    if stale := _stale(summary, config, meta):
        log.warning("%s was written %s; starting over", done_path, stale)
        return None
    log.info("%s: already finished (best val %.4g at epoch %d)",
             done_path.parent, result.best_val, result.best_epoch)
    return result


# ---- random number generators -------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def get_rng_state(device: torch.device) -> dict[str, Any]:
    """All global RNG states as tensors/lists/numbers, so checkpoints load with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    if device.type == "cuda":  # only the training device: touching others would initialise them
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
