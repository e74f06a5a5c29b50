"""``tinyconv``: the smallest student that keeps sdkd's model contract (an example plugin).

Importing this module registers the family; the ``sdkd.models`` entry point in
``pyproject.toml`` is what makes sdkd import it. Shapes (D = latent width):

    x          (B, T_in, C, H, W) → frames stacked as channels (B, T_in·C, H, W)
    encode     4×4 conv, stride 4 (patchify) → GELU → features["latent"] (B, D, H/4, W/4)
    decode     4×4 transposed conv, stride 4 → (B, T_out·C, H, W)
    prediction (B, T_out, C, H, W)

Parameters: D·(16·T_in·C + 1) + T_out·C·(16·D + 1). Forward FLOPs per sample, 2 per
multiply-add as sdkd counts them: 2·D·C·H·W·(T_in + T_out) (each layer has
16·D·T·C multiply-adds per latent pixel, and there are H·W/16 latent pixels).

Sizes: ``s`` D = 16, ``m`` D = 32. Overridable keys: ``latent_channels`` (D) and
``width_mult`` (multiplies D, rounded, at least 1), the keys of the built-in students
that a config's ``student_overrides`` may set; plus the grid ``height``/``width``,
which this grid-agnostic family only accepts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from sdkd.models import Forecast, ForecastModel, register

PATCH = 4  # the encoder's kernel and stride: the latent grid is (H / 4, W / 4)


@register("tinyconv")
class TinyConv(ForecastModel):
    """Patchify conv → latent → transposed conv (module doc)."""

    ROLE: ClassVar[str] = "student"  # the default; a teacher family says "teacher"
    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"latent_channels": 16},
        "m": {"latent_channels": 32},
    }
    OVERRIDES: ClassVar[dict[str, type]] = {"latent_channels": int, "width_mult": float}
    downsample_factor = PATCH

    def __init__(self, *, in_steps: int, out_steps: int, channels: int, latent_channels: int,
                 width_mult: float = 1.0, **grid: int) -> None:
        # ``grid``: the registry passes the data's ``height`` and ``width`` when it knows
        # them; a grid-agnostic family only accepts them (the base class checks inputs).
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels)
        self.latent_channels = max(1, round(latent_channels * width_mult))
        d = self.latent_channels
        self.encode = nn.Sequential(
            nn.Conv2d(in_steps * channels, d, PATCH, stride=PATCH), nn.GELU())
        self.decode = nn.ConvTranspose2d(d, out_steps * channels, PATCH, stride=PATCH)

    def forecast(self, x: Tensor) -> Forecast:
        b, t, c, h, w = x.shape
        latent = self.encode(x.reshape(b, t * c, h, w))  # (B, D, H/4, W/4)
        y = self.decode(latent).reshape(b, self.out_steps, c, h, w)
        return Forecast(y, {"latent": latent})
