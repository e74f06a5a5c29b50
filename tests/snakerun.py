"""Running the project's Snakemake workflow from tests, in a temporary copy of it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sdkd.plan import results_root

ROOT = Path(__file__).resolve().parents[1]
# Where a run of config/smoke.yaml writes, relative to its working folder: the smoke
# experiment's own folder (results/experiments/smoke), never the default's results/.
SMOKE_RESULTS = results_root(yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))


def env(**extra: str) -> dict[str, str]:
    """The environment of a workflow subprocess: the rules call `sdkd`, which must be on
    PATH beside this interpreter."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **extra}


def snakemake(workdir: Path, *args: str, cores: int = 2, **extra_env: str
              ) -> subprocess.CompletedProcess:
    """``snakemake --cores N ARGS`` in ``workdir``; output captured, never raises."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), *args],
        cwd=workdir, env=env(**extra_env), capture_output=True, text=True, check=False,
        timeout=600,
    )


def copy_workflow(work: Path) -> Path:
    """``work`` with a copy of the Snakefile, workflow/ and config/."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, work / name)
    return work


def trimmed_smoke() -> dict:
    """config/smoke.yaml cut to a default experiment for tests that need one: no
    `experiment` name (so it writes results/ and resources/raw/, the default's paths),
    one dataset, the settings none and dual, one epoch each."""
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    del smoke["experiment"]
    del smoke["datasets"]["diffusion_reaction"]
    smoke["distill"]["settings"] = {key: smoke["distill"]["settings"][key]
                                    for key in ("none", "dual")}
    for role in ("teacher", "student"):
        smoke["training"][role]["epochs"] = 1
    return smoke


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table Snakemake prints before running (or dry-running): {rule: count}."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m[1] != "total"}


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by path relative to it."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}
