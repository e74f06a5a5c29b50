"""Model plugins: families that installed packages register through an entry-point group.

A package adds student or teacher families without editing sdkd by declaring, in its
``pyproject.toml``,

    [project.entry-points."sdkd.models"]
    tinyconv = "sdkd_plugin_example"               # a module that registers when imported
    # or: tinyconv = "my_package.models:register"  # a callable, called once, no arguments

where the module (or the callable) calls ``sdkd.models.register`` on ``ForecastModel``
subclasses, exactly as the built-in families do (docs/plugins.md has the whole recipe).
Once the package is installed, every sdkd process sees its families like the built-in
ones: config validation, training, distillation, evaluation, ``build_from_spec`` of a
checkpoint, ``sdkd models``.

When: lazily, the first time the registry is asked for a name (``model_names``,
``get_family``, ``build_model``, ``build_from_spec``), once per process, in the order
(distribution, entry-point name) so that ``model_names()`` is the same on every machine.
Steps that never look a model up (acquire, preprocess, planning the DAG) never load them.

Each plugin family is then checked against the model contract (``sdkd.models.base``) on
the meta device (shapes only, no weights, milliseconds): every size builds for
T_in = 2, T_out = 3, C = 2 on a 16 × 24 grid (all different, so a swapped axis shows) and
returns a ``Forecast`` whose prediction is (1, 3, 2, 16, 24) and whose
``features["latent"]`` is (1, latent_channels, *latent_grid(16, 24)) (a teacher's
``attn_path`` and ``conv_path`` too: every feature a band setting may align to); its
``downsample_factor`` divides the 4 that config validation checks grids against. The
meta device is no extra demand: evaluation counts every model's FLOPs there.

**A broken plugin is fatal at load.** A plugin that fails to import, registers a family
name that is already taken (a built-in or another plugin's) or breaks the contract
stops the first registry lookup, and every later one in the process, with one
``SdkdError`` naming the entry point and its distribution. Why not only when its models
are used:

- which names a plugin provides is only known by importing it, so resolving any name
  means loading every plugin anyway; skipping a failure would turn a config that names
  the broken family into a misleading "unknown model family";
- a clash resolved by load order would make ``unet-s`` mean whichever class was imported
  first, i.e. depend on ``sys.path`` order: results that another machine cannot reproduce;
- failing at the first lookup means ``sdkd check-config``, which the Snakefile runs before
  its first job, stops the whole DAG up front instead of some jobs failing mid-run.

The cure is in the message: fix the plugin or ``pip uninstall`` its distribution.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Literal

import torch

from sdkd import config as configuration
from sdkd.errors import SdkdError
from sdkd.models import registry
from sdkd.models.base import Forecast

ENTRY_POINT_GROUP = "sdkd.models"

# The probe of the contract check: T_in, T_out, C and an H × W grid, all different.
PROBE_STEPS = (2, 3, 2)
PROBE_GRID = (16, 24)

_STATE: Literal["unloaded", "loading", "loaded"] = "unloaded"
_ERROR: SdkdError | None = None


class PluginError(SdkdError):
    """A model plugin that cannot be used: it names the entry point and its distribution."""


def load_plugins() -> None:
    """Register the families of every installed ``sdkd.models`` plugin (once per process).

    A plugin module that asks the registry while it is being imported sees the families
    registered so far (the call does not recurse into loading).

    Raises:
        PluginError: the first broken plugin (module docstring), again at every call.
    """
    global _STATE, _ERROR
    if _ERROR is not None:
        raise _ERROR
    if _STATE != "unloaded":
        return
    _STATE = "loading"
    before = dict(registry._FAMILIES)
    try:
        # The first lookup may come inside a device context (build_from_spec sizes a
        # checkpoint's model on the meta device): a plugin's import-time tensors go to
        # the CPU all the same.
        with torch.device("cpu"):
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_order):
                _load(ep)
    except PluginError as exc:
        # No half-loaded plugins: the registry keeps the built-ins only (and every lookup
        # raises this error anyway).
        registry._FAMILIES.clear()
        registry._FAMILIES.update(before)
        _ERROR = exc
        raise
    finally:
        _STATE = "loaded"


def _order(ep: EntryPoint) -> tuple[str, str]:
    return (ep.dist.name if ep.dist else "", ep.name)


def describe(ep: EntryPoint) -> str:
    """``model plugin 'tinyconv' (sdkd-plugin-example 0.1.0)``: how messages name a plugin."""
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
    return f"model plugin {ep.name!r} ({dist})"


def _fail(ep: EntryPoint, problem: str) -> PluginError:
    cure = f"pip uninstall {ep.dist.name}" if ep.dist else f"remove entry point {ep.value!r}"
    return PluginError(f"{describe(ep)}: {problem}; fix the plugin or uninstall it ({cure})")


def _load(ep: EntryPoint) -> None:
    """Import one entry point (calling it if it names a function) and check what it added."""
    before = set(registry._FAMILIES)
    imported_before = ep.module in sys.modules
    provider = ep.dist.name if ep.dist else ep.module
    registry._LOADING = (provider, ep.name)
    try:
        loaded = ep.load()
        if callable(loaded) and not isinstance(loaded, (type, ModuleType)):
            loaded()
    except Exception as exc:  # whatever a third-party import raises, it is this plugin's
        raise _fail(ep, f"failed to load: {type(exc).__name__}: {exc}") from exc
    finally:
        registry._LOADING = None
    if imported_before:
        # Its module was imported before plugins were loaded (a script imported it), so
        # its families registered then; record them as this plugin's.
        for name, family in list(registry._FAMILIES.items()):
            module = family.cls.__module__
            if family.plugin is None and (module == ep.module
                                          or module.startswith(ep.module + ".")):
                registry._FAMILIES[name] = dataclasses.replace(
                    family, provider=provider, plugin=ep.name)
    added = [f for name, f in registry._FAMILIES.items() if name not in before]
    if not added and not imported_before:
        raise _fail(ep, "registers no model family (its entry point must name a module "
                        "that calls sdkd.models.register when imported, or a function "
                        "that does)")
    for family in added:
        problem = contract_problem(family)
        if problem is not None:
            raise _fail(ep, problem)


def contract_problem(family: registry.Family) -> str | None:
    """What ``family`` breaks of the model contract (module docstring), or None.

    Every size is built and run on the meta device for a (1, 2, 2, 16, 24) input.
    """
    factor, grids = family.cls.downsample_factor, configuration.MODEL_DOWNSAMPLING
    if not isinstance(factor, int) or factor < 1 or grids % factor:
        return (f"family {family.name!r} has downsample_factor {factor!r}; it must divide "
                f"{grids}, the factor config validation checks grids against")
    t_in, t_out, c = PROBE_STEPS
    h, w = PROBE_GRID
    for size in family.sizes:
        name = f"{family.name}-{size}"
        where = f"{name} breaks the model contract"
        try:
            with torch.device("meta"), torch.no_grad():
                model = registry.build_model(name, in_steps=t_in, out_steps=t_out, channels=c,
                                             height=h, width=w)
                out = model(torch.empty(1, t_in, c, h, w))
                expected = (1, model.latent_channels, *model.latent_grid(h, w))
        except Exception as exc:  # any failure of third-party code is the plugin's
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            return (f"{where}: building it for T_in={t_in}, T_out={t_out}, C={c} and running "
                    f"it on a {h}×{w} grid (meta device) failed: {detail}")
        if not isinstance(out, Forecast):
            return f"{where}: forward returned {type(out).__name__}, expected sdkd.models.Forecast"
        if tuple(out.prediction.shape) != (1, t_out, c, h, w):
            return (f"{where}: prediction has shape {tuple(out.prediction.shape)} for input "
                    f"(1, {t_in}, {c}, {h}, {w}), expected (B, T_out, C, H, W) = "
                    f"(1, {t_out}, {c}, {h}, {w})")
        features = out.features if isinstance(out.features, dict) else {}
        # A teacher returns every feature a band setting may align to, so that each
        # setting (decoupled: attn_path, conv_path) runs with it as with the built-in one.
        required = teacher_features() if family.role == "teacher" else ("latent",)
        for feature in required:
            value = features.get(feature)
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
            if shape != expected:
                got = "missing" if value is None else f"of shape {shape}"
                why = (f" (a teacher returns {', '.join(required)}: the features a band "
                       "setting may align to)" if family.role == "teacher" else "")
                return (f"{where}: features[{feature!r}] is {got}, expected (B, "
                        f"latent_channels, *latent_grid(H, W)) = {expected}{why}")
    return None


def teacher_features() -> tuple[str, ...]:
    """The teacher features a band setting may name (the config schema's list), each
    (B, latent_channels, h, w)."""
    band = configuration.schema()["$defs"]["band_setting"]
    return tuple(band["properties"]["features"]["items"]["enum"])
