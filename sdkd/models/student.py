"""What the student families share: size presets, overridable keys, the latent width.

Every student reads the T_in frames stacked as channels and has one latent width D
(``latent_channels``, scaled by ``width_mult``) from which its other widths follow.
Sizes ``s``, ``m``, ``l`` have D = 64, 96, 128 (12.5 %, 19 %, 25 % of the paper
teacher's latent width 512) and grow in depth; a family may change the depths.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sdkd.models.base import ForecastModel
from sdkd.models.layers import student_width


class Student(ForecastModel):
    """Base of the student families (not registered itself)."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"latent_channels": 64, "depth": 4},
        "m": {"latent_channels": 96, "depth": 6},
        "l": {"latent_channels": 128, "depth": 8},
    }
    OVERRIDES: ClassVar[dict[str, type]] = {
        "latent_channels": int,
        "depth": int,
        "width_mult": float,
    }

    def __init__(
        self,
        *,
        in_steps: int,
        out_steps: int,
        channels: int,
        latent_channels: int,
        depth: int,
        width_mult: float = 1.0,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels)
        self.latent_channels = student_width(latent_channels, width_mult)
        self.depth = depth
