"""Where the reported results come from: the data files, the software and the commit."""

from __future__ import annotations

import importlib.metadata
import math
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sdkd.errors import SdkdError
from sdkd.report.fmt import DASH, fmt_si

# Packages whose versions the setup lists ("not installed" when absent).
VERSIONED = ("sdkd", "torch", "snakemake", "dvc", "numpy", "pandas", "h5py", "matplotlib")
SPLITS = ("train", "val", "test")
# The attributes the Setup section shows (sdkd.data.preprocess writes them).
ATTRIBUTES = ("dataset", "source", "raw_sha256", "channels", "mean", "std", "in_steps",
              "out_steps", "window_stride", "dt", "dx", "created_with")
# Bounds on what one attribute may put on the page: a canonical file pulled from a shared
# remote may carry anything, and sdkd's own attributes are a few values each.
MAX_ATTR_ITEMS = 4096
MAX_ATTR_CHARS = 2000


def _attr(value: Any) -> str:
    """An HDF5 attribute as text (arrays joined with commas, floats 6 digits)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return ", ".join(_attr(v) for v in value.tolist())
    if isinstance(value, list | tuple):
        return ", ".join(_attr(v) for v in value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _read_attr(f: h5py.File, key: str) -> str:
    """Attribute ``key`` of ``f`` as the page shows it: cut to :data:`MAX_ATTR_CHARS`, not
    read at all when it has more than :data:`MAX_ATTR_ITEMS` elements."""
    if key not in f.attrs:
        return DASH
    shape = f.attrs.get_id(key).shape or ()
    items = math.prod(shape)
    if items > MAX_ATTR_ITEMS:
        return f"({items} values, not shown)"
    text = _attr(f.attrs[key])
    if len(text) > MAX_ATTR_CHARS:
        text = f"{text[:MAX_ATTR_CHARS]}… ({len(text)} characters)"
    return text


def read_provenance(path: str | Path) -> dict[str, str]:
    """The provenance of one canonical HDF5 file: its attributes and split shapes.

    Raises:
        SdkdError: when the file does not exist, is not a readable HDF5 file, or one of
            its attributes cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise SdkdError(f"{path}: data file not found")
    info = {"file": str(path), "size": fmt_si(path.stat().st_size) + "B"}
    key = None
    try:
        with h5py.File(path, "r") as f:
            for key in ATTRIBUTES:
                info[key] = _read_attr(f, key)
            key = None
            shapes = {}
            for split in SPLITS:
                node = f.get(f"{split}/frames")
                shapes[split] = ("×".join(str(n) for n in node.shape)
                                 if isinstance(node, h5py.Dataset) else "absent")
    except (OSError, RuntimeError, TypeError, ValueError) as exc:
        what = "not a readable HDF5 file" if key is None else f"attribute {key} cannot be read"
        raise SdkdError(f"{path}: {what} ({' '.join(str(exc).split())})") from None
    info["splits"] = "; ".join(f"{s} {shapes[s]}" for s in SPLITS)
    return info


def package_versions(names: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Installed version of each distribution ("not installed" when absent), plus python."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = f"{platform.python_version()} ({platform.python_implementation()})"
    return versions


def git_commit(project_dir: str | Path) -> str:
    """``git rev-parse HEAD`` in ``project_dir`` (marked when tracked files are modified);
    "unknown" when it is not a git work tree or git is not installed."""
    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "--no-optional-locks", *args], cwd=project_dir,
                                  capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    commit = head.stdout.strip()
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is not None and status.returncode == 0 and status.stdout.strip():
        commit += " (with uncommitted changes)"
    return commit
