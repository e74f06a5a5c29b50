"""Building blocks shared by the model families.

Shapes use B batch, C channels, H×W a grid, N = H·W tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the most groups (≤ ``max_groups``) that divide ``channels``."""
    return nn.GroupNorm(math.gcd(channels, max_groups), channels)


def scale_width(channels: int, mult: float, multiple: int = 4) -> int:
    """``channels · mult`` rounded to a multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, multiple * round(channels * mult / multiple))


class ConvNormAct(nn.Sequential):
    """3×3 conv (stride 1 or 2) → GroupNorm → SiLU.  (B, Cin, H, W) → (B, Cout, H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2),
            group_norm(out_ch),
            nn.SiLU(),
        )


class UpNormAct(nn.Sequential):
    """×2 upsampling by sub-pixel conv: 3×3 conv to 4·Cout → PixelShuffle(2) → GroupNorm → SiLU.

    (B, Cin, H, W) → (B, Cout, 2H, 2W). Sub-pixel convolution avoids the
    checkerboard artefacts of strided transposed convolutions.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, 4 * out_ch, 3, padding=1),
            nn.PixelShuffle(2),
            group_norm(out_ch),
            nn.SiLU(),
        )


class ResBlock(nn.Module):
    """Residual conv block: SiLU(GN(conv(SiLU(GN(conv x)))) + skip(x)).

    (B, Cin, H, W) → (B, Cout, H, W); ``skip`` is the identity when Cin = Cout,
    else a 1×1 conv.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) map (each pixel normalised alone)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mlp(nn.Sequential):
    """Linear → GELU → Linear on the last axis: (..., D) → (..., D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over tokens: (B, N, D) → (B, N, D).

    Scaled dot-product attention (softmax(QKᵀ/√d_head)V) per head, using
    PyTorch's fused kernel where one is available.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, d_head)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def sincos_position_2d(height: int, width: int, dim: int, *, device=None, dtype=None) -> Tensor:
    """Fixed 2-D sinusoidal positional encoding for a ``height``×``width`` token grid.

    Returns (height·width, dim), tokens in row-major order. The first half of the
    channels encodes the row index i, the second half the column index j, each
    as [sin(p·ω_k), cos(p·ω_k)] with ω_k = 10000^(−k/(dim/4)), k = 0 … dim/4 − 1
    (the Transformer's 1-D encoding applied per axis). Computed for the grid at
    hand, so attention works on any grid. ``dim`` must be divisible by 4.
    """
    quarter = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * omega  # (H, dim/4)
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * omega  # (W, dim/4)
    row_enc = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, -1)
    col_enc = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, -1)
    pe = torch.cat([row_enc, col_enc], dim=2).reshape(height * width, dim)
    return pe if dtype is None else pe.to(dtype)


def student_width(latent_channels: int, width_mult: float) -> int:
    """A student's latent width D: ``latent_channels``, or ``latent_channels · width_mult``
    rounded to a multiple of 4 when ``width_mult`` ≠ 1 (every other width follows D)."""
    return latent_channels if width_mult == 1 else scale_width(latent_channels, width_mult)


def stack_frames(x: Tensor) -> Tensor:
    """(B, T, C, H, W) → (B, T·C, H, W): frames stacked as channels (time-major)."""
    b, t, c, h, w = x.shape
    return x.reshape(b, t * c, h, w)


def unstack_frames(y: Tensor, steps: int, channels: int) -> Tensor:
    """(B, T·C, H, W) → (B, T, C, H, W), the inverse of ``stack_frames``."""
    b, _, h, w = y.shape
    return y.reshape(b, steps, channels, h, w)
