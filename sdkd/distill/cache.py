"""The frozen teacher's forecasts, computed once per split instead of once per step.

A distilled student sees every training window once per epoch, and the teacher's
forecast of a window never changes: the teacher is frozen, in eval mode, and the
windows are not augmented. Running the teacher forward at every step would repeat the
same computation ``epochs`` times, and on a CPU the teacher's forward pass costs more
than the student's whole training step (teacher-small on 64 × 64: ~50 ms per window,
unet-s: ~25 ms per training step per window). :func:`with_teacher_forecasts` runs it
once and keeps the prediction and the features the loss reads.

:func:`teacher_statistics` gives the per-channel mean and standard deviation of those
features over the training windows, which the loss standardises them with: from the
cached features when there are any, else from one pass of the teacher.

The forecasts are kept on the whole grid, padded pixels included: which pixels count
is the loss's business (its validity mask, :class:`sdkd.distill.losses.DistillLoss`),
and the wrapper passes the wrapped dataset's ``mask`` on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sdkd.models.base import ForecastModel

log = logging.getLogger(__name__)


class TeacherForecasts(Dataset):
    """``dataset``'s windows with the teacher's forecast of each (``megabytes`` in RAM).

    Item ``i`` is ``(x, (y, prediction, features))``: the wrapped dataset's input (T_in,
    C, H, W) and target (T_out, C, H, W), the teacher's prediction (T_out, C, H, W) and
    a tuple of its features (D_t, h, w each), in the order of ``names``, all float32
    on the CPU.
    """

    def __init__(self, dataset: Dataset, predictions: Tensor, features: Mapping[str, Tensor]):
        n = len(dataset)  # type: ignore[arg-type]
        if any(len(v) != n for v in (predictions, *features.values())):
            raise ValueError("one teacher forecast per window expected")
        self.dataset, self.predictions, self.features = dataset, predictions, dict(features)
        self.names = tuple(self.features)
        values = [predictions, *self.features.values()]
        self.megabytes = sum(v.numel() for v in values) * 4 / 2**20

    def __len__(self) -> int:
        return len(self.predictions)

    @property
    def mask(self) -> Tensor | None:
        """The wrapped dataset's validity mask (H, W), bool, or None (every pixel valid)."""
        return getattr(self.dataset, "mask", None)

    def __getitem__(self, i: int) -> tuple[Tensor, tuple[Tensor, Tensor, tuple[Tensor, ...]]]:
        x, y = self.dataset[i]
        return x, (y, self.predictions[i], tuple(f[i] for f in self.features.values()))


def _autocast(device: torch.device):
    """bf16 autocast on CUDA, as in training; none on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


@torch.no_grad()
def with_teacher_forecasts(
    dataset: Dataset,
    teacher: ForecastModel,
    names: Sequence[str],
    *,
    device: torch.device,
    batch_size: int,
    limit_mb: float,
) -> TeacherForecasts | None:
    """``dataset`` with the teacher's forecasts and its features ``names``, or ``None``
    if they exceed ``limit_mb``.

    The teacher runs in eval mode on ``device`` (bf16 autocast on CUDA, as in
    training); the results are kept in float32 on the CPU. The size is known from the
    first window before anything else is computed, so a split too large for the limit
    costs one forward pass; the caller then runs the teacher at every step instead.
    """
    teacher.eval()
    n = len(dataset)  # type: ignore[arg-type]
    autocast = _autocast(device)

    def forecast(x: Tensor) -> tuple[Tensor, list[Tensor]]:
        with autocast:
            out = teacher(x.to(device))
        return out.prediction.float().cpu(), [out.features[k].float().cpu() for k in names]

    prediction, feats = forecast(dataset[0][0].unsqueeze(0))
    mb = n * sum(v.numel() for v in (prediction, *feats)) * 4 / 2**20
    if mb > limit_mb:
        log.info("teacher forecasts of %d windows need %.0f MB > limit %.0f MB: the teacher "
                 "runs at every step instead", n, mb, limit_mb)
        return None
    predictions = torch.empty((n, *prediction.shape[1:]))
    features = {k: torch.empty((n, *f.shape[1:])) for k, f in zip(names, feats, strict=True)}
    start = 0
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        p, fs = forecast(x)
        stop = start + len(x)
        predictions[start:stop] = p
        for k, f in zip(names, fs, strict=True):
            features[k][start:stop] = f
        start = stop
    log.info("teacher forecasts of %d windows computed once (%.0f MB)", n, mb)
    return TeacherForecasts(dataset, predictions, features)


@torch.no_grad()
def teacher_statistics(
    dataset: Dataset,
    teacher: ForecastModel,
    names: Sequence[str],
    *,
    device: torch.device,
    batch_size: int,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per channel, the mean and the (population) standard deviation (D_t,) of each
    teacher feature ``names`` over every window of ``dataset`` and its latent grid.

    From the cached features of a :class:`TeacherForecasts` that holds them all, else
    from one pass of the teacher (eval mode, as :func:`with_teacher_forecasts`).
    Accumulated in float64, so a long split loses no precision.
    """
    moments: dict[str, Tensor] = {}  # per feature: (count, Σ f, Σ f²) per channel

    def add(name: str, f: Tensor) -> None:
        f = f.double().transpose(0, 1).flatten(1)  # (D_t, B·h·w)
        count = torch.full((len(f),), float(f.shape[1]), dtype=torch.float64)
        step = torch.stack([count, f.sum(1), f.square().sum(1)])
        moments[name] = moments[name] + step if name in moments else step

    if isinstance(dataset, TeacherForecasts) and set(names) <= set(dataset.names):
        for name in names:
            add(name, dataset.features[name])
    else:
        teacher.eval()
        autocast = _autocast(device)
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            with autocast:
                out = teacher(x.to(device))
            for name in names:
                add(name, out.features[name].float().cpu())
    statistics = {}
    for name in names:
        count, total, squares = moments[name]
        mean = total / count
        variance = (squares / count - mean.square()).clamp_min(0)
        statistics[name] = (mean.float(), variance.sqrt().float())
    return statistics
