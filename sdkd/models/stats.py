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
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from sdkd.models.base import ForecastModel
from sdkd.models.registry import (
    build_from_spec,
    build_model,
    get_family,
    model_names,
    model_spec,
)


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


def model_table(
    *, height: int = 64, width: int = 64, in_steps: int = 10, out_steps: int = 10,
    channels: int = 1,
) -> list[dict[str, Any]]:
    """One row per registered model (built-ins and plugins, in ``model_names()`` order):
    its size and cost at a (1, T_in, C, H, W) input, the table of ``sdkd models``.

    The default is the benchmarks' and the paper's setting (64×64, 10 → 10 frames,
    C = 1). Models are built on the meta device, so even ``teacher-paper`` costs no
    memory. Each row: ``model``, ``family``, ``size``, ``role`` (teacher/student),
    ``provider`` (``"sdkd"`` or a plugin's distribution), ``plugin`` (its entry-point
    name, else None), ``parameters`` and ``flops_per_sample`` (forward, 2 per
    multiply-add, as :func:`flops_per_sample`).

    Raises:
        SdkdError: a model that cannot be built for that input (e.g. a grid not
            divisible by 4), or a broken plugin.
    """
    rows = []
    for name in model_names():
        family, size = get_family(name)
        with torch.device("meta"):
            model = build_model(name, in_steps=in_steps, out_steps=out_steps,
                                channels=channels, height=height, width=width)
        rows.append({
            "model": name, "family": family.name, "size": size, "role": family.role,
            "provider": family.provider, "plugin": family.plugin,
            "parameters": count_parameters(model),
            "flops_per_sample": flops_per_sample(model, height, width),
        })
    return rows
