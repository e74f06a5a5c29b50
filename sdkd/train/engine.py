"""The one training loop, for teachers and students alike.

:func:`fit` optimizes one ``nn.Module`` with AdamW under a per-step warmup + cosine
learning-rate schedule, validates after every epoch, keeps the best weights, stops
early when asked, and checkpoints every epoch so that a killed job resumes exactly
where it stopped. Its loop reads top to bottom in one screen; the steps it names are
below it: :class:`Trainer` (model, optimizer, schedule and the one training step),
:class:`_Progress` (the epoch counters and history), :func:`_restore`, :func:`_commit`
and :func:`_summary`; the files themselves, their lock and staging, are
:class:`sdkd.train.runfolder.RunFolder`'s. There is no framework and no callback
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
    same ``loss_fn`` under ``torch.no_grad()`` with ``model.eval()``. Which pixels count
    is ``loss_fn``'s business too: on a padded grid the jobs of :mod:`sdkd.train.jobs`
    close it over the validity mask, and as every sample has the same valid pixels the
    per-sample means stay means over valid pixels.

Reproducibility and resume
    A fresh run seeds torch, numpy and ``random`` with ``cfg.seed`` (the caller seeds
    model initialisation before calling). The shuffle order of epoch ``e`` comes from a
    ``torch.Generator`` seeded from ``(cfg.seed, e)`` and nothing else, so it does not
    depend on what ran before. ``out_dir/last.pt`` holds the model, optimizer, scheduler
    and all RNG states at the end of each epoch; resuming restores them, so on the CPU a
    run killed after epoch k and resumed ends with bit-identical weights and history
    losses to an uninterrupted run.

Run identity
    Every checkpoint and ``done.json`` store the run's ``identity`` (what the result
    depends on: :func:`sdkd.plan.run_identity` in the pipeline) and its short
    ``run_id``. A finished or interrupted run is reused only by a call with an equal
    identity; any other call trains from scratch and logs the keys that changed.

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
from sdkd.plan import SPEED_ONLY_TRAINING_KEYS
from sdkd.train.checkpoint import plain
from sdkd.train.runfolder import LAST, RunFolder

log = logging.getLogger(__name__)

# Optimizer param-group keys that choose an implementation for a device, not the maths.
_DEVICE_FLAGS = ("fused", "foreach", "capturable")

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Mapping[str, Tensor]]]


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
    identity: Mapping[str, Any] | None = None,
    attachments: Mapping[str, str] | None = None,
    resume: bool = True,
    monitor: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set``, validate on ``val_set``, write checkpoints to ``out_dir``.

    ``model`` is everything that is optimized and checkpointed (for distillation a
    ``nn.ModuleDict`` of student and projection; the frozen teacher stays in ``loss_fn``'s
    closure, see the module docstring). ``device`` is where it trains, e.g. the device of a
    :func:`sdkd.train.lease.gpu_lease`; ``loss_fn`` must keep any teacher on that device.
    ``meta`` (JSON-serialisable) describes the weights (dataset, shapes, model spec) and is
    stored in every checkpoint and in ``done.json``.

    ``identity`` (JSON-serialisable) is what the result depends on; the pipeline passes
    :func:`sdkd.plan.run_identity`, and without it the identity is the train config
    (less the keys that change only the speed) and ``meta``. It alone decides reuse:
    with ``resume=True`` a finished run (``done.json``) is returned as stored and an
    unfinished one continues from ``last.pt`` only when their identity equals this one;
    otherwise training starts over, with one log line naming what changed. Resuming
    first rewrites ``best.pt`` and ``history.csv`` from ``last.pt``, so they may be
    missing. With ``resume=False`` training always starts over. A run that starts over
    in a folder holding another run's files trains in its staging folder and replaces
    those files only once it has finished (:mod:`sdkd.train.runfolder`); two processes
    never train in one folder at once.

    ``attachments`` are text files (name → content) committed with every epoch, e.g.
    the resolved config as ``config.yaml``.

    ``monitor`` names the validation term that picks ``best.pt`` and drives early
    stopping (default: the total loss). A distilled student is selected on ``gt``, its
    forecast error, not on a total that also holds the distillation terms.
    """
    folder = RunFolder(out_dir, meta=meta or {}, identity=_identity(identity, cfg, meta),
                       config=dataclasses.asdict(cfg), attachments=attachments)
    with folder.session():
        if resume and (summary := folder.finished(_read_summary)) is not None:
            return _result(summary, folder.out_dir)
        device = torch.device(device)
        train_loader, val_loader = _loaders(train_set, val_set, cfg, device)
        trainer = Trainer(model, loss_fn, cfg, device, steps_per_epoch=len(train_loader))
        progress = _restore(folder, trainer, cfg) if resume else None
        if progress is None:
            folder.start_fresh()
            progress = _Progress()
            seed_everything(cfg.seed)

        while progress.epoch < cfg.epochs and not progress.stopped_early(cfg):
            progress.epoch += 1
            t0 = time.perf_counter()
            train_means, seen = _train_epoch(trainer, train_loader, progress.epoch, folder.work)
            train_seconds = time.perf_counter() - t0
            val_means = _validate(trainer, val_loader, progress.epoch, folder.work)
            improved = progress.record(
                trainer.term_names, train_means, val_means, monitor, lr=trainer.epoch_lr,
                seconds=time.perf_counter() - t0, samples_per_s=seen / train_seconds,
                **peak_memory(device), device=trainer.device_name,
            )
            _commit(folder, progress, trainer, improved, cfg)

        summary = _summary(folder, progress, cfg, trainer.device_name)
        folder.finish(summary)
        log.info("finished %s: best val %.4g at epoch %d", folder.out_dir, progress.best_val,
                 progress.best_epoch)
        return _result(summary, folder.out_dir)


class Trainer:
    """The model, its optimizer and schedule, and the one training step.

    AdamW decays weights with ≥ 2 dims only (not biases or norms); the learning rate
    follows :func:`warmup_cosine` per step. ``benchmarks/`` time :meth:`step` itself, so
    their throughput is the engine's.
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, cfg: TrainConfig, device: torch.device, *,
        steps_per_epoch: int,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise SdkdError("model: has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in self.params if p.ndim >= 2],
                 "weight_decay": cfg.weight_decay},
                {"params": [p for p in self.params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            fused=self.device.type == "cuda",
        )
        # What this device wants of the optimizer's implementation; a checkpoint's
        # param groups carry the flags of the device it was saved on (load_state).
        self._device_flags = [{k: g[k] for k in _DEVICE_FLAGS if k in g}
                              for g in self.optimizer.param_groups]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(steps_per_epoch, cfg))
        self.loss_fn = torch.compile(loss_fn) if cfg.compile else loss_fn
        self.autocast = _autocast(self.device, cfg.amp)
        self.grad_clip = cfg.grad_clip
        self.steps_per_epoch = steps_per_epoch
        self.log_every = cfg.log_every
        self.seed = cfg.seed
        self.device_name = _device_name(self.device)
        self.term_names: list[str] | None = None  # fixed by the first step
        self.epoch_lr = cfg.lr  # the LR of the last step taken

    def step(self, x: Tensor, y: Any) -> Tensor:
        """One optimisation step on a batch already on the device.

        Returns ``[total, *terms, gradient norm]`` as a float32 vector on the device;
        nothing here waits for the device (the caller checks finiteness in blocks).
        """
        with self.autocast:
            loss, terms = self.loss_fn(self.model, x, y)
        self._check_terms(terms, loss)
        loss.backward()
        norm = (nn.utils.clip_grad_norm_(self.params, self.grad_clip)
                if self.grad_clip is not None else loss.new_zeros(()))
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return _row(loss, terms, norm)

    @torch.no_grad()
    def losses(self, x: Tensor, y: Any) -> Tensor:
        """``[total, *terms, 0]`` of a batch under the training precision, no update."""
        with self.autocast:
            loss, terms = self.loss_fn(self.model, x, y)
        return _row(loss, terms, loss.new_zeros(()))

    def _check_terms(self, terms: Mapping[str, Tensor], loss: Tensor) -> None:
        """Term names must be the same every step (a host-side list comparison)."""
        current = list(terms)
        if self.term_names is None:
            if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.requires_grad:
                raise SdkdError(
                    "loss_fn: must return a scalar tensor that requires grad as its first "
                    f"value (got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))})"
                )
            if "loss" in current:
                raise SdkdError("loss_fn: a term may not be named 'loss' (it is the total)")
            self.term_names = current
        elif current != self.term_names:
            epoch, step = divmod(self.scheduler.last_epoch, self.steps_per_epoch)
            raise SdkdError(f"loss_fn: returned terms {current} at epoch {epoch + 1} step "
                            f"{step + 1}, earlier {self.term_names}; the terms must be the same "
                            "every step")

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": get_rng_state(self.device)}

    def load_state(self, ckpt: Mapping[str, Any], where: Path) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise SdkdError(f"checkpoint {where}: does not fit this model/optimizer ({exc})"
                            ) from None
        self._restore_device_flags()
        set_rng_state(ckpt["rng"], self.device)

    def _restore_device_flags(self) -> None:
        """Give the loaded optimizer this device's implementation flags back.

        ``load_state_dict`` restores ``fused``/``foreach``/``capturable`` from the
        checkpoint, so a ``last.pt`` written on a GPU would resume on the CPU with fused
        AdamW (an error on older torch) and one written on the CPU would resume on a GPU
        unfused. The step counters follow: fused and capturable AdamW keep them on the
        parameter's device, the others on the host.
        """
        for group, flags in zip(self.optimizer.param_groups, self._device_flags, strict=True):
            group.update(flags)
            on_device = bool(group.get("fused") or group.get("capturable"))
            for param in group["params"]:
                state = self.optimizer.state.get(param, {})
                step = state.get("step")
                if isinstance(step, Tensor):
                    where = param.device if on_device else torch.device("cpu")
                    state["step"] = step.to(device=where, dtype=torch.float32)


@dataclass
class _Progress:
    """Where a run stands after its last committed epoch: what ``last.pt`` restores."""

    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # the payload of best.pt, carried by every last.pt

    def stopped_early(self, cfg: TrainConfig) -> bool:
        return cfg.patience is not None and self.bad_epochs >= cfg.patience

    def record(
        self, names: list[str], train: list[float], val: list[float], monitor: str | None,
        **numbers: Any,
    ) -> bool:
        """Append this epoch's history row; True when ``monitor`` (default: the total
        validation loss) improved on the best so far."""
        if monitor is not None and monitor not in names:
            raise SdkdError(f"monitor: {monitor!r} is not a loss term ({', '.join(names)})")
        score = val[0] if monitor is None else val[1 + names.index(monitor)]
        improved = score < self.best_val
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        row: dict[str, Any] = {"epoch": self.epoch, "train_loss": train[0], "val_loss": val[0]}
        row |= {f"train_{n}": v for n, v in zip(names, train[1:], strict=True)}
        row |= {f"val_{n}": v for n, v in zip(names, val[1:], strict=True)}
        self.history.append(row | numbers)
        log.info("epoch %d  train %.4g  val %.4g%s  lr %.3g  %.1fs  %.0f samples/s",
                 self.epoch, row["train_loss"], row["val_loss"], " *" if improved else "",
                 numbers["lr"], numbers["seconds"], numbers["samples_per_s"])
        return improved


def _identity(identity: Mapping[str, Any] | None, cfg: TrainConfig,
              meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pipeline's identity, or (for direct callers) the train config less its
    speed-only keys, and ``meta``."""
    if identity is not None:
        return dict(identity)
    train = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in SPEED_ONLY_TRAINING_KEYS}
    return {"train": train, "meta": plain(dict(meta or {}), where="meta")}


def _restore(folder: RunFolder, trainer: Trainer, cfg: TrainConfig) -> _Progress | None:
    """The progress of an interrupted run of this identity, its state loaded into
    ``trainer``; None when there is none."""
    ckpt = folder.resumable()
    if ckpt is None:
        return None
    trainer.load_state(ckpt, folder.work / LAST)
    try:
        progress = _Progress(ckpt["epoch"], ckpt["best_val"], ckpt["best_epoch"],
                             ckpt["bad_epochs"], list(ckpt["history"]), ckpt["best"])
    except KeyError as exc:
        raise SdkdError(f"checkpoint {folder.work / LAST}: has no {exc}; delete it to train "
                        "again") from None
    log.info("resuming %s after epoch %d of %d", folder.work, progress.epoch, cfg.epochs)
    folder.rebuild(progress.best, lambda path: write_history(path, progress.history))
    return progress


def _commit(folder: RunFolder, progress: _Progress, trainer: Trainer, improved: bool,
            cfg: TrainConfig) -> None:
    """Write this epoch: best.pt when it improved, the history, last.pt."""
    if improved:
        # A CPU copy: the weights change next epoch, and every last.pt carries it.
        progress.best = {
            "kind": "best", "model": _cpu_copy(trainer.model.state_dict()), **folder.stamp(),
            "epoch": progress.epoch, "val_loss": progress.history[-1]["val_loss"],
            "history_row": progress.history[-1],
        }
    folder.commit(
        best=progress.best if improved else None,
        history_writer=lambda path: write_history(path, progress.history),
        last={"kind": "last", **trainer.state(), **folder.stamp(), "epoch": progress.epoch,
              "best_val": progress.best_val, "best_epoch": progress.best_epoch,
              "bad_epochs": progress.bad_epochs, "history": progress.history,
              "best": progress.best},
    )
    if progress.stopped_early(cfg):
        log.info("early stop after epoch %d: no improvement for %d epochs (best: epoch %d)",
                 progress.epoch, progress.bad_epochs, progress.best_epoch)


def _summary(folder: RunFolder, progress: _Progress, cfg: TrainConfig, device_name: str
             ) -> dict[str, Any]:
    """What ``done.json`` says about a finished run."""
    return {
        "format_version": 1,
        "epochs_run": progress.epoch,
        "best_epoch": progress.best_epoch,
        "best_val": progress.best_val,
        "total_seconds": sum(r["seconds"] for r in progress.history),
        "stopped_early": progress.stopped_early(cfg),
        "device": device_name,
        **folder.stamp(),
        "history": progress.history,
    }


# ---- pieces of the loop ---------------------------------------------------------------------


def _loaders(
    train_set: Dataset, val_set: Dataset, cfg: TrainConfig, device: torch.device
) -> tuple[DataLoader, DataLoader]:
    """Shuffled train batches (re-seeded every epoch, see :func:`_train_epoch`) and
    validation batches in file order."""
    for name, dataset in (("train_set", train_set), ("val_set", val_set)):
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise SdkdError(f"{name}: is empty, expected at least one (x, y) sample")
    args = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                pin_memory=device.type == "cuda", persistent_workers=False)
    train = DataLoader(train_set, shuffle=True, generator=torch.Generator(), **args)
    val = DataLoader(val_set, shuffle=False, generator=torch.Generator().manual_seed(0), **args)
    return train, val


def _train_epoch(
    trainer: Trainer, loader: DataLoader, epoch: int, work: Path
) -> tuple[list[float], int]:
    """One pass over ``loader``: (per-sample means of [total, *terms], samples seen).

    The shuffle order is a function of (seed, epoch) alone, so a resumed run sees the
    same batches. Step losses reach the host every ``log_every`` steps, in one copy.
    """
    if trainer.device.type == "cuda":  # the history's peak memory is this epoch's
        torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer.model.train()
    loader.generator.manual_seed(epoch_seed(trainer.seed, epoch))
    sums: Tensor | None = None
    pending: list[Tensor] = []  # per-step [total, *terms, grad norm], checked in blocks
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=None)
    for step, (x, y) in enumerate(bar, start=1):
        x, y = _to_device(x, trainer.device), _to_device(y, trainer.device)
        pending.append(trainer.step(x, y) * x.shape[0])
        seen += x.shape[0]
        if step % trainer.log_every == 0 or step == len(loader):
            block = torch.stack(pending).cpu()  # the one host sync per block of steps
            _raise_if_nonfinite(block, trainer.term_names, epoch, step - len(pending) + 1,
                                work / LAST)
            sums = block.sum(0) if sums is None else sums + block.sum(0)
            pending.clear()
            bar.set_postfix(loss=f"{sums[0].item() / seen:.4g}", lr=f"{trainer.epoch_lr:.3g}")
    assert sums is not None
    return (sums[:-1] / seen).tolist(), seen


def _validate(trainer: Trainer, loader: DataLoader, epoch: int, work: Path) -> list[float]:
    """Per-sample means of [total, *terms] over ``loader`` with the model in eval mode."""
    trainer.model.eval()
    sums, seen = None, 0
    for x, y in loader:
        x, y = _to_device(x, trainer.device), _to_device(y, trainer.device)
        row = trainer.losses(x, y) * x.shape[0]
        sums = row if sums is None else sums + row
        seen += x.shape[0]
    assert sums is not None and trainer.term_names is not None
    means = (sums[:-1] / seen).tolist()
    if not all(math.isfinite(v) for v in means):
        bad = [n for n, v in zip(["total", *trainer.term_names], means, strict=True)
               if not math.isfinite(v)]
        raise SdkdError(
            f"validation loss is non-finite at epoch {epoch} ({', '.join(bad)}); "
            f"nothing was written for this epoch; {_last_good(work / LAST, epoch)}"
        )
    return means


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


def peak_memory(device: torch.device) -> dict[str, float]:
    """This epoch's peak memory in MiB, named for what it measures (two different things).

    CUDA: ``peak_cuda_allocated_mb``, the peak of tensor memory allocated on the device
    this epoch (``torch.cuda.max_memory_allocated``; the caching allocator reserves
    more). CPU: ``peak_rss_mb``, the process's peak resident set size so far (all host
    memory: Python, torch, the data), which never decreases.
    """
    if device.type == "cuda":
        return {"peak_cuda_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": rss / 2**20 if sys.platform == "darwin" else rss / 2**10}


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Write ``history`` as CSV atomically; columns in order of first appearance."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
        _result(summary, path.parent)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SdkdError(f"{path}: unreadable training summary ({exc}); "
                        "delete it to train again") from None
    return summary


def _result(summary: Mapping[str, Any], out_dir: Path) -> TrainResult:
    return TrainResult(
        best_val=float(summary["best_val"]),
        best_epoch=int(summary["best_epoch"]),
        epochs_run=int(summary["epochs_run"]),
        stopped_early=bool(summary["stopped_early"]),
        history=list(summary["history"]),
        out_dir=out_dir,
    )


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
