"""What a ``file`` source's ``path`` names: one file, a Zarr directory, or a glob.

Standard library only: the Snakemake rules import this module to list the inputs of the
preprocess rule, and they must stay quick to load (no numpy, xarray or h5py here).

A glob's matches are sorted by name, which is the order :func:`sdkd.data.gridded.open_gridded`
concatenates them in along time; names such as ``era5_2020-01.nc`` sort in time order,
names such as ``day9.nc``, ``day10.nc`` do not (zero-pad the numbers).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sdkd.errors import SdkdError, os_error_message

# A glob of more files than this is almost always a pattern that reaches too far
# (``data/**``); each match is opened to read its metadata.
MAX_MATCHES = 10_000
# A Zarr store of more files than this makes Snakemake's input listing slow (it stats
# every file on each run); such a store is better consolidated into fewer chunks.
MAX_STORE_FILES = 100_000

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has glob characters (``*``, ``?``, ``[``)."""
    return not _GLOB_CHARS.isdisjoint(pattern)


def data_paths(pattern: str) -> list[Path]:
    """The files (or Zarr directories) a ``file`` source's ``path`` names.

    Args:
        pattern: a path or a glob pattern; ``~`` is expanded, ``**`` matches any depth.

    Returns:
        The path itself when it exists (even with glob characters in its name), else the
        glob's matches sorted by name. A Zarr store is a directory and counts as one path.
    """
    expanded = os.path.expanduser(pattern)
    if os.path.lexists(expanded) or not is_glob(expanded):
        path = Path(expanded)
        _check_exists(path, pattern)
        return [path]
    matches = _at_most(
        glob.iglob(expanded, recursive=True), MAX_MATCHES,
        f"{pattern}: the glob matches more than {MAX_MATCHES} paths; narrow the pattern or "
        "merge the files",
    )
    if not matches:
        parent = _existing_parent(expanded)
        raise SdkdError(
            f"{pattern}: no file matches this glob pattern (nearest existing folder: {parent})"
        )
    return [Path(m) for m in sorted(matches)]


def input_files(pattern: str) -> list[Path]:
    """Every regular file whose change should rerun preprocessing.

    The :func:`data_paths` of ``pattern``, with each directory (a Zarr store) replaced by
    the regular files inside it at any depth, metadata files such as ``.zarray`` included.
    Links to directories inside a store are not followed (a link loop would never end).

    Returns:
        Sorted paths, each a regular file (or a link to one).
    """
    files: list[Path] = []
    for path in data_paths(pattern):
        if not path.is_dir():
            files.append(path)
            continue
        inside = _at_most(
            _regular_files(path), MAX_STORE_FILES,
            f"{path}: holds more than {MAX_STORE_FILES} files; consolidate the Zarr store "
            "into larger chunks",
        )
        if not inside:
            raise SdkdError(f"{path}: an empty directory; expected a Zarr store")
        files.extend(Path(f) for f in sorted(inside))
    return files


def _at_most(items: Iterator[str], limit: int, too_many: str) -> list[str]:
    """The items, or ``SdkdError(too_many)`` as soon as there are more than ``limit``
    (stopping there: a pattern that reaches too far is not listed to its end)."""
    found: list[str] = []
    for item in items:
        found.append(item)
        if len(found) > limit:
            raise SdkdError(too_many)
    return found


def _regular_files(directory: Path) -> Iterator[str]:
    """The regular files below ``directory``, at any depth, links to folders not followed."""
    for folder, _dirs, names in os.walk(directory, onerror=_walk_error):
        for name in names:
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                yield full


def _check_exists(path: Path, pattern: str) -> None:
    try:
        path.stat()
    except FileNotFoundError:
        broken = f" (a broken link to {os.readlink(path)})" if path.is_symlink() else ""
        raise SdkdError(f"{pattern}: file not found{broken}") from None
    except OSError as exc:  # a link loop, a component that is a file, a name too long
        raise SdkdError(os_error_message(exc)) from None


def _existing_parent(pattern: str) -> str:
    """The deepest folder of ``pattern`` before its first glob character that exists."""
    head = pattern
    while is_glob(head):
        head = os.path.dirname(head)
    parent = Path(head or ".")
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return str(parent)


def _walk_error(exc: OSError) -> None:
    # os.walk skips folders it cannot list unless told otherwise; a store missing a
    # folder of chunks would then be hashed incompletely without a word.
    raise SdkdError(os_error_message(exc))


def file_pattern(spec: Mapping[str, Any]) -> str:
    """The path (or glob) a ``file`` block names: ``path`` itself, or with ``package``,
    ``path`` inside that installed Python package (data shipped in a wheel, such as
    ``iris_sample_data``), found without importing it."""
    package = spec.get("package")
    if not package:
        return spec["path"]
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise SdkdError(
            f"file.package: {package!r} is not an installed Python package (pip install it, "
            "or give the data's path without package)"
        )
    return os.path.join(locations[0], spec["path"])
