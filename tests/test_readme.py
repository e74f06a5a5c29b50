"""CI proves the README: .ci/run runs the README's test command verbatim."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    return (ROOT / "README.md").read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", _section("Set up"))


def _layout() -> list[str]:
    """The paths the README's Layout lists: the first word of each line of its block."""
    return [line.split()[0] for line in _section("Layout").splitlines()
            if line.startswith("    ") and line.strip()]


def test_readme_has_exactly_two_setup_commands():
    run, test = _commands()
    assert run.endswith("snakemake --cores all")
    assert "-c constraints.txt" in run and "-c constraints.txt" in test
    assert test.endswith("pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert _commands()[1] in ci


def test_constraints_pin_the_cpu_torch():
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert "torch==2.13.0" in pins


def test_docs_point_nowhere_outside_the_repository():
    """The repository stands on its own: no relative path leads out of it."""
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"(?:\.\./)+[\w.-]*", doc.read_text()):
            assert (doc.parent / target).resolve().is_relative_to(ROOT), (
                f"{doc.relative_to(ROOT)} points outside the repository: {target}")


def test_layout_lists_existing_paths_and_every_top_level_entry():
    listed = _layout()
    assert [p for p in listed if not (ROOT / p).exists()] == []
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    top = {f.split("/")[0] for f in files} - {"README.md"}
    assert top - {p.rstrip("/").split("/")[0] for p in listed} == set()
