"""The contract every forecasting model keeps.

A model maps T_in input frames to T_out forecast frames and returns, beside the
forecast, a dict of named intermediate features so that a distiller can read them
without hooks into private attributes:

    x                     (B, T_in, C, H, W)
    prediction            (B, T_out, C, H, W)
    features["latent"]    (B, D, h, w)    D = ``latent_channels``,
                                           (h, w) = ``latent_grid(H, W)``

``features["latent"]`` is always the latent *after* evolution (the teacher's
translator output, a student's bottleneck / residual stack / mixer tokens); it is
what the frequency-aligned distillation loss compares between teacher and
student. Families may add more named features (documented per family).

Every family in this package downsamples by ``downsample_factor`` = 4, so H and W
must both be divisible by 4; a grid that is not stops with an ``SdkdError`` naming
the grid and the factor.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from torch import Tensor, nn

from sdkd.errors import SdkdError


class Forecast(NamedTuple):
    """What every model returns.

    Attributes:
        prediction: (B, T_out, C, H, W) forecast frames.
        features: named intermediate features; always holds ``"latent"``,
            (B, D, h, w), the latent after evolution.
    """

    prediction: Tensor
    features: dict[str, Tensor]


def check_grid_size(name: str, height: int, width: int, factor: int) -> None:
    """Raise ``SdkdError`` unless both sides of a ``height``×``width`` grid divide by ``factor``."""
    if height % factor or width % factor:
        raise SdkdError(
            f"{name}: grid {height}×{width} is not divisible by the model's downsampling "
            f"factor {factor}; H and W must both be multiples of {factor}"
        )


class ForecastModel(nn.Module):
    """Abstract base: (B, T_in, C, H, W) → ``Forecast``.

    Subclasses set the attributes below in ``__init__`` and implement
    ``forecast(x)``; ``forward`` validates the input first and then calls it.

    Attributes:
        in_steps: T_in, frames the model reads.
        out_steps: T_out, frames it forecasts.
        channels: C, physical channels per frame (same in and out).
        latent_channels: D, channels of ``features["latent"]``.
        downsample_factor: H and W must be divisible by it; the latent grid is
            (H / factor, W / factor).
        built_grid: the one (H, W) the model works on if its layers depend on the
            grid (the MLP-Mixer's token-mixing MLP); ``None`` for grid-agnostic models.
        name: the registry name the model was built under (``"unet-m"``), set by
            the registry; ``None`` for a model built directly.
        ROLE: class attribute, ``"student"`` (the default) or ``"teacher"``: whether
            the config's ``models.students`` or ``models.teacher`` may name the family.
    """

    ROLE: ClassVar[str] = "student"
    in_steps: int
    out_steps: int
    channels: int
    latent_channels: int
    downsample_factor: int = 4
    built_grid: tuple[int, int] | None = None
    name: str | None = None

    def __init__(self, *, in_steps: int, out_steps: int, channels: int) -> None:
        super().__init__()
        self.in_steps = in_steps
        self.out_steps = out_steps
        self.channels = channels

    # -- grid ----------------------------------------------------------------------------

    def _label(self) -> str:
        return self.name or type(self).__name__

    def check_grid(self, height: int, width: int) -> None:
        """Raise ``SdkdError`` if the model cannot run on a ``height``×``width`` grid."""
        check_grid_size(self._label(), height, width, self.downsample_factor)
        if self.built_grid is not None and (height, width) != self.built_grid:
            bh, bw = self.built_grid
            raise SdkdError(
                f"{self._label()}: built for a {bh}×{bw} grid but got {height}×{width}; "
                f"build it with height={height}, width={width}"
            )

    def latent_grid(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of ``features["latent"]`` for an input grid of ``height``×``width``."""
        self.check_grid(height, width)
        return height // self.downsample_factor, width // self.downsample_factor

    # -- forward -------------------------------------------------------------------------

    def check_input(self, x: Tensor) -> None:
        """Raise ``SdkdError`` unless ``x`` is (B, T_in, C, H, W) on a usable grid."""
        if x.ndim != 5:
            raise SdkdError(
                f"{self._label()}: expected input of shape (B, T_in, C, H, W), "
                f"got {x.ndim}-D shape {tuple(x.shape)}"
            )
        _, t, c, h, w = x.shape
        if t != self.in_steps or c != self.channels:
            raise SdkdError(
                f"{self._label()}: expected T_in={self.in_steps} frames of C={self.channels} "
                f"channels, got input of shape {tuple(x.shape)}"
            )
        self.check_grid(h, w)

    def forward(self, x: Tensor) -> Forecast:
        """x: (B, T_in, C, H, W) → Forecast(prediction (B, T_out, C, H, W), features)."""
        self.check_input(x)
        return self.forecast(x)

    def forecast(self, x: Tensor) -> Forecast:  # pragma: no cover - abstract
        """The model proper, on validated input; see ``forward``."""
        raise NotImplementedError

    # -- bookkeeping ---------------------------------------------------------------------

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
