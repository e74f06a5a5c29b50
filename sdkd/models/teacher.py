"""The teacher: a SimVP-like encoder → latent evolution → decoder forecaster.

Shapes (B batch, T_in/T_out frames, C channels, H×W grid, h×w = H/4 × W/4):

    x          (B, T_in, C, H, W)
    encoder    per frame (B·T_in, C, H, W) → (B·T_in, hid_S, h, w): N_S layers of
               3×3 conv → GroupNorm → SiLU; layer 0 keeps full resolution (its output
               is the decoder's skip), layer 1 and layer N_S − 1 have stride 2
               (so N_S ≥ 3; the paper preset's strides are 1, 2, 1, 2 as in SimVP).
               Frames are stacked into channels: (B, T_in·hid_S, h, w)   → features["encoder"]
    evolution  1×1 conv to hid_T, then N_T blocks of                       (B, hid_T, h, w)
                 conv path  c = PW(GELU(PW(GN(DW3×3(z) + DW5×5(z)))))      high frequencies, local
                 attn path  a = MHSA(LN(tokens) + P);  a = a + MLP(LN(a))  low frequencies, global
                            over the h·w latent tokens; P is the fixed 2-D sinusoidal
                            encoding computed for the grid (any h×w works)
                 fusion     z ← z + LayerNorm_C(c + a)
               The output of the last block is features["latent"] (B, hid_T, h, w), the
               representation the distiller aligns; the last block's c and a are
               features["conv_path"] and features["attn_path"] (same shape).
               Then a 1×1 conv to T_out·hid_S.
    decoder    per output frame (B·T_out, hid_S, h, w) → (B·T_out, hid_S, H, W): the
               encoder's layers mirrored (×2 sub-pixel upsampling for the stride-2 ones);
               the last (full-resolution) layer also adds the skip: the encoder's
               layer-0 output (B, T_in·hid_S, H, W) mapped by a 1×1 conv over the stacked
               time channels to (B, T_out·hid_S, H, W). A 1×1 readout gives C channels.
    prediction (B, T_out, C, H, W)

Overridable keys (``build_model("teacher-small", ..., N_T=6)``): ``hid_S``, ``hid_T``,
``N_S`` (≥ 3), ``N_T``, ``heads`` (must divide ``hid_T``; ``hid_T`` must be a multiple of 4
for the positional encoding), ``mlp_ratio`` (hidden width of the attention path's MLP
/ hid_T, default 4) and ``conv_ratio`` (same for the conv path's pointwise MLP, default 2),
plus the optional grid ``height``/``width`` (only checked: the teacher runs on any grid
divisible by 4).

Presets: ``paper`` is OpenSTL's SimVP scale for 64×64, 10 → 10 (hid_S 64, hid_T 512,
N_S 4, N_T 8, 8 heads; about 35 M parameters at C = 1); ``small`` is the CPU default
(about 1.2 M); ``tiny`` is for tests (< 100 k).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from sdkd.errors import SdkdError
from sdkd.models.base import Forecast, ForecastModel
from sdkd.models.layers import (
    ChannelLayerNorm,
    ConvNormAct,
    Mlp,
    MultiHeadSelfAttention,
    UpNormAct,
    group_norm,
    sincos_position_2d,
)
from sdkd.models.registry import register


class EvolutionBlock(nn.Module):
    """One latent-evolution block: conv path ∥ Transformer path, fused.

    (B, D, h, w), pos (h·w, D) → (z_out, c, a), each (B, D, h, w), where
    z_out = z + LayerNorm_C(c + a).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, conv_ratio: float) -> None:
        super().__init__()
        # Convolutional path: multi-scale depthwise convs, then a pointwise MLP.
        self.dw3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dw5 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_norm = group_norm(dim)
        conv_hidden = max(1, round(dim * conv_ratio))
        self.pw1 = nn.Conv2d(dim, conv_hidden, 1)
        self.pw2 = nn.Conv2d(conv_hidden, dim, 1)
        # Transformer path: global self-attention over latent tokens, then an MLP.
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, round(dim * mlp_ratio)))
        # Fusion.
        self.fuse_norm = ChannelLayerNorm(dim)

    def forward(self, z: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, d, h, w = z.shape
        c = self.conv_norm(self.dw3(z) + self.dw5(z))
        c = self.pw2(F.gelu(self.pw1(c)))
        tokens = z.flatten(2).transpose(1, 2)  # (B, h·w, D)
        a = self.attn(self.attn_norm(tokens) + pos)
        a = a + self.mlp(self.mlp_norm(a))
        a = a.transpose(1, 2).reshape(b, d, h, w)
        return z + self.fuse_norm(c + a), c, a


def encoder_strides(n_layers: int) -> list[int]:
    """Strides of the N_S encoder layers: layer 0 full resolution, layers 1 and N_S−1 stride 2."""
    strides = [1] * n_layers
    strides[1] = strides[-1] = 2
    return strides


@register("teacher")
class Teacher(ForecastModel):
    """SimVP-like teacher with a decoupled conv / Transformer latent evolution (module doc)."""

    ROLE: ClassVar[str] = "teacher"
    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"hid_S": 64, "hid_T": 512, "N_S": 4, "N_T": 8, "heads": 8},
        "small": {"hid_S": 16, "hid_T": 128, "N_S": 3, "N_T": 4, "heads": 4},
        "tiny": {"hid_S": 8, "hid_T": 32, "N_S": 3, "N_T": 2, "heads": 2},
    }
    OVERRIDES: ClassVar[dict[str, type]] = {
        "hid_S": int,
        "hid_T": int,
        "N_S": int,
        "N_T": int,
        "heads": int,
        "mlp_ratio": float,
        "conv_ratio": float,
    }

    def __init__(
        self,
        *,
        in_steps: int,
        out_steps: int,
        channels: int,
        hid_S: int,
        hid_T: int,
        N_S: int,
        N_T: int,
        heads: int,
        mlp_ratio: float = 4.0,
        conv_ratio: float = 2.0,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        super().__init__(in_steps=in_steps, out_steps=out_steps, channels=channels)
        if N_S < 3:
            raise SdkdError(
                f"teacher: N_S={N_S} encoder layers; need at least 3 "
                "(one full-resolution layer and two stride-2 layers)"
            )
        if hid_T % heads:
            raise SdkdError(f"teacher: heads={heads} must divide hid_T={hid_T}")
        if hid_T % 4:
            raise SdkdError(
                f"teacher: hid_T={hid_T} must be a multiple of 4 (2-D sin/cos encoding)"
            )
        self.hid_S, self.hid_T = hid_S, hid_T
        self.latent_channels = hid_T

        strides = encoder_strides(N_S)
        self.encoder = nn.ModuleList(
            ConvNormAct(channels if i == 0 else hid_S, hid_S, stride=s)
            for i, s in enumerate(strides)
        )
        self.latent_in = nn.Conv2d(in_steps * hid_S, hid_T, 1)
        self.blocks = nn.ModuleList(
            EvolutionBlock(hid_T, heads, mlp_ratio, conv_ratio) for _ in range(N_T)
        )
        self.latent_out = nn.Conv2d(hid_T, out_steps * hid_S, 1)
        self.skip_map = nn.Conv2d(in_steps * hid_S, out_steps * hid_S, 1)
        self.decoder = nn.ModuleList(
            UpNormAct(hid_S, hid_S) if s == 2 else ConvNormAct(hid_S, hid_S)
            for s in reversed(strides)
        )
        self.readout = nn.Conv2d(hid_S, channels, 1)

    def forecast(self, x: Tensor) -> Forecast:
        b, t_in, c, H, W = x.shape
        t_out, hid_S = self.out_steps, self.hid_S

        z = x.reshape(b * t_in, c, H, W)
        skip = z
        for i, layer in enumerate(self.encoder):
            z = layer(z)
            if i == 0:
                skip = z  # (B·T_in, hid_S, H, W)
        h, w = z.shape[-2:]
        encoded = z.reshape(b, t_in * hid_S, h, w)

        latent = self.latent_in(encoded)
        pos = sincos_position_2d(h, w, self.hid_T, device=x.device, dtype=latent.dtype)
        conv_path = attn_path = latent
        for block in self.blocks:
            latent, conv_path, attn_path = block(latent, pos)

        y = self.latent_out(latent).reshape(b * t_out, hid_S, h, w)
        skip = self.skip_map(skip.reshape(b, t_in * hid_S, H, W)).reshape(b * t_out, hid_S, H, W)
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            y = layer(y + skip if i == last else y)
        prediction = self.readout(y).reshape(b, t_out, c, H, W)
        features = {
            "encoder": encoded,
            "latent": latent,
            "conv_path": conv_path,
            "attn_path": attn_path,
        }
        return Forecast(prediction, features)
