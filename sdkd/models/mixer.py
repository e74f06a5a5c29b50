"""MLP-Mixer student: 4×4 patches, token- and channel-mixing MLPs, linear un-patching.

Shapes (D = latent width, h×w = H/4 × W/4, N = h·w tokens):

    x        (B, T_in, C, H, W) → frames stacked as channels (B, T_in·C, H, W)
    embed    4×4 patches, linear (a 4×4 stride-4 conv) → tokens (B, N, D)
    blocks   depth × [ t ← t + token-MLP(LN(t)ᵀ)ᵀ   mixes across the N tokens, per channel
                       t ← t + channel-MLP(LN(t))   mixes across the D channels, per token ]
    norm     LN(t) reshaped to a grid           → features["latent"] (B, D, h, w)
    head     per-token linear D → 16·T_out·C, then the 4×4 patches put back
             (PixelShuffle(4))                  → prediction (B, T_out, C, H, W)

Grid choice: the token-mixing MLP is a Linear(N, N_hidden) → GELU → Linear(N_hidden, N),
so its weights belong to one token grid. The model is built for the grid given by
``height``/``width`` at build time (default 64×64 when neither is given — the registry
passes both from the data, and ``model_spec`` records them), and any other grid stops
with an ``SdkdError`` asking for a rebuild. We keep the true token-mixing MLP of
MLP-Mixer (Tolstikhin et al. 2021) rather than a grid-agnostic substitute so that the
family is the one the SDKD paper names.

Sizes: ``s`` D = 64, depth 4; ``m`` D = 96, depth 6; ``l`` D = 128, depth 8 (12.5 %,
19 %, 25 % of the paper teacher's latent width 512); channel-MLP hidden = 4·D,
token-MLP hidden = N/2 (at least 16).

Overridable keys: ``latent_channels`` (D), ``depth`` (mixer blocks), ``width_mult``
(float; multiplies D, rounded to a multiple of 4), ``mlp_ratio`` (channel-MLP hidden / D),
``token_mlp_ratio`` (token-MLP hidden / N), and the grid ``height``/``width``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from sdkd.models.base import Forecast
from sdkd.models.layers import Mlp, stack_frames, unstack_frames
from sdkd.models.registry import register
from sdkd.models.student import Student

PATCH = 4
DEFAULT_GRID = (64, 64)


class MixerBlock(nn.Module):
    """Token mixing then channel mixing, each pre-norm and residual: (B, N, D) → (B, N, D)."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.token_norm = nn.LayerNorm(dim)
        self.token_mlp = Mlp(tokens, token_hidden)
        self.channel_norm = nn.LayerNorm(dim)
        self.channel_mlp = Mlp(dim, channel_hidden)

    def forward(self, t: Tensor) -> Tensor:
        t = t + self.token_mlp(self.token_norm(t).transpose(1, 2)).transpose(1, 2)
        return t + self.channel_mlp(self.channel_norm(t))


@register("mixer")
class Mixer(Student):
    """MLP-Mixer student for one grid (module doc)."""

    OVERRIDES: ClassVar[dict[str, type]] = {
        **Student.OVERRIDES,
        "mlp_ratio": float,
        "token_mlp_ratio": float,
    }

    def __init__(
        self,
        *,
        in_steps: int,
        out_steps: int,
        channels: int,
        mlp_ratio: float = 4.0,
        token_mlp_ratio: float = 0.5,
        height: int | None = None,
        width: int | None = None,
        **sizes: Any,
    ) -> None:
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels, **sizes)
        if height is None or width is None:
            height, width = DEFAULT_GRID
        self.built_grid = (height, width)
        self.check_grid(height, width)
        d, depth = self.latent_channels, self.depth
        tokens = (height // PATCH) * (width // PATCH)
        self.embed = nn.Conv2d(in_steps * channels, d, PATCH, stride=PATCH)
        self.blocks = nn.Sequential(
            *(
                MixerBlock(
                    tokens,
                    d,
                    token_hidden=max(16, round(tokens * token_mlp_ratio)),
                    channel_hidden=max(1, round(d * mlp_ratio)),
                )
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Conv2d(d, PATCH * PATCH * out_steps * channels, 1)
        self.unpatch = nn.PixelShuffle(PATCH)

    def forecast(self, x: Tensor) -> Forecast:
        grid = self.embed(stack_frames(x))  # (B, D, h, w)
        b, d, h, w = grid.shape
        t = self.norm(self.blocks(grid.flatten(2).transpose(1, 2)))
        latent = t.transpose(1, 2).reshape(b, d, h, w)
        prediction = unstack_frames(self.unpatch(self.head(latent)), self.out_steps, self.channels)
        return Forecast(prediction, {"latent": latent})
