"""The frozen teacher's forecasts, computed once per split instead of once per step.

A distilled student sees every training window once per epoch, and the teacher's
forecast of a window never changes: the teacher is frozen, in eval mode, and the
windows are not augmented. Running the teacher forward at every step would repeat the
same computation ``epochs`` times, and on a CPU the teacher's forward pass costs more
than the student's whole training step (teacher-small on 64 × 64: ~50 ms per window,
unet-s: ~25 ms per training step per window). :func:`with_teacher_forecasts` runs it
once and keeps the prediction and the one feature the loss reads.

The forecasts are kept on the whole grid, padded pixels included: which pixels count
is the loss's business (its validity mask, :class:`sdkd.distill.losses.DistillLoss`),
and the wrapper passes the wrapped dataset's ``mask`` on.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sdkd.models.base import ForecastModel

log = logging.getLogger(__name__)


class TeacherForecasts(Dataset):
    """``dataset``'s windows with the teacher's forecast of each (``megabytes`` in RAM).

    Item ``i`` is ``(x, (y, prediction, feature))``: the wrapped dataset's input (T_in, C,
    H, W) and target (T_out, C, H, W), the teacher's prediction (T_out, C, H, W) and its
    ``features[feature]`` (D_t, h, w), all float32 on the CPU.
    """

    def __init__(self, dataset: Dataset, predictions: Tensor, features: Tensor):
        if not len(dataset) == len(predictions) == len(features):  # type: ignore[arg-type]
            raise ValueError("one teacher forecast per window expected")
        self.dataset, self.predictions, self.features = dataset, predictions, features
        self.megabytes = (predictions.numel() + features.numel()) * 4 / 2**20

    def __len__(self) -> int:
        return len(self.predictions)

    @property
    def mask(self) -> Tensor | None:
        """The wrapped dataset's validity mask (H, W), bool, or None (every pixel valid)."""
        return getattr(self.dataset, "mask", None)

    def __getitem__(self, i: int) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        x, y = self.dataset[i]
        return x, (y, self.predictions[i], self.features[i])


@torch.no_grad()
def with_teacher_forecasts(
    dataset: Dataset,
    teacher: ForecastModel,
    feature: str,
    *,
    device: torch.device,
    batch_size: int,
    limit_mb: float,
) -> TeacherForecasts | None:
    """``dataset`` with the teacher's forecasts, or ``None`` if they exceed ``limit_mb``.

    The teacher runs in eval mode on ``device`` (bf16 autocast on CUDA, as in
    training); the results are kept in float32 on the CPU. The size is known from the
    first window before anything else is computed, so a split too large for the limit
    costs one forward pass; the caller then runs the teacher at every step instead.
    """
    teacher.eval()
    n = len(dataset)  # type: ignore[arg-type]
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast(device_type="cpu", enabled=False)
    )

    def forecast(x: Tensor) -> tuple[Tensor, Tensor]:
        with autocast:
            out = teacher(x.to(device))
        return out.prediction.float().cpu(), out.features[feature].float().cpu()

    prediction, feat = forecast(dataset[0][0].unsqueeze(0))
    mb = n * (prediction.numel() + feat.numel()) * 4 / 2**20
    if mb > limit_mb:
        log.info("teacher forecasts of %d windows need %.0f MB > limit %.0f MB: the teacher "
                 "runs at every step instead", n, mb, limit_mb)
        return None
    predictions = torch.empty((n, *prediction.shape[1:]))
    features = torch.empty((n, *feat.shape[1:]))
    start = 0
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        p, f = forecast(x)
        predictions[start:start + len(x)], features[start:start + len(x)] = p, f
        start += len(x)
    log.info("teacher forecasts of %d windows computed once (%.0f MB)", n, mb)
    return TeacherForecasts(dataset, predictions, features)
