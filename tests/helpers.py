"""Small builders shared by the tests: configs and file listings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def file_dataset(path: Path, variable: str = "u", axes: str = "N T H W", **extra: Any) -> dict:
    """Config block of a `file` dataset with a small split (4/1/1, 2 → 2 frames)."""
    block = {
        "source": "file",
        "file": {"path": str(path), "variable": variable, "axes": axes},
        "split": {"train": 4, "val": 1, "test": 1},
        "in_steps": 2,
        "out_steps": 2,
    }
    block.update(copy.deepcopy(extra))
    return block


def write_config(directory: Path, datasets: dict[str, dict], seed: int = 0) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": seed, "datasets": datasets}))
    return path


def leftovers(directory: Path) -> list[str]:
    """Files under ``directory``, to assert that nothing partial was left behind."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
