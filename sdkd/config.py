"""Load and validate the pipeline config against the one JSON schema.

The schema lives at ``workflow/schemas/config.schema.yaml`` (the Snakefile validates
with it too); the package reads the same file through a symlink so both tools agree
on every key. Validation fills in the schema's defaults, so code downstream can index
keys without ``.get``.

A config is untrusted input. Reading one is bounded before any of it is expanded: at
most :data:`MAX_CONFIG_BYTES` of regular-file UTF-8 text, at most :data:`MAX_CONFIG_NODES`
values once YAML aliases are expanded, nested at most :data:`MAX_CONFIG_DEPTH` deep.
Every failure is one line naming the file and, where there is one, the key.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sdkd import plan
from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

# The shipped configs are 1-4 KB; a thousand times that is still no experiment anyone
# writes by hand, and reading it is instant. Larger files (a data file or a device given
# as --config by mistake) are refused before they are read.
MAX_CONFIG_BYTES = 1 << 20
# Values (mappings, lists and scalars) in the config with every YAML alias expanded:
# the shipped configs have 60-130 once defaults are filled in, so 10^4 leaves room for
# a hundred datasets and keeps validation under a second. An alias bomb ("billion
# laughs") is a few hundred bytes that expand to 10^9 values; PyYAML builds it cheaply
# (aliases share objects) but any walk over it (the schema check, a dump) expands it:
# 152 s and 5.7 GB before this bound. Refusing aliases outright would also refuse the
# harmless reuse of a block (`student: *training`).
MAX_CONFIG_NODES = 10_000
# The schema nests at most six levels; this bound keeps every recursive walk (PyYAML's
# composer, jsonschema, ours) far from Python's recursion limit.
MAX_CONFIG_DEPTH = 32
# Training runs one config may ask for (the paper's grid is 190): more is a typo in a
# seed list, and it would make Snakemake plan that many jobs before anything runs.
MAX_RUNS = 10_000
# The most points one setting's `tune:` grid may have (each is a training run).
MAX_TUNING_POINTS = 64
# Every model family downsamples its input grid by 4 to its latent grid
# (sdkd.models.base.ForecastModel.downsample_factor; tests/test_config.py checks that
# they agree). Kept here because validation must not import torch (the Snakefile runs it).
MODEL_DOWNSAMPLING = 4

# The first line of a resolved config (write_resolved): the user's config files it was
# merged from, so that its errors name them rather than the internal copy.
_RESOLVED_FROM = "# sdkd: resolved from "


@functools.cache
def schema() -> dict[str, Any]:
    """The config JSON schema (parsed once)."""
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _strict_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema calls 1.0 an integer; a config's 1.0e12 trajectories is a mistake, and
    # code that takes range() of it fails far from the config.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _with_defaults(validator_class: type) -> type:
    """A validator that writes each property's ``default`` into the instance.

    Defaults are set before the property's own validation so that, e.g., a missing
    ``window_stride`` is both filled and checked. Integers are Python ints only.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(
        validator_class,
        {"properties": set_defaults},
        type_checker=validator_class.TYPE_CHECKER.redefine("integer", _strict_integer),
    )


def _key_path(parts: Iterable[Any]) -> str:
    parts = [str(p) for p in parts]
    return ".".join(parts) if parts else "(top level)"


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line and at most ``limit`` characters (messages quote values,
    and a value may be a huge list)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what was expected."""
    # oneOf/anyOf failures are explained best by the branch that got furthest.
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema["properties"]))
        return f"{where}: {_one_line(error.message)} (allowed: {allowed})"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    hint = f" — {_one_line(description)}" if description else ""
    return f"{where}: {_one_line(error.message)}{hint}"


def _check_values(config: Any, source: str) -> None:
    """Bound the config's expanded size and depth, and refuse what no schema sees.

    Each distinct list or mapping is walked once and its expanded size remembered, so
    an alias bomb is caught after a few hundred steps, where any other walk would
    expand it. Also refused: a recursive alias, a key that is not a string (YAML reads
    ``on:`` or ``1:`` as a bool or an int) and NaN or ±Inf, which the schema's
    ``type: number`` accepts.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def walk(value: Any, path: list[Any]) -> int:
        if isinstance(value, float) and not math.isfinite(value):
            raise SdkdError(f"{source}: {_key_path(path)}: {value} is not a finite number")
        if not isinstance(value, dict | list):
            return 1
        ident = id(value)
        if ident in sizes:
            return sizes[ident]
        if ident in active:
            raise SdkdError(f"{source}: {_key_path(path)}: a YAML alias that contains itself")
        if len(path) >= MAX_CONFIG_DEPTH:
            raise SdkdError(
                f"{source}: {_key_path(path)}: nested deeper than {MAX_CONFIG_DEPTH} levels"
            )
        active.add(ident)
        size = 1
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(value, dict) and not isinstance(key, str):
                raise SdkdError(
                    f"{source}: {_key_path(path)}: key {key!r} is not a string; quote it "
                    "(YAML reads on, off, yes, no and numbers as other types)"
                )
            size += walk(child, [*path, key])
            if size > MAX_CONFIG_NODES:
                raise SdkdError(
                    f"{source}: {_key_path(path)}: more than {MAX_CONFIG_NODES} values once "
                    "YAML aliases are expanded; expected a config of a sane size"
                )
        active.discard(ident)
        sizes[ident] = size
        return size

    walk(config, [])


def validate(
    config: dict[str, Any], *, source: str = "config", models: bool = True
) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Every rule that the config alone decides is checked here, before any job runs: the
    schema, then the rules between keys (each dataset's frames, grid and split against
    its windows and models, band cutoffs against the grids they split, learning rates,
    the size of the run grid). With ``models`` (the default) the model names,
    overrides and band settings are also resolved as the jobs resolve them; that imports
    torch, so the Snakefile, which plans without it, validates with ``models=False``
    and runs ``sdkd check-config`` just before its first job.

    Raises:
        SdkdError: naming ``source``, the offending key and what was expected.
    """
    _check_values(config, source)
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema()))
    validator = validator_class(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    # A failing equation block leaves its keys "unevaluated"; that error is only an
    # echo of the real one, so report it only when it is all there is.
    errors = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise SdkdError(f"{source}: {_describe(error)}")
    for name, dataset in config["datasets"].items():
        _check_dataset(name, dataset, source)
        _check_raw_file(name, dataset, source)
        _check_simulation(name, dataset, config["limits"], source)
        _check_grid(name, dataset, config, source)
    _check_training(config, source)
    _check_bands(config, source)
    _check_run_count(config, source)
    if models:
        _check_experiment(config, source)
    return config


def _check_grid(name: str, dataset: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """A dataset's `students:`/`settings:` subset names only what the config defines.

    The schema has already rejected empty lists and repeated names; what it cannot see
    is whether each name exists in ``models.students`` / ``distill.settings``.
    """
    known = {
        "students": ("models.students", list(config["models"]["students"])),
        "settings": ("distill.settings", list(config["distill"]["settings"])),
    }
    for key, (where, names) in known.items():
        for chosen in dataset.get(key) or ():
            if chosen not in names:
                raise SdkdError(
                    f"{source}: datasets.{name}.{key}: {chosen!r} is not in {where} "
                    f"({', '.join(names)})"
                )


def _check_experiment(config: dict[str, Any], source: str) -> None:
    """Model names (each of its role: teacher or student), their overrides and band
    settings must resolve before any job starts."""
    from sdkd.distill.settings import check_settings
    from sdkd.models.registry import get_family, model_names

    # Load the plugins first: a broken one is the environment's fault, not a config key's.
    every = model_names()
    models = config["models"]
    roles = (
        ("teacher", "teacher", [models["teacher"]], "teacher_overrides"),
        ("students", "student", models["students"], "student_overrides"),
    )
    for key, role, names, overrides_key in roles:
        for name in names:
            try:
                family, _ = get_family(name)
            except SdkdError as exc:
                raise SdkdError(f"{source}: models.{key}: {exc}") from None
            if family.role != role:
                fitting = [n for n in every if get_family(n)[0].role == role]
                raise SdkdError(
                    f"{source}: models.{key}: {name} is a {family.role} model; a {role} is "
                    f"one of {', '.join(fitting)}"
                )
            foreign = sorted(set(models[overrides_key]) - set(family.overrides))
            if foreign:
                raise SdkdError(
                    f"{source}: models.{overrides_key}: {', '.join(foreign)} does not apply "
                    f"to {name}; {family.name} accepts {', '.join(sorted(family.overrides))}"
                )
    try:
        check_settings(config["distill"])
    except SdkdError as exc:
        raise SdkdError(f"{source}: {exc}") from None


def _check_dataset(name: str, dataset: dict[str, Any], source: str) -> None:
    """Cross-key rules that a JSON schema cannot say (or Snakemake's validator cannot read)."""
    for block in ("simulate", "download", "file"):
        if block in dataset and block != dataset["source"]:
            raise SdkdError(
                f"{source}: datasets.{name}.{block}: block given but source is "
                f"{dataset['source']!r}; remove it or change the source"
            )
    download = dataset.get("download")
    if download and "name" in download and {"known_hash", "layout"} & set(download):
        raise SdkdError(
            f"{source}: datasets.{name}.download: a named file has a known checksum and "
            "layout; give either `name` (and maybe a mirror `url`) or `url`, `known_hash` "
            "and `layout`"
        )
    _check_split(f"{source}: datasets.{name}.split", dataset["split"])
    _check_source_block(f"{source}: datasets.{name}", dataset)
    sim = dataset.get("simulate")
    if sim and sim["equation"] == "navier_stokes":
        solver = sim["solver_resolution"]
        if solver is not None and solver % sim["resolution"]:
            raise SdkdError(
                f"{source}: datasets.{name}.simulate.solver_resolution: {solver} is not a "
                f"multiple of resolution {sim['resolution']}"
            )


def _check_split(where: str, split: Mapping[str, Any]) -> None:
    """All counts, all fractions summing to 1, or all time ranges that do not overlap."""
    values = [split["train"], split["val"], split["test"]]
    ranges = [isinstance(v, list) for v in values]
    if any(ranges) and not all(ranges):
        raise SdkdError(
            f"{where}: mixes time ranges with counts or fractions; give train, val and "
            "test all as [first, last] time ranges, or none"
        )
    if all(ranges):
        from sdkd.data.calendar import time_range

        spans = sorted(
            (*time_range(split[key], f"{where}.{key}"), key) for key in ("train", "val", "test")
        )
        for (_, end, earlier), (start, _, later) in itertools.pairwise(spans):
            if start < end:
                raise SdkdError(
                    f"{where}: {earlier} {split[earlier]} and {later} {split[later]} overlap; "
                    "a frame in two splits would leak the test data into training"
                )
        return
    counts = all(isinstance(v, int) for v in values)
    if not counts and not math.isclose(sum(values), 1.0):
        raise SdkdError(
            f"{where}: fractions must sum to 1 (got {sum(values):g}); use integers for counts"
        )


def _check_source_block(where: str, dataset: Mapping[str, Any]) -> None:
    """Keys that only make sense together: a file's layout and axes, WeatherBench's slice."""
    from sdkd.data.sources import WEATHERBENCH

    spec = dataset.get("file")
    if spec is not None:
        npy = spec["path"].lower().endswith(".npy")
        if spec["layout"] == "taxibj":
            extra = [key for key in ("variable", "axes", "channels") if key in spec]
            if extra:
                raise SdkdError(
                    f"{where}.file: {', '.join(extra)} cannot be given with layout taxibj "
                    "(its variables, axes and channels are fixed)"
                )
        elif "axes" not in spec:
            raise SdkdError(f"{where}.file: missing axes, the variable's axis order")
        elif "variable" not in spec and not npy:
            raise SdkdError(
                f"{where}.file: missing variable, the array to read (only a .npy file has "
                "just one)"
            )
        elif isinstance(spec.get("variable"), list) and "C" in spec["axes"].split():
            raise SdkdError(
                f"{where}.file.axes: {spec['axes']!r} has a C axis, but each variable of a "
                "list is one channel; drop C"
            )
    download = dataset.get("download")
    if download is None:
        return
    slice_keys = [key for key in ("variables", "start", "stop", "step_hours") if key in download]
    if download.get("name") == WEATHERBENCH:
        missing = [key for key in ("variables", "start", "stop") if key not in download]
        if missing:
            raise SdkdError(
                f"{where}.download: {WEATHERBENCH} needs {', '.join(missing)} (the slice "
                "to fetch)"
            )
        from sdkd.data.calendar import time_range

        time_range([download["start"], download["stop"]], f"{where}.download.start/stop")
    elif slice_keys:
        raise SdkdError(
            f"{where}.download: {', '.join(slice_keys)} only apply to name {WEATHERBENCH}"
        )


def _check_raw_file(name: str, dataset: dict[str, Any], source: str) -> None:
    """The raw file's name becomes a path in the raw folder (:func:`sdkd.plan.raw_dir`)
    and a Snakemake wildcard: it must be a plain, printable file name (not ``..``, not
    empty)."""
    key = dataset["source"] if dataset["source"] != "file" else "file.path"
    if dataset["source"] == "file" and "\0" in dataset["file"]["path"]:
        raise SdkdError(f"{source}: datasets.{name}.file.path: contains a NUL character")
    try:
        filename = raw_filename(dataset)
    except SdkdError as exc:
        raise SdkdError(f"{source}: datasets.{name}.{exc}") from None
    if filename in ("", ".", "..") or "/" in filename or not filename.isprintable():
        raise SdkdError(
            f"{source}: datasets.{name}.{key}: the raw file would be named {filename!r}; "
            "expected a path ending in a printable file name"
        )


def _data_grid(dataset: Mapping[str, Any]) -> int | None:
    """Points per side of a simulated dataset's canonical grid: after ``spatial_stride``
    and the grid policy (:mod:`sdkd.data.grid`: crop to, or pad up to, a multiple of the
    models' downsampling); None when the grid is only known once the data is read
    (``file`` and ``download`` sources)."""
    sim = dataset.get("simulate")
    if sim is None:
        return None
    grid = len(range(0, sim["resolution"], dataset["spatial_stride"]))
    return fitted_side(grid, dataset["grid"]["policy"])


def fitted_side(n: int, policy: str) -> int:
    """A grid side of ``n`` points under a grid policy: cropped down to, or padded up to,
    a multiple of :data:`MODEL_DOWNSAMPLING`; ``exact`` leaves it as it is."""
    if policy == "crop":
        return n // MODEL_DOWNSAMPLING * MODEL_DOWNSAMPLING
    if policy == "pad":
        return -(-n // MODEL_DOWNSAMPLING) * MODEL_DOWNSAMPLING
    return n


def _check_simulation(
    name: str, dataset: dict[str, Any], limits: Mapping[str, Any], source: str
) -> None:
    """What preprocess and the models would refuse about simulated data, known before
    the (possibly long) simulation runs: its frames, trajectories, grid and size."""
    sim = dataset.get("simulate")
    if sim is None:
        return
    where = f"{source}: datasets.{name}"
    # navier_stokes records t_end/n_records, ..., t_end; diffusion_reaction saves
    # n_frames from t = 0 on; one vorticity channel, or u and v.
    frames_key, channels = (
        ("n_records", 1) if sim["equation"] == "navier_stokes" else ("n_frames", 2)
    )
    raw_frames, stride = sim[frames_key], dataset["temporal_stride"]
    frames = len(range(0, raw_frames, stride))
    have = f"simulate.{frames_key} = {raw_frames} with temporal_stride {stride} gives {frames}"
    need = dataset["in_steps"] + dataset["out_steps"]
    trajectories = min(sim["n_trajectories"], dataset["max_trajectories"] or sim["n_trajectories"])
    split = [dataset["split"][part] for part in ("train", "val", "test")]
    counts = split if all(isinstance(v, int) for v in split) else None
    if trajectories == 1:  # one series: preprocess splits its frames (counts are frames)
        if counts and (sum(counts) > frames or min(counts) < need):
            raise SdkdError(
                f"{where}.split: {counts} frames of the single series, but {have} frames "
                f"and each part needs in_steps + out_steps = {need}"
            )
    elif frames < need:
        raise SdkdError(
            f"{where}.in_steps: in_steps + out_steps = {need} frames per window, but {have} "
            "frames per trajectory"
        )
    elif counts and sum(counts) > trajectories:
        kept = (
            f"max_trajectories keeps {trajectories}"
            if trajectories < sim["n_trajectories"]
            else f"simulate.n_trajectories is {trajectories}"
        )
        raise SdkdError(
            f"{where}.split: {sum(counts)} trajectories asked for, but {kept}"
        )
    grid = _data_grid(dataset)
    if grid % MODEL_DOWNSAMPLING or grid < MODEL_DOWNSAMPLING:
        key = "spatial_stride" if dataset["spatial_stride"] > 1 else "simulate.resolution"
        raise SdkdError(
            f"{where}.{key}: the data grid is {grid}×{grid} (resolution {sim['resolution']}, "
            f"spatial_stride {dataset['spatial_stride']}, grid policy "
            f"{dataset['grid']['policy']}); the models downsample it by {MODEL_DOWNSAMPLING}, "
            f"so each side must be a non-zero multiple of {MODEL_DOWNSAMPLING} (or set "
            "grid: {policy: crop} or {policy: pad})"
        )
    gib = sim["n_trajectories"] * raw_frames * channels * sim["resolution"] ** 2 * 4 / 2**30
    if gib > limits["max_array_gib"]:
        raise SdkdError(
            f"{where}.simulate: {sim['n_trajectories']} trajectories × {raw_frames} frames × "
            f"{channels} × {sim['resolution']}² float32 is {gib:.3g} GiB, more than "
            f"limits.max_array_gib = {limits['max_array_gib']:g}; raise the limit if the "
            "data is really this large"
        )


def _check_training(config: Mapping[str, Any], source: str) -> None:
    """Each training block as a run sees it (a dataset's keys over the top-level ones)."""
    for dataset, block in config["datasets"].items():
        for role in ("teacher", "student"):
            training = plan.training_block(config, dataset, role)
            if training["min_lr"] > training["lr"]:
                own = block.get("training", {}).get(role, {})
                where = (f"datasets.{dataset}.training.{role}"
                         if {"lr", "min_lr"} & set(own) else f"training.{role}")
                raise SdkdError(
                    f"{source}: {where}.min_lr: {training['min_lr']:g} is above "
                    f"lr = {training['lr']:g}; the schedule decays from lr down to min_lr"
                )


def _has_mode(low: float, high: float, rows: int, cols: int) -> bool:
    """Whether a Fourier mode with 0 ≤ ky ≤ rows, 0 ≤ kx ≤ cols has low ≤ |k| < high.

    One step per row: in a row |k| grows with kx, so only the first kx with |k| ≥ low
    can fall in the band. |k| is compared as float64 √(ky² + kx²), as the masks do.
    """
    if low > math.hypot(rows, cols):
        return False
    for ky in range(rows + 1):
        kx = math.isqrt(max(0, math.ceil(low * low) - ky * ky))  # within one of the first
        while kx > 0 and math.sqrt(ky * ky + (kx - 1) ** 2) >= low:
            kx -= 1
        while kx <= cols and math.sqrt(ky * ky + kx * kx) < low:
            kx += 1
        if kx <= cols and math.sqrt(ky * ky + kx * kx) < high:
            return True
    return False


def _empty_band(cutoffs: tuple[float, ...], height: int, width: int) -> int | None:
    """The first band that holds no Fourier mode of an ``height``×``width`` grid, or None.

    The rule of :class:`sdkd.distill.bands.SpectralBands` (half-open radial bands in
    cycles per domain, |ky| ≤ height // 2 and 0 ≤ kx ≤ width // 2 on the rfft
    half-plane; tests/test_config.py checks that the two agree), without torch.
    """
    edges = (0.0, *cutoffs, math.inf)
    for band, (low, high) in enumerate(itertools.pairwise(edges)):
        if not _has_mode(low, high, height // 2, width // 2):
            return band
    return None


def _check_increasing(cutoffs: tuple[float, ...], key: str, source: str) -> None:
    if any(b <= a for a, b in itertools.pairwise(cutoffs)):
        raise SdkdError(f"{source}: {key}: {list(cutoffs)} is not strictly increasing")


def _check_band_modes(
    cutoffs: tuple[float, ...], key: str, grid: int, what: str, source: str
) -> None:
    """Cutoffs that leave no band of a ``grid``×``grid`` field without a Fourier mode."""
    band = _empty_band(cutoffs, grid, grid)
    if band is not None:
        largest = math.hypot(grid // 2, grid // 2)
        raise SdkdError(
            f"{source}: {key}: band {band} of cutoffs {list(cutoffs)} holds no mode of the "
            f"{grid}×{grid} {what} (the largest wavenumber there is {largest:.3g} cycles per "
            "domain); expected cutoffs that leave every band a mode"
        )


def _check_bands(config: dict[str, Any], source: str) -> None:
    """Band settings resolve, and their cutoffs increase and fit the grids they split: a
    setting's on the models' latent grid (the data grid / 4) of each simulated dataset
    that runs it, the report's ``evaluate.band_cutoffs`` on each simulated data grid.
    (The grid of a `file` or `download` source is known once preprocess reads it.)"""
    distill = config["distill"]
    settings = {}
    for key in distill["settings"]:
        try:
            settings[key] = plan.band_setting(distill, key)
        except SdkdError as exc:
            raise SdkdError(f"{source}: {exc}") from None
        _check_tune(settings[key], distill["settings"][key], source)
        for cutoffs, where in _all_cutoffs(settings[key]):
            _check_increasing(cutoffs, where, source)
    evaluate = tuple(config["evaluate"]["band_cutoffs"])
    _check_increasing(evaluate, "evaluate.band_cutoffs", source)
    for name, dataset in config["datasets"].items():
        grid = _data_grid(dataset)
        if grid is None:
            continue
        _check_band_modes(evaluate, "evaluate.band_cutoffs", grid, f"data grid of {name}",
                          source)
        for key in plan.dataset_settings(config, name):
            for cutoffs, where in _all_cutoffs(settings[key]):
                _check_band_modes(cutoffs, where, grid // MODEL_DOWNSAMPLING,
                                  f"latent grid of {name}", source)


def _check_tune(setting: plan.BandSetting, entry: Mapping[str, Any], source: str) -> None:
    """A `tune:` grid of at most MAX_TUNING_POINTS points, on a setting it can change, of
    keys the setting does not also set (the tuning stage's choice would replace them)."""
    if not setting.tune:
        return
    where = f"{source}: distill.settings.{setting.key}.tune"
    if setting.setting == "none":
        raise SdkdError(f"{where}: the none setting has no distillation term to tune")
    if both := sorted(set(setting.tune) & set(entry)):
        raise SdkdError(f"{where}: {', '.join(both)} also set outside tune:; the tuning "
                        "stage chooses it, so give its candidates in tune: only")
    if (n := len(setting.points())) > MAX_TUNING_POINTS:
        raise SdkdError(f"{where}: {n} combinations; at most {MAX_TUNING_POINTS}")


def _all_cutoffs(setting: plan.BandSetting) -> list[tuple[tuple[float, ...], str]]:
    """Every cutoff list a setting may train with, its own and its tuning candidates',
    each with the key that gives it."""
    found = []
    if setting.cutoffs is not None:
        found.append((setting.cutoffs, f"distill.settings.{setting.key}.cutoffs"))
    for i, cutoffs in enumerate((setting.tune or {}).get("cutoffs", [])):
        found.append((tuple(cutoffs), f"distill.settings.{setting.key}.tune.cutoffs[{i}]"))
    return found


def _check_run_count(config: dict[str, Any], source: str) -> None:
    """Bound the run grid (datasets × students × settings × seeds) before it is planned."""
    distill = config["distill"]
    runs = 0
    for name in config["datasets"]:
        seeds = sum(
            len(distill["settings"][key].get("seeds", distill["seeds"]))
            for key in plan.dataset_settings(config, name)
        )
        runs += 1 + len(plan.dataset_students(config, name)) * seeds
    runs += len(plan.tuning_runs(config))
    if runs > MAX_RUNS:
        raise SdkdError(
            f"{source}: the config asks for {runs} training runs (datasets × students × "
            f"band settings × seeds, and the tuning runs); at most {MAX_RUNS} per config"
        )


def _display(path: str | Path) -> str:
    """A path as a one-line message may show it (control characters escaped)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def _read_text(path: Path, name: str) -> str:
    """The config file's text: a regular file of at most MAX_CONFIG_BYTES, UTF-8.

    The type is checked before the file is opened: opening a FIFO would wait for a
    writer, and a device such as /dev/zero never ends.
    """
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise SdkdError(f"{name}: is a directory; expected a YAML config file")
        if not stat.S_ISREG(info.st_mode):
            raise SdkdError(f"{name}: not a regular file; expected a YAML config file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise SdkdError(f"{name}: config file not found") from None
    except OSError as exc:
        raise SdkdError(f"{name}: cannot read config ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SdkdError(
            f"{name}: larger than {MAX_CONFIG_BYTES} bytes; expected a YAML config "
            "(is this a data file?)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdkdError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "expected a YAML config file"
        ) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, and what (it spreads them over several)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position + 1}: {exc.reason} (#x{exc.character:04x})"
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or problem is None:
        return _one_line(str(exc))
    # the context says what was being read ("while parsing a flow sequence")
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    return _one_line(f"line {mark.line + 1}, column {mark.column + 1}: {what}")


def _resolved_source(text: str, name: str) -> str:
    """How messages name a config: a resolved config (write_resolved) by the user's
    files it came from, any other by its own path."""
    first = text.partition("\n")[0]
    if first.startswith(_RESOLVED_FROM):
        try:
            origin = json.loads(first[len(_RESOLVED_FROM):])
        except ValueError:
            return name
        if isinstance(origin, str):
            return f"{_display(origin)} (resolved in {name})"
    return name


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML config file, within the bounds of the module docstring."""
    path = Path(path)
    name = _display(path)
    text = _read_text(path, name)
    source = _resolved_source(text, name)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SdkdError(f"{source}: not valid YAML ({yaml_problem(exc)})") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise SdkdError(
            f"{source}: nested deeper than Python can read; expected a YAML config"
        ) from None
    if not isinstance(config, dict):
        raise SdkdError(f"{source}: expected a mapping of config keys at the top level")
    return validate(config, source=source)


def config_source(files: Iterable[str | Path], overrides: Mapping[str, Any] | None) -> str:
    """How messages name a config Snakemake merged: its files (relative to the working
    directory when inside it) and, when there are any, the ``--config`` overrides."""
    cwd = Path.cwd()
    names = []
    for file in files:
        path = Path(file)
        if path.is_absolute() and path.is_relative_to(cwd):
            path = path.relative_to(cwd)
        names.append(_display(path))
    text = " + ".join(names) or "config"
    return f"{text} with --config overrides" if overrides else text


def dataset_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The block of dataset ``name``, or a clear error listing the known ones."""
    try:
        return config["datasets"][name]
    except KeyError:
        known = ", ".join(sorted(config["datasets"]))
        raise SdkdError(f"unknown dataset {name!r}: config defines {known}") from None


def write_resolved(
    config: Mapping[str, Any], directory: str | Path, source: str | None = None
) -> Path:
    """Write the effective config to a content-addressed file and return its path.

    Snakemake merges ``configfile:``, ``--configfile`` and ``--config`` overrides; the
    ``sdkd`` steps must see that merged result, not one of the files. The name carries
    a hash of the content, so concurrent jobs write identical files and an existing
    one is never rewritten. Keys keep the config's order: it is the order of the
    datasets, students and band settings in every table and figure of the report.
    ``source`` (:func:`config_source`) goes on the first line, a YAML comment that
    :func:`load` reads back, so that an error found in a job names the user's files.
    """
    # JSON keeps the comment on one line whatever characters the file names hold.
    header = f"{_RESOLVED_FROM}{json.dumps(source)}\n" if source else ""
    text = header + yaml.safe_dump(dict(config), sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(directory) / f"config-{digest}.yaml"
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def raw_filename(dataset: Mapping[str, Any]) -> str:
    """File name of a dataset's raw data in its raw folder (:func:`sdkd.plan.raw_dir`).

    The Snakefile builds its acquire output from this so that downloaded files keep
    their public names (and so their checksums stay recognisable).
    """
    source = dataset["source"]
    if source == "simulate":
        return "simulation.h5"
    if source == "download":
        from sdkd.data.sources import WEATHERBENCH

        if dataset["download"].get("name") == WEATHERBENCH:
            return dataset["download"].get("filename") or f"{WEATHERBENCH}.h5"
        from sdkd.data.download import resolve

        return resolve(dataset["download"]).filename
    return Path(dataset["file"]["path"]).name


def raw_file(config: Mapping[str, Any], name: str) -> str:
    """The raw file of acquired dataset ``name``, relative to the project:
    ``resources/raw/<name>/<file>`` for the default experiment, the shared
    ``resources/shared/<name>-<raw id>/<file>`` for a named one (:func:`sdkd.plan.raw_dir`)."""
    return f"{plan.raw_dir(config, name)}/{raw_filename(config['datasets'][name])}"
