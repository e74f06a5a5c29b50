"""The Snakemake DAG on the smoke config, in a temporary copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdkd.data.dataset import ForecastWindows

ROOT = Path(__file__).resolve().parents[1]


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # the rules call `sdkd`: it must be on PATH beside this interpreter
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, check=False, timeout=600,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("smoke")
    for name in ("Snakefile", "workflow", "config"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, work / name)
    result = _snakemake(work, "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def test_smoke_builds_the_report(smoke_run):
    report = (smoke_run / "results/report.html").read_text()
    assert 'id="summary"' in report and 'id="setup"' in report
    for name in ("navier_stokes", "diffusion_reaction"):
        assert f'id="dataset-{name}"' in report
        assert (smoke_run / f"results/eval/{name}/teacher/teacher-tiny.json").exists()
        assert (smoke_run / f"results/students/{name}/unet-s/dual/seed-0/best.pt").exists()
    assert (smoke_run / "results/tables/summary.json").exists()


def test_smoke_builds_every_dataset(smoke_run):
    for name, channels in (("navier_stokes", 1), ("diffusion_reaction", 2)):
        ds = ForecastWindows(smoke_run / f"results/data/{name}.h5", "train")
        x, y = ds[0]
        assert x.shape[1] == channels and y.shape[0] == ds.out_steps
        assert (smoke_run / f"results/benchmarks/preprocess/{name}.tsv").exists()


def test_second_run_has_nothing_to_do(smoke_run):
    result = _snakemake(smoke_run, "--configfile", "config/smoke.yaml", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_variant_replaces_default_config(smoke_run):
    """--configfile is a whole experiment, not merged into config/config.yaml."""
    (resolved,) = (smoke_run / ".snakemake/sdkd").glob("config-*.yaml")
    config = yaml.safe_load(resolved.read_text())
    # config.yaml keeps every 5th diffusion-reaction frame; smoke.yaml says nothing, so 1
    assert config["datasets"]["diffusion_reaction"]["temporal_stride"] == 1
    assert config["datasets"]["navier_stokes"]["simulate"]["resolution"] == 16
