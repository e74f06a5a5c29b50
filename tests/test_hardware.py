"""What a job takes from the machine: the GPUs the Snakefile counts, the thread pools a
job starts, and the local GPU profile that puts both to use (sdkd.hardware)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from snakerun import copy_workflow, snakemake

from sdkd.hardware import visible_gpus

ROOT = Path(__file__).resolve().parents[1]

# What `nvidia-smi -L` prints on a machine with three GPUs, one of them split by MIG.
NVIDIA_SMI_LISTING = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-66666666-7777-8888-9999-000000000000)
  MIG 3g.40gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)
  MIG 3g.40gb     Device  1: (UUID: MIG-ffffffff-0000-1111-2222-333333333333)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-44444444-5555-6666-7777-888888888888)
"""


@pytest.fixture
def three_gpus(tmp_path, monkeypatch):
    """A PATH whose `nvidia-smi -L` lists three GPUs; no fake or visible-device override."""
    program = tmp_path / "bin/nvidia-smi"
    program.parent.mkdir()
    program.write_text(f"#!/bin/sh\ncat <<'END'\n{NVIDIA_SMI_LISTING}END\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SDKD_FAKE_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_visible_gpus_counts_what_nvidia_smi_lists(three_gpus):
    assert visible_gpus() == 3  # MIG instances are part of their GPU's line, not GPUs


@pytest.mark.parametrize(("visible", "count"), [
    ("0,2", 2),
    ("1", 1),
    ("", 0),  # CUDA's "no GPU"
    ("-1", 0),
    ("0,-1,1", 1),  # CUDA stops at the first invalid entry
    ("GPU-11111111-2222-3333-4444-555555555555,2", 2),
    ("0,1,2,3,4", 3),  # more entries than GPUs
])
def test_cuda_visible_devices_cuts_the_count(three_gpus, monkeypatch, visible, count):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus() == count


def test_no_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without nvidia-smi
    monkeypatch.delenv("SDKD_FAKE_GPUS", raising=False)
    assert visible_gpus() == 0


def test_fake_gpus_are_counted(three_gpus, monkeypatch):
    monkeypatch.setenv("SDKD_FAKE_GPUS", "0,1")
    assert visible_gpus() == 2
    monkeypatch.setenv("SDKD_FAKE_GPUS", "")
    assert visible_gpus() == 0


# A job as Snakemake starts it (`sdkd --threads N <step>`), with the step replaced by one
# that reports the thread settings it runs under.
_REPORT_THREADS = """
import os, sys
import sdkd.cli as cli
assert "torch" not in sys.modules and "numpy" not in sys.modules, "imported too early"
def report(args):
    import torch
    print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS"),
          os.environ.get("OPENBLAS_NUM_THREADS"), torch.get_num_threads())
cli._cmd_check_config = report
sys.exit(cli.main(sys.argv[1:] + ["check-config"]))
"""


def _job_threads(*args: str, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", _REPORT_THREADS, *args],
                            env={**environment, **env}, cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=120)
    return result.stdout.split()


def test_a_job_sizes_its_thread_pools_before_torch_loads():
    """`sdkd --threads 3`: every pool has three threads, torch's included, and idle
    OpenMP threads sleep instead of spinning on a shared machine."""
    assert _job_threads("--threads", "3") == ["PASSIVE", "3", "3", "3"]


def test_a_job_keeps_the_users_wait_policy_and_overrides_inherited_pool_sizes():
    """A wait policy the user exported stays; an inherited OMP_NUM_THREADS (say 16, for
    another program) must not give a one-core job sixteen threads."""
    assert _job_threads("--threads", "1", OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="16") \
        == ["ACTIVE", "1", "1", "1"]


def _distill_threads(dry_run: str) -> set[str]:
    """The threads of every distill job in a dry run's listing."""
    return set(re.findall(r"rule distill:.*?threads: (\d+)", dry_run, re.S))


@pytest.mark.workflow
def test_the_gpu_profile_limits_gpu_jobs_to_the_gpus(tmp_path):
    """`--profile workflow/profiles/gpu`: the GPU limit is the number of GPUs, announced
    at start, and GPU jobs get the profile's threads. Through SNAKEMAKE_PROFILE (how
    `dvc repro` takes it) the same, and a `--resources gpu=N` given is kept."""
    work = copy_workflow(tmp_path / "work")
    # --cores 8 overrides the profile's `all`: a job's threads are capped at the cores,
    # and this machine may have two
    dry = ("-n", "--configfile", "config/smoke.yaml")
    result = snakemake(work, *dry, "--profile", "workflow/profiles/gpu", cores=8,
                       SDKD_FAKE_GPUS="0,1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sdkd: 3 GPU(s) visible and no gpu limit given" in result.stderr
    assert _distill_threads(result.stdout) == {"4"}

    limited = snakemake(work, *dry, "--resources", "gpu=1", cores=8, SDKD_FAKE_GPUS="0,1,2",
                        SNAKEMAKE_PROFILE="workflow/profiles/gpu")
    assert limited.returncode == 0, limited.stderr[-3000:]
    assert "GPU(s) visible" not in limited.stderr
    assert _distill_threads(limited.stdout) == {"4"}
