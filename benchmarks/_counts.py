"""What a model costs without running it: FLOPs and aten ops of a pass, bytes of weights.

Counted on the meta device (shapes only, no arithmetic), so even the paper teacher is
counted in seconds on a CPU. Shared by ``models.py`` and ``paper_hours.py`` so that both
count a training step the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from sdkd.models import build_from_spec, model_spec
from sdkd.models.base import ForecastModel
from sdkd.train.jobs import mse_loss

TRAIN_FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode around one training step (forward, the "
    "teacher job's MSE loss, backward) on batch 1 at the benchmark's grid, run on the meta "
    "device (same aten ops as a real step, no arithmetic), with torch's "
    "aten.convolution_backward formula replaced: torch 2.x counts the weight gradient of a "
    "grouped/depthwise convolution as if it were dense (groups× too many; the teacher's "
    "depthwise 3×3/5×5 convs inflate its count by ~38 %); here each gradient of a "
    "convolution (input and/or weight, per output_mask) costs the forward convolution's "
    "FLOPs. 'train_flops_torch_raw' is torch's uncorrected count and "
    "'train_flops_3x_forward' the 3× forward rule of thumb, for reference. Optimizer-step "
    "FLOPs are not counted."
)


def conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """Each requested gradient of a convolution costs what the forward convolution costs.

    ``w_shape`` is (C_out, C_in / groups, *k) (for a transposed conv (C_in, C_out / groups,
    *k)): 2 · (spatial positions) · prod(k) · batch · C_out · C_in/groups FLOPs, which
    is right for grouped and depthwise convs too.
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * x_shape[0] * prod(w_shape) * prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


class _OpCounter(TorchDispatchMode):
    """Counts aten ops that compute (views and aliases launch no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        if not func.is_view and func not in (torch.ops.aten.detach.default,):
            self.ops += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class PassCount:
    """FLOPs (2 per multiply-add) and computing aten ops of one pass of one sample."""

    flops: int
    aten_ops: int


def count_pass(model: ForecastModel, height: int, width: int, *, train: bool,
               corrected: bool = True) -> PassCount:
    """One sample on a ``height`` × ``width`` grid through a meta-device copy of ``model``.

    ``train``: forward + the teacher job's MSE loss + backward, in train mode; else the
    forward alone under ``no_grad``, in eval mode. ``corrected`` replaces torch's
    convolution-backward FLOP formula by :func:`conv_backward_flops`.
    """
    with torch.device("meta"):
        shadow = build_from_spec(model_spec(model))
    shadow.train(train)
    x = torch.empty(1, model.in_steps, model.channels, height, width, device="meta")
    y = torch.empty(1, model.out_steps, model.channels, height, width, device="meta")
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops} if corrected else None
    flops = FlopCounterMode(display=False, custom_mapping=mapping)
    ops = _OpCounter()
    # One pass under both modes: meta kernels run in Python, and this is the slow part.
    with flops, ops, torch.set_grad_enabled(train):
        if train:
            mse_loss(shadow, x, y)[0].backward()
        else:
            shadow(x)
    return PassCount(int(flops.get_total_flops()), ops.ops)


def weights_mb(model: torch.nn.Module) -> float:
    """MiB of the model's parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
