"""The two training jobs of the pipeline: a teacher per dataset, a student per band setting.

Both run the one engine (:func:`sdkd.train.engine.fit`) on the canonical dataset and
write the same folder layout::

    out_dir/best.pt        best weights by validation loss, with ``meta``
    out_dir/last.pt        everything needed to resume (written every epoch)
    out_dir/history.csv    one row per epoch: loss terms, lr, seconds, peak memory
    out_dir/config.yaml    the resolved config of the run
    out_dir/done.json      written last: the run finished

``meta`` records what the weights belong to (dataset, channels, T_in, T_out, grid and
the model spec), so a teacher from another dataset or shape is refused by
:func:`sdkd.train.checkpoint.load_checkpoint` before any distillation starts.

Every checkpoint and ``done.json`` also carry the run's identity
(:func:`sdkd.plan.run_identity`): its spec from the config, the fingerprint of the
canonical dataset and, for a distilled student, the sha256 of the teacher's weights.
The engine resumes or reuses a folder only for an equal identity, so a rerun after a
change trains again and a rerun after a kill continues.

A dataset on a grid padded to the models' size has a validity mask
(``ForecastWindows.mask``, True on the data's pixels). Both jobs take it from the train
split, move it to the training device once and build their loss with it, so neither the
training nor the validation loss counts a padded pixel (:func:`mse_loss`,
:class:`sdkd.distill.losses.DistillLoss`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import torch
import yaml
from torch import Tensor, nn

from sdkd.data.dataset import ForecastWindows, fingerprint
from sdkd.distill.cache import teacher_statistics, with_teacher_forecasts
from sdkd.distill.losses import masked_mse
from sdkd.distill.settings import band_setting
from sdkd.errors import SdkdError
from sdkd.models import build_from_spec, build_model, model_spec
from sdkd.models.base import Forecast, ForecastModel
from sdkd.plan import (
    identity_changes,
    run_identity,
    run_spec,
    training_block,
    tuning_spec,
    tuning_training,
)
from sdkd.train.checkpoint import load_checkpoint, weights_sha256
from sdkd.train.engine import LossFn, TrainConfig, TrainResult, fit
from sdkd.train.lease import gpu_lease
from sdkd.tuning import read_choice

log = logging.getLogger(__name__)

# Keys of the config's training block that are not the engine's.
_DATA_KEYS = ("in_memory",)


def load_splits(
    config: Mapping[str, Any], role: str, dataset: str, path: str | Path
) -> tuple[ForecastWindows, ...]:
    """Train and validation windows of the canonical file of ``dataset``, read as the
    ``role``'s training block says, within ``limits.max_array_gib``.

    The file knows which dataset it holds: a teacher or student labelled with one
    dataset's name is never trained on another's file.
    """
    in_memory = training_block(config, dataset, role)["in_memory"]
    max_gib = config["limits"]["max_array_gib"]
    splits = tuple(ForecastWindows(path, split, in_memory=in_memory, max_gib=max_gib)
                   for split in ("train", "val"))
    with h5py.File(path, "r") as f:
        holds = f.attrs.get("dataset")
    holds = holds.decode() if isinstance(holds, bytes) else holds
    if holds != dataset:
        raise SdkdError(f"{path}: holds dataset {holds!r}, not {dataset!r}; give the canonical "
                        f"file of {dataset!r} (results/data/{dataset}.h5)")
    return splits


def data_meta(name: str, data: ForecastWindows) -> dict[str, Any]:
    """What a checkpoint must match to be used on this dataset."""
    channels, height, width = data.frame_shape
    return {
        "dataset": name,
        "channels": channels,
        "in_steps": data.in_steps,
        "out_steps": data.out_steps,
        "grid": [height, width],
    }


def train_config(training: Mapping[str, Any], seed: int) -> TrainConfig:
    engine_keys = {k: v for k, v in training.items() if k not in _DATA_KEYS}
    return TrainConfig(seed=seed, **engine_keys)


def _config_file(config: Mapping[str, Any]) -> dict[str, str]:
    """The resolved config, committed with the run as ``config.yaml``."""
    return {"config.yaml": yaml.safe_dump(dict(config), sort_keys=False)}


def _build(name: str, overrides: Mapping[str, Any], meta: Mapping[str, Any]) -> ForecastModel:
    height, width = meta["grid"]
    return build_model(
        name,
        in_steps=meta["in_steps"],
        out_steps=meta["out_steps"],
        channels=meta["channels"],
        height=height,
        width=width,
        **overrides,
    )


def mse_loss(
    model: nn.Module, x: Tensor, y: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """A teacher's loss: the MSE of its forecast (B, T_out, C, H, W) against ``y``, the
    one term ``mse``; with ``mask`` (bool (H, W), on the device) over its valid pixels
    only (:func:`sdkd.distill.losses.masked_mse`)."""
    loss = masked_mse(model(x).prediction, y, mask)
    return loss, {"mse": loss.detach()}


def student_loss(teacher: ForecastModel | None, mask: Tensor | None = None) -> LossFn:
    """The loss of a distillation run, which trains ``nn.ModuleDict({"student", "kd"})``.

    A target is ``y`` (B, T_out, C, H, W) or, from the teacher cache
    (:mod:`sdkd.distill.cache`), ``(y, teacher prediction, teacher features)`` with the
    features of ``kd.teacher_features`` in that order; with a plain ``y`` the frozen
    ``teacher``, if any, runs forward under ``no_grad``. ``mask`` (bool (H, W), on the
    device) restricts the output-space terms to valid pixels.
    """

    def loss_fn(modules: nn.Module, x: Tensor, y: Any) -> tuple[Tensor, dict[str, Tensor]]:
        kd = modules["kd"]
        reference = None
        if isinstance(y, tuple):
            y, prediction, features = y
            reference = Forecast(prediction, dict(zip(kd.teacher_features, features, strict=True)))
        elif teacher is not None:
            with torch.no_grad():
                reference = teacher(x)
        return kd(modules["student"](x), reference, y, mask=mask)

    return loss_fn


def loss_mask(data: ForecastWindows, device: torch.device) -> Tensor | None:
    """The validity mask (H, W) of ``data``'s grid on ``device``, where the loss reads it
    every step; None when every pixel is data."""
    if data.mask is None:
        return None
    log.info("padded grid: losses count %d of %d pixels", int(data.mask.sum()),
             data.mask.numel())
    return data.mask.to(device)


def _device_lease(choice: str):
    """A GPU lease on machines with GPUs (unless ``choice`` is ``cpu``), else the CPU."""
    return gpu_lease(gpus=[]) if choice == "cpu" else gpu_lease()


def train_teacher(
    config: Mapping[str, Any], dataset: str, data_path: str | Path, out_dir: str | Path,
    *, device: str = "auto",
) -> TrainResult:
    """Train ``config['models']['teacher']`` on ``dataset``; files as in the module docstring."""
    out_dir = Path(out_dir)
    training = training_block(config, dataset, "teacher")
    with _device_lease(device) as lease:  # first: a job waiting for a GPU holds no data
        train_set, val_set = load_splits(config, "teacher", dataset, data_path)
        meta = data_meta(dataset, train_set)
        identity = run_identity(run_spec(config, dataset, "teacher"),
                                data=fingerprint(data_path))
        torch.manual_seed(config["seed"])
        model = _build(config["models"]["teacher"], config["models"]["teacher_overrides"],
                       meta)
        meta |= {"role": "teacher", "model": model_spec(model)}
        log.info("teacher %s on %s: %d parameters", model.name, lease.device,
                 model.num_parameters())
        loss_fn = partial(mse_loss, mask=loss_mask(train_set, lease.device))
        return fit(model, loss_fn, train_set, val_set, train_config(training, config["seed"]),
                   out_dir, device=lease.device, meta=meta, identity=identity,
                   attachments=_config_file(config))


def load_teacher(
    path: str | Path, expect: Mapping[str, Any], identity: Mapping[str, Any] | None = None,
    *, max_gib: float | None = None,
) -> ForecastModel:
    """The frozen teacher of a ``best.pt``, checked against the dataset's ``expect`` and,
    when given, the teacher ``identity`` (spec and data) the student was planned with;
    ``max_gib`` bounds the size of the model its spec describes."""
    what = "teacher checkpoint"
    ckpt = load_checkpoint(path, expect={**expect, "role": "teacher"}, what=what)
    if identity is not None and (changes := identity_changes(ckpt.get("identity"), identity)):
        raise SdkdError(
            f"{what} {path} is not the teacher this config distils from ({changes[0]}); "
            "train the teacher of this config first"
        )
    teacher = build_from_spec(ckpt["meta"]["model"], max_gib=max_gib)
    teacher.load_state_dict(ckpt["model"])
    teacher.eval().requires_grad_(False)
    return teacher


def distill_student(
    config: Mapping[str, Any],
    dataset: str,
    data_path: str | Path,
    teacher_path: str | Path | None,
    student: str,
    bands: str,
    seed: int,
    out_dir: str | Path,
    *,
    device: str = "auto",
    tune_point: int | None = None,
    tuned: str | Path | None = None,
) -> TrainResult:
    """Train ``student`` with band setting ``bands`` from the frozen teacher at ``teacher_path``.

    The ``none`` setting learns from the ground truth alone and needs no teacher
    (``teacher_path`` may be None); every other setting does. What is optimized is
    ``{"student", "kd"}``: the student and the loss module (its 1 × 1 latent projections
    and teacher-feature statistics, when the setting has them); the teacher only runs
    forward, under ``no_grad``, in eval mode. ``best.pt`` is chosen on the validation
    ground-truth MSE (``gt``).

    A setting with a ``tune:`` grid (:mod:`sdkd.tuning`) trains either one point
    of its grid, ``tune_point`` (a tuning run: the tuning student, seed and epochs), or,
    with ``tuned`` (the tuning file), the values the search chose, which then join the
    run's identity.
    """
    out_dir = Path(out_dir)
    setting = band_setting(config["distill"], bands)
    if tune_point is not None:
        spec = tuning_spec(config, dataset, bands, tune_point)
        if (student, seed) != (spec["model"], spec["seed"]):
            raise SdkdError(f"tuning point {tune_point} of {bands!r} trains {spec['model']} "
                            f"with seed {spec['seed']}, not {student} with seed {seed}")
        setting = setting.with_values(setting.points()[tune_point])
        training = tuning_training(config, dataset)
    else:
        spec = run_spec(config, dataset, "student", student, bands, seed)
        training = training_block(config, dataset, "student")
        if setting.tune:
            if tuned is None:
                raise SdkdError(f"band setting {bands!r} is tuned: give its tuning file "
                                "(--tuned results/tuning/<dataset>/<bands>.json)")
            chosen = read_choice(tuned, config, dataset, bands)
            setting = setting.with_values(chosen)
            spec["bands"] |= chosen
    if setting.setting != "none" and teacher_path is None:
        raise SdkdError(f"band setting {bands!r} distils from a teacher: give --teacher")
    with _device_lease(device) as lease:  # first: a job waiting for a GPU holds no data
        train_set, val_set = load_splits(config, "student", dataset, data_path)
        meta = data_meta(dataset, train_set)
        data = fingerprint(data_path)
        teacher = None
        if setting.setting != "none":
            teacher = load_teacher(teacher_path, meta, run_identity(spec["teacher"], data=data),
                                   max_gib=config["limits"]["max_array_gib"])
        identity = run_identity(spec, data=data,
                                teacher=weights_sha256(teacher.state_dict()) if teacher else None)
        torch.manual_seed(seed)
        model = _build(student, config["models"]["student_overrides"], meta)
        kd = setting.loss(student_channels=model.latent_channels,
                          teacher_channels=teacher.latent_channels if teacher else 1)
        trainable = nn.ModuleDict({"student": model, "kd": kd})
        meta |= {"role": "student", "model": model_spec(model), "bands": bands,
                 "setting": setting.setting, "seed": seed}

        mask = loss_mask(train_set, lease.device)
        if teacher is not None:
            teacher.to(lease.device)
            # The teacher's forecasts of both splits, once, if they fit in the budget.
            budget, cached = config["distill"]["teacher_cache_mb"], []
            for split in (train_set, val_set):
                done = with_teacher_forecasts(split, teacher, kd.teacher_features,
                                              device=lease.device,
                                              batch_size=training["batch_size"], limit_mb=budget)
                if done is None:
                    break
                cached.append(done)
                budget -= done.megabytes
            else:
                train_set, val_set = cached
            if kd.standardizers:
                kd.set_teacher_statistics(teacher_statistics(
                    train_set, teacher, kd.teacher_features, device=lease.device,
                    batch_size=training["batch_size"]))
        log.info("student %s (%s, seed %d) on %s: %d parameters", student, bands, seed,
                 lease.device, model.num_parameters())
        return fit(trainable, student_loss(teacher, mask), train_set, val_set,
                   train_config(training, seed), out_dir,
                   device=lease.device, meta=meta, identity=identity,
                   attachments=_config_file(config), monitor="gt")
