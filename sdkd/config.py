"""Load and validate the pipeline config against the one JSON schema.

The schema lives at ``workflow/schemas/config.schema.yaml`` (the Snakefile validates
with it too); the package reads the same file through a symlink so both tools agree
on every key. Validation fills in the schema's defaults, so code downstream can index
keys without ``.get``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def schema() -> dict[str, Any]:
    """The config JSON schema (parsed once)."""
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class: type) -> type:
    """A validator that writes each property's ``default`` into the instance.

    Defaults are set before the property's own validation so that, e.g., a missing
    ``window_stride`` is both filled and checked.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what was expected."""
    # oneOf/anyOf failures are explained best by the branch that got furthest.
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema["properties"]))
        return f"{where}: {error.message} (allowed: {allowed})"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    hint = f" — {description.strip()}" if description else ""
    return f"{where}: {error.message}{hint}"


def validate(config: dict[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises:
        SdkdError: naming ``source``, the offending key and what was expected.
    """
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
        _check_grid(name, dataset, config, source)
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
    """Model names and band settings must resolve before any job starts."""
    from sdkd.distill.settings import check_settings
    from sdkd.models.registry import get_family

    models = config["models"]
    for key, names in (("teacher", [models["teacher"]]), ("students", models["students"])):
        for name in names:
            try:
                get_family(name)
            except SdkdError as exc:
                raise SdkdError(f"{source}: models.{key}: {exc}") from None
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
    split = dataset["split"]
    values = [split["train"], split["val"], split["test"]]
    counts = all(isinstance(v, int) for v in values)
    if not counts and not math.isclose(sum(values), 1.0):
        raise SdkdError(
            f"{source}: datasets.{name}.split: fractions must sum to 1 (got {sum(values):g}); "
            "use integers for counts"
        )
    sim = dataset.get("simulate")
    if sim and sim["equation"] == "navier_stokes":
        solver = sim["solver_resolution"]
        if solver is not None and solver % sim["resolution"]:
            raise SdkdError(
                f"{source}: datasets.{name}.simulate.solver_resolution: {solver} is not a "
                f"multiple of resolution {sim['resolution']}"
            )
    if sim and counts and sum(values) > sim["n_trajectories"]:
        raise SdkdError(
            f"{source}: datasets.{name}.split: {sum(values)} trajectories asked for, "
            f"but simulate.n_trajectories is {sim['n_trajectories']}"
        )


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SdkdError(f"{path}: config file not found") from None
    except OSError as exc:
        raise SdkdError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SdkdError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise SdkdError(f"{path}: expected a mapping of config keys at the top level")
    return validate(config, source=str(path))


def dataset_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The block of dataset ``name``, or a clear error listing the known ones."""
    try:
        return config["datasets"][name]
    except KeyError:
        known = ", ".join(sorted(config["datasets"]))
        raise SdkdError(f"unknown dataset {name!r}: config defines {known}") from None


def write_resolved(config: Mapping[str, Any], directory: str | Path) -> Path:
    """Write the effective config to a content-addressed file and return its path.

    Snakemake merges ``configfile:``, ``--configfile`` and ``--config`` overrides; the
    ``sdkd`` steps must see that merged result, not one of the files. The name carries
    a hash of the content, so concurrent jobs write identical files and an existing
    one is never rewritten. Keys keep the config's order: it is the order of the
    datasets, students and band settings in every table and figure of the report.
    """
    text = yaml.safe_dump(dict(config), sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(directory) / f"config-{digest}.yaml"
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def raw_filename(dataset: Mapping[str, Any]) -> str:
    """File name of a dataset's raw data under ``resources/raw/{dataset}/``.

    The Snakefile builds its acquire output from this so that downloaded files keep
    their public names (and so their checksums stay recognisable).
    """
    source = dataset["source"]
    if source == "simulate":
        return "simulation.h5"
    if source == "download":
        from sdkd.data.download import resolve

        return resolve(dataset["download"]).filename
    return Path(dataset["file"]["path"]).name
