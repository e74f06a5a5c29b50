"""Forecasting models: the teacher and the student families, built by name.

    from sdkd.models import build_model, model_spec, build_from_spec

    model = build_model("unet-m", in_steps=10, out_steps=10, channels=1, height=64, width=64)
    out = model(x)                 # x (B, T_in, C, H, W)
    out.prediction                 # (B, T_out, C, H, W)
    out.features["latent"]         # (B, model.latent_channels, *model.latent_grid(H, W))

Families (one module each): ``teacher`` (paper / small / tiny), ``unet``, ``resnet``
and ``mixer`` (s / m / l). See ``registry`` for names and overrides, ``base`` for
the contract every model keeps. Installed packages add families through the
``sdkd.models`` entry-point group (``plugins``, docs/plugins.md); ``model_table`` (and
``sdkd models``) lists every model with its parameters and FLOPs.
"""

from sdkd.models.base import Forecast, ForecastModel
from sdkd.models.registry import (
    build_from_spec,
    build_model,
    get_family,
    model_names,
    model_spec,
    register,
)
from sdkd.models.stats import count_parameters, flops_per_sample, model_table

# Importing the family modules registers them (order = order of ``model_names()``).
from sdkd.models import teacher, unet, resnet, mixer  # noqa: F401  isort: skip

__all__ = [
    "Forecast",
    "ForecastModel",
    "build_from_spec",
    "build_model",
    "count_parameters",
    "flops_per_sample",
    "get_family",
    "model_names",
    "model_spec",
    "model_table",
    "register",
]
