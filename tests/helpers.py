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


# The smallest model/training/distill blocks: tests of the data steps don't use them.
TINY_EXPERIMENT = {
    "models": {"teacher": "teacher-tiny", "students": ["unet-s"],
               "student_overrides": {"width_mult": 0.25}},
    "training": {"teacher": {"epochs": 1, "batch_size": 2},
                 "student": {"epochs": 1, "batch_size": 2}},
    "distill": {"settings": {"none": {}, "dual": {"cutoffs": [1.5], "weights": [1.0, 1.0]}}},
}


def experiment(datasets: dict[str, dict], seed: int = 0, **blocks: Any) -> dict:
    """A whole config: the given datasets, tiny models, overridable blocks."""
    return {"seed": seed, "datasets": datasets, **copy.deepcopy(TINY_EXPERIMENT), **blocks}


def write_config(directory: Path, datasets: dict[str, dict], seed: int = 0, **blocks: Any) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(experiment(datasets, seed, **blocks)))
    return path


def leftovers(directory: Path) -> list[str]:
    """Files under ``directory``, to assert that nothing partial was left behind."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def assert_clean_failure(status: int, err: str, *fragments: str, out_dir: Path | None = None
                         ) -> str:
    """A failure as a user must see it: exit 2, no traceback, exactly one
    ``sdkd: error:`` line (the last one; progress bars and log lines may come first)
    holding every fragment, and (with ``out_dir``) nothing left there but the raw
    link of an acquire step. Returns the message."""
    assert status == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "sdkd: error: " in line]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    message = errors[0].split("sdkd: error: ", 1)[1]
    for fragment in fragments:
        assert fragment in message, message
    if out_dir is not None:
        assert [p for p in leftovers(out_dir) if not p.startswith("raw/")] == []
    return message
