"""U-Net student: two downsampling levels (factor 4), a bottleneck, skips.

Shapes (D = latent width; level widths c0 = D/4 at H×W, c1 = D/2 at H/2×W/2,
D at H/4×W/4; each at least 4):

    x            (B, T_in, C, H, W) → frames stacked as channels (B, T_in·C, H, W)
    level 0      3×3 conv → ResBlock(c0)                           s0 (B, c0, H, W)
    level 1      3×3 stride-2 conv → GN → SiLU → ResBlock(c1)      s1 (B, c1, H/2, W/2)
    bottleneck   3×3 stride-2 conv → GN → SiLU → depth × ResBlock(D)
                                                 → features["latent"] (B, D, H/4, W/4)
    up 1         ×2 sub-pixel conv to c1, concat s1 → ResBlock(2·c1 → c1)
    up 0         ×2 sub-pixel conv to c0, concat s0 → ResBlock(2·c0 → c0)
    head         1×1 conv → (B, T_out·C, H, W) → prediction (B, T_out, C, H, W)

ResBlock is conv3×3 → GN → SiLU → conv3×3 → GN, plus the input, then SiLU. The
full-resolution layers are only D/4 wide, which keeps the student cheap.

Sizes: ``s`` D = 64, depth 2; ``m`` D = 96, depth 2; ``l`` D = 128, depth 3
(12.5 %, 19 %, 25 % of the paper teacher's latent width 512).

Overridable keys: ``latent_channels`` (D), ``depth`` (bottleneck ResBlocks) and
``width_mult`` (float; multiplies D, and with it every width, rounded to a multiple
of 4: ``width_mult=0.25`` makes ``unet-m`` a D = 24 model for CPU configs), plus the
optional grid ``height``/``width`` (only checked; any grid divisible by 4 works).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
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


@register("unet")
class UNet(Student):
    """U-Net student (module doc)."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"latent_channels": 64, "depth": 2},
        "m": {"latent_channels": 96, "depth": 2},
        "l": {"latent_channels": 128, "depth": 3},
    }

    def __init__(self, *, in_steps: int, out_steps: int, channels: int, **sizes: Any) -> None:
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels, **sizes)
        d, depth = self.latent_channels, self.depth
        c0, c1 = max(4, d // 4), max(4, d // 2)
        self.level0 = nn.Sequential(nn.Conv2d(in_steps * channels, c0, 3, padding=1), ResBlock(c0))
        self.level1 = nn.Sequential(ConvNormAct(c0, c1, stride=2), ResBlock(c1))
        self.bottleneck = nn.Sequential(
            ConvNormAct(c1, d, stride=2), *(ResBlock(d) for _ in range(depth))
        )
        self.up1 = UpNormAct(d, c1)
        self.merge1 = ResBlock(2 * c1, c1)
        self.up0 = UpNormAct(c1, c0)
        self.merge0 = ResBlock(2 * c0, c0)
        self.head = nn.Conv2d(c0, out_steps * channels, 1)

    def forecast(self, x: Tensor) -> Forecast:
        s0 = self.level0(stack_frames(x))
        s1 = self.level1(s0)
        latent = self.bottleneck(s1)
        y = self.merge1(torch.cat([self.up1(latent), s1], dim=1))
        y = self.merge0(torch.cat([self.up0(y), s0], dim=1))
        prediction = unstack_frames(self.head(y), self.out_steps, self.channels)
        return Forecast(prediction, {"latent": latent})
