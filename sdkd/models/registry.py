"""Build forecasting models by name (``family-size``) from config.

    build_model("unet-m", in_steps=10, out_steps=10, channels=1, height=64, width=64)
    build_model("teacher-small", in_steps=10, out_steps=10, channels=2, N_T=6)

A family is a ``ForecastModel`` subclass registered with ``@register("unet")``.
It declares two class attributes:

- ``SIZES``: ``{size: {kwarg: value}}``, the presets (``"s"``, ``"m"``, ``"l"``,
  or ``"paper"``, ``"small"``, ``"tiny"`` for the teacher);
- ``OVERRIDES``: ``{kwarg: int | float}``, the keys a config may override and
  their type (documented in each family's docstring).

Every family also takes ``height`` and ``width`` (the input grid, optional, both
or neither): grid-agnostic families only check them (divisible by 4); the
MLP-Mixer builds its token-mixing MLP for that grid. Note that ``width`` is the
*grid* width W; the channel-width knob of the students is ``width_mult``.

``model_spec(model)`` returns ``{"name": ..., "kwargs": {...}}`` (plain ints and
floats, JSON/YAML-safe) that ``build_from_spec`` turns back into an identical
architecture; checkpoints store it.

Besides the built-in families (imported by ``sdkd.models``), installed packages may
register families through the ``sdkd.models`` entry-point group (``plugins``); they are
loaded the first time the registry is asked for a name, in every process, so a
checkpoint of a plugin model rebuilds wherever the plugin is installed.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from sdkd.errors import SdkdError
from sdkd.models.base import ForecastModel, check_grid_size

GRID_KEYS: dict[str, type] = {"height": int, "width": int}
ROLES = ("teacher", "student")
# Names end up in config keys, Snakemake wildcards and result paths
# (results/students/<dataset>/<family>-<size>/...): the config schema's pattern.
_FAMILY_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SIZE_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Family:
    """A registered model family: its class, size presets and overridable keys.

    ``role`` is the class's ``ROLE`` (``"teacher"`` or ``"student"``: which of
    ``models.teacher`` / ``models.students`` may name it). ``provider`` is who registered
    it: ``"sdkd"`` for the built-ins, a plugin's distribution name, else the module that
    called ``register``; ``plugin`` is the entry-point name of a plugin family (else None).
    """

    name: str
    cls: type[ForecastModel]
    sizes: Mapping[str, Mapping[str, Any]]
    overrides: Mapping[str, type]
    role: str = "student"
    provider: str = "sdkd"
    plugin: str | None = None

    def accepted(self) -> dict[str, type]:
        return {**self.overrides, **GRID_KEYS}


_FAMILIES: dict[str, Family] = {}
# (distribution, entry-point name) of the plugin being loaded (sdkd.models.plugins sets
# it around each entry point), so that ``register`` can record who provides a family.
_LOADING: tuple[str, str] | None = None

M = TypeVar("M", bound=type[ForecastModel])


def register(family: str) -> Callable[[M], M]:
    """Class decorator: register a ``ForecastModel`` subclass as ``family``.

    The class must define ``SIZES`` and ``OVERRIDES`` (see the module docstring),
    may set ``ROLE`` (``"student"``, the default, or ``"teacher"``) and must accept
    ``in_steps``, ``out_steps``, ``channels``, ``height``, ``width`` and every key of
    ``OVERRIDES`` as keyword arguments. ``family`` is lower case (``[a-z][a-z0-9_]*``),
    each size ``[a-z0-9_]+``: model names are config values and path components.
    """
    if not _FAMILY_NAME.fullmatch(family):
        raise ValueError(f"family name {family!r} must match [a-z][a-z0-9_]* (no '-')")

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, ForecastModel)):
            raise TypeError(f"model family {family!r}: {cls!r} is not a ForecastModel subclass")
        sizes = getattr(cls, "SIZES", None)
        overrides = getattr(cls, "OVERRIDES", None)
        if not sizes or overrides is None:
            raise TypeError(f"{cls.__name__} must define SIZES and OVERRIDES to be registered")
        for size, preset in sizes.items():
            if not isinstance(size, str) or not _SIZE_NAME.fullmatch(size):
                raise ValueError(f"{cls.__name__}.SIZES: size {size!r} must match [a-z0-9_]+")
            unknown = set(preset) - set(overrides)
            if unknown:
                raise TypeError(f"{cls.__name__}.SIZES[{size!r}] sets non-overridable {unknown}")
        role = getattr(cls, "ROLE", "student")
        if role not in ROLES:
            raise ValueError(f"{cls.__name__}.ROLE is {role!r}, expected one of {ROLES}")
        existing = _FAMILIES.get(family)
        if existing is not None and existing.cls is not cls:
            raise ValueError(
                f"model family {family!r} is already registered by {existing.provider}"
            )
        if _LOADING is not None:
            provider, plugin = _LOADING
        else:
            top = cls.__module__.split(".")[0]
            provider, plugin = ("sdkd" if top == "sdkd" else cls.__module__), None
        _FAMILIES[family] = Family(family, cls, sizes, overrides, role, provider, plugin)
        return cls

    return decorate


def _ensure_loaded() -> None:
    # Importing the package registers the built-in families (teacher, unet, resnet, mixer);
    # then the installed plugins register theirs (once per process; a broken plugin raises
    # its SdkdError here, at every call: see sdkd.models.plugins).
    import sdkd.models  # noqa: F401
    from sdkd.models.plugins import load_plugins

    load_plugins()


def model_names() -> list[str]:
    """Every valid model name, ``family-size``, in registration and preset order."""
    _ensure_loaded()
    return [f"{fam.name}-{size}" for fam in _FAMILIES.values() for size in fam.sizes]


def _valid_names() -> str:
    return ", ".join(model_names())


def get_family(name: str) -> tuple[Family, str]:
    """(family, size) for a model name; ``SdkdError`` listing the valid names otherwise."""
    _ensure_loaded()
    if not isinstance(name, str) or "-" not in name:
        raise SdkdError(f"unknown model {name!r}: expected family-size, one of {_valid_names()}")
    family_name, size = name.rsplit("-", 1)
    family = _FAMILIES.get(family_name)
    if family is None:
        raise SdkdError(
            f"unknown model family {family_name!r} in {name!r}; valid names: {_valid_names()} "
            "(a plugin's family needs its package installed; `sdkd models` lists them all)"
        )
    if size not in family.sizes:
        raise SdkdError(
            f"unknown size {size!r} for model family {family_name!r}; valid names: "
            + ", ".join(f"{family_name}-{s}" for s in family.sizes)
        )
    return family, size


def _check_value(model: str, key: str, value: Any, kind: type) -> int | float:
    if kind is int:
        # numbers.Integral/Real also admit NumPy scalars (e.g. read from HDF5 attributes).
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            hint = ""
            if key in GRID_KEYS:
                hint = f" (the grid {key} in pixels; scale a student's channels with width_mult)"
            raise SdkdError(f"{model}: {key} must be a positive integer, got {value!r}{hint}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SdkdError(f"{model}: {key} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise SdkdError(f"{model}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def build_model(
    name: str, *, in_steps: int, out_steps: int, channels: int, **overrides: Any
) -> ForecastModel:
    """Build the model ``name`` (``family-size``) for T_in → T_out frames of C channels.

    Args:
        name: one of ``model_names()``.
        in_steps, out_steps, channels: T_in, T_out and C.
        **overrides: keys of the family's ``OVERRIDES`` (replacing the size
            preset's value) plus the optional grid ``height`` and ``width``.

    Raises:
        SdkdError: unknown name or size (listing the valid names), unknown
            override key (listing the accepted keys), a value of the wrong type,
            a grid not divisible by 4, or an impossible combination.
    """
    family, size = get_family(name)
    steps = {"in_steps": in_steps, "out_steps": out_steps, "channels": channels}
    steps = {k: _check_value(name, k, v, int) for k, v in steps.items()}
    accepted = family.accepted()
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise SdkdError(
            f"{name}: unknown override key(s) {', '.join(unknown)}; "
            f"{family.name} accepts: {', '.join(sorted(accepted))}"
        )
    overrides = {k: _check_value(name, k, v, accepted[k]) for k, v in overrides.items()}
    if ("height" in overrides) != ("width" in overrides):
        raise SdkdError(f"{name}: give both height and width of the grid, or neither")
    if "height" in overrides:
        factor = family.cls.downsample_factor
        check_grid_size(name, overrides["height"], overrides["width"], factor)

    model = family.cls(**steps, **{**family.sizes[size], **overrides})
    model.name = name
    kwargs = {**steps, **overrides}
    if model.built_grid is not None:
        kwargs["height"], kwargs["width"] = model.built_grid
    model._sdkd_spec = {"name": name, "kwargs": kwargs}
    return model


def model_spec(model: ForecastModel) -> dict[str, Any]:
    """``{"name": ..., "kwargs": {...}}``: enough to rebuild ``model`` with ``build_from_spec``.

    ``kwargs`` holds ``in_steps``, ``out_steps``, ``channels``, the overrides the
    model was built with, and the grid for grid-dependent families.
    """
    # Look through wrappers: torch.compile's OptimizedModule, DataParallel/DDP.
    for attr in ("_orig_mod", "module"):
        if getattr(model, "_sdkd_spec", None) is None and isinstance(
            getattr(model, attr, None), ForecastModel
        ):
            model = getattr(model, attr)
    spec = getattr(model, "_sdkd_spec", None)
    if spec is None:
        raise SdkdError(
            f"{type(model).__name__} was not built by sdkd.models.build_model; it has no spec"
        )
    return copy.deepcopy(spec)


def build_from_spec(spec: Mapping[str, Any], *, max_gib: float | None = None) -> ForecastModel:
    """Rebuild a model from ``model_spec``'s output (e.g. read back from a checkpoint).

    ``max_gib`` bounds the memory its parameters and buffers may take (GiB): a spec read
    from a file is built on the meta device first (no memory), and refused before
    allocation when it is larger (``limits.max_array_gib`` in the config).
    """
    if (
        not isinstance(spec, Mapping)
        or not isinstance(spec.get("name"), str)
        or not isinstance(spec.get("kwargs"), Mapping)
    ):
        raise SdkdError(f"model spec must be {{'name': str, 'kwargs': mapping}}, got {spec!r}")
    kwargs = dict(spec["kwargs"])
    missing = [k for k in ("in_steps", "out_steps", "channels") if k not in kwargs]
    if missing:
        raise SdkdError(f"model spec for {spec['name']!r} lacks {', '.join(missing)}")
    if max_gib is not None:
        with torch.device("meta"):
            shadow = build_model(spec["name"], **kwargs)
        tensors = [*shadow.parameters(), *shadow.buffers()]
        gib = sum(t.numel() * t.element_size() for t in tensors) / 2**30
        if gib > max_gib:
            raise SdkdError(
                f"model spec for {spec['name']!r}: its weights would take {gib:.3g} GiB, more "
                f"than limits.max_array_gib = {max_gib:g}; raise it if the model is real"
            )
    return build_model(spec["name"], **kwargs)
