"""Model size and cost figures for tables: parameters and FLOPs per sample.

FLOPs are counted by ``torch.utils.flop_counter`` on the *meta* device (shapes
only: no weights are copied, no arithmetic is done), for one sample of
(1, T_in, C, H, W), forward pass only. A multiply-add counts as 2 FLOPs (torch's
convention; fvcore/OpenSTL tables report multiply-adds, i.e. half this number).
Convolutions, matrix products and attention are counted; normalisations,
activations and element-wise ops are not (they are a few percent at most here).
"""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from sdkd.models.base import ForecastModel
from sdkd.models.registry import build_from_spec, model_spec


def count_parameters(model: torch.nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: ForecastModel, height: int, width: int) -> int:
    """Forward FLOPs (2 per multiply-add) of ``model``, one sample on a ``height``×``width`` grid.

    Raises ``SdkdError`` if the model cannot run on that grid.
    """
    model.check_grid(height, width)
    if getattr(model, "_sdkd_spec", None) is not None:
        with torch.device("meta"):
            shadow = build_from_spec(model_spec(model))
    else:
        shadow = copy.deepcopy(model).to("meta")
    x = torch.empty(1, model.in_steps, model.channels, height, width, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        shadow(x)
    return int(counter.get_total_flops())
