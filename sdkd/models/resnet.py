"""ResNet student: a stride-4 stem, residual blocks at H/4, an upsampling head.

Shapes (D = latent width):

    x        (B, T_in, C, H, W) → frames stacked as channels (B, T_in·C, H, W)
    stem     3×3 stride-2 conv → GN → SiLU (D/2, H/2×W/2), 3×3 stride-2 conv → GN → SiLU
                                                               (B, D, H/4, W/4)
    body     depth × ResBlock(D)                → features["latent"] (B, D, H/4, W/4)
    head     ×2 sub-pixel conv → D/2 (H/2), ×2 sub-pixel conv → D/4 (H), 3×3 conv
             → (B, T_out·C, H, W) → prediction (B, T_out, C, H, W)

ResBlock is conv3×3 → GN → SiLU → conv3×3 → GN, plus the input, then SiLU. There
is no full-resolution skip: everything the forecast knows passes through the H/4 latent.

Sizes: ``s`` D = 64, depth 4; ``m`` D = 96, depth 6; ``l`` D = 128, depth 8
(12.5 %, 19 %, 25 % of the paper teacher's latent width 512).

Overridable keys: ``latent_channels`` (D), ``depth`` (residual blocks) and
``width_mult`` (float; multiplies D and so every width, rounded to a multiple of 4),
plus the optional grid ``height``/``width`` (only checked; any grid divisible by 4 works).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sdkd.models.base import Forecast
from sdkd.models.layers import (
    ConvNormAct,
    ResBlock,
    UpNormAct,
    stack_frames,
    unstack_frames,
)
from sdkd.models.registry import register
from sdkd.models.student import Student


@register("resnet")
class ResNet(Student):
    """ResNet student (module doc)."""

    def __init__(self, *, in_steps: int, out_steps: int, channels: int, **sizes: Any) -> None:
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels, **sizes)
        d, depth = self.latent_channels, self.depth
        half, quarter = max(4, d // 2), max(4, d // 4)
        self.stem = nn.Sequential(
            ConvNormAct(in_steps * channels, half, stride=2), ConvNormAct(half, d, stride=2)
        )
        self.body = nn.Sequential(*(ResBlock(d) for _ in range(depth)))
        self.head = nn.Sequential(
            UpNormAct(d, half),
            UpNormAct(half, quarter),
            nn.Conv2d(quarter, out_steps * channels, 3, padding=1),
        )

    def forecast(self, x: Tensor) -> Forecast:
        latent = self.body(self.stem(stack_frames(x)))
        prediction = unstack_frames(self.head(latent), self.out_steps, self.channels)
        return Forecast(prediction, {"latent": latent})
