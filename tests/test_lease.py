"""GPU leases: parallel jobs get different GPUs, wait for a free one, outlive a killed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sdkd.errors import SdkdError
from sdkd.train import lease as lease_module
from sdkd.train.lease import gpu_lease

# A job: lease a GPU, write "<gpu id> <device type>" to OUT, hold it until RELEASE exists.
JOB = r"""
import sys, time, pathlib
from sdkd.errors import SdkdError
from sdkd.train.lease import gpu_lease
out, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
timeout = None if sys.argv[3] == "none" else float(sys.argv[3])
out.with_suffix(".started").touch()
try:
    with gpu_lease(timeout=timeout, poll=0.05) as lease:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(f"{lease.gpu_id} {lease.device.type}")
        tmp.replace(out)
        while not release.exists():
            time.sleep(0.02)
except SdkdError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Two fake GPUs "0" and "1" with locks in a fresh directory, here and in child jobs."""
    monkeypatch.setenv("SDKD_FAKE_GPUS", "0,1")
    monkeypatch.setenv("SDKD_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


class Job:
    def __init__(self, directory: Path, name: str, timeout: str = "none"):
        self.out = directory / f"{name}.out"
        self.release = directory / f"{name}.release"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", JOB, str(self.out), str(self.release), timeout],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )

    def leased(self, within: float = 60.0) -> str:
        """The "<gpu id> <device type>" this job leased (waits for it)."""
        _wait_for(self.out, within, self.proc)
        return self.out.read_text()

    def finish(self) -> int:
        self.release.touch()
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode


def _wait_for(path: Path, within: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"job exited with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {within}s")
        time.sleep(0.02)


def test_jobs_get_different_gpus_wait_for_one_and_outlive_a_killed_holder(tmp_path, fake_gpus):
    jobs = [Job(tmp_path, name, timeout="60") for name in "abc"]  # 3 jobs, 2 GPUs
    deadline = time.monotonic() + 60
    while sum(job.out.exists() for job in jobs) < 2:
        assert time.monotonic() < deadline, "two jobs should have leased a GPU"
        time.sleep(0.02)
    holders = [job for job in jobs if job.out.exists()]
    (waiter,) = [job for job in jobs if not job.out.exists()]
    assert {job.leased() for job in holders} == {"0 cpu", "1 cpu"}
    assert sorted(p.name for p in fake_gpus.iterdir()) == ["gpu-0.lock", "gpu-1.lock"]
    assert f"pid={holders[0].proc.pid} " in "".join(p.read_text() for p in fake_gpus.iterdir())

    _wait_for(waiter.out.with_suffix(".started"), 60, waiter.proc)
    time.sleep(0.5)
    assert not waiter.out.exists(), "the third job must wait while both GPUs are held"

    # Meanwhile a job with a short timeout gives up with a clear message.
    busy = r"all GPUs busy \(0, 1\).*timeout 0\.2s.*gpu-0\.lock: pid="
    with pytest.raises(SdkdError, match=busy), gpu_lease(timeout=0.2, poll=0.05):
        pass

    freed = holders[0].leased()
    assert holders[0].finish() == 0
    assert waiter.leased() == freed
    assert waiter.finish() == 0

    # A holder killed with SIGKILL cannot clean up; the kernel drops its lock anyway.
    killed = holders[1].leased()
    os.kill(holders[1].proc.pid, signal.SIGKILL)
    holders[1].proc.wait(timeout=30)
    with gpu_lease(gpus=[killed.split()[0]], timeout=10, poll=0.05) as lease:
        assert f"{lease.gpu_id} {lease.device.type}" == killed
        assert lease.lock_path.read_text().startswith(f"pid={os.getpid()} ")
    assert lease.lock_path.read_text() == ""  # cleared on release


def test_leases_in_one_process_also_differ(fake_gpus):
    with gpu_lease(timeout=0) as first, gpu_lease(timeout=0) as second:
        assert {first.gpu_id, second.gpu_id} == {"0", "1"}
        assert first.device == second.device == torch.device("cpu")
    with gpu_lease(gpus=["1"], timeout=0) as only:
        assert only.gpu_id == "1"
    with pytest.raises(SdkdError, match="gpus: 7 not available"), gpu_lease(gpus=["7"]):
        pass


def test_no_gpu_means_cpu_and_no_locks(tmp_path, monkeypatch):
    monkeypatch.delenv("SDKD_FAKE_GPUS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    locks = tmp_path / "locks"
    with gpu_lease(lock_dir=locks) as lease:
        assert lease.device == torch.device("cpu") and lease.gpu_id is None
    monkeypatch.setenv("SDKD_FAKE_GPUS", "")
    with gpu_lease(lock_dir=locks) as lease:
        assert lease.device == torch.device("cpu") and lease.gpu_id is None
    assert not locks.exists()


@pytest.fixture
def two_cuda_gpus(monkeypatch):
    """torch.cuda patched to show two GPUs (this machine has none); returns a recorder of
    ``set_device`` calls and a dict index → UUID that a test may change."""
    monkeypatch.delenv("SDKD_FAKE_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    uuids = {0: uuid.UUID(int=0xA0), 1: uuid.UUID(int=0xB1)}
    current = [0]
    calls: list[torch.device] = []

    def set_device(device):
        device = torch.device("cuda", device) if isinstance(device, int) else device
        calls.append(device)
        current[0] = device.index

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(uuid=uuids[i], name="Fake GPU"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    return calls, uuids


def test_locks_are_keyed_by_gpu_uuid(tmp_path, monkeypatch, two_cuda_gpus):
    """With CUDA_VISIBLE_DEVICES=3,5 the process sees cuda:0 and cuda:1 and locks the files
    of their UUIDs; each may also be asked for by its visible entry."""
    _, uuids = two_cuda_gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    keys = [f"GPU-{uuids[0]}", f"GPU-{uuids[1]}"]
    assert lease_module.candidates() == [(keys[0], torch.device("cuda", 0)),
                                         (keys[1], torch.device("cuda", 1))]
    assert lease_module.candidates(["5"]) == [(keys[1], torch.device("cuda", 1))]
    locks = tmp_path / "locks"
    with (
        gpu_lease(lock_dir=locks, timeout=0) as first,
        gpu_lease(lock_dir=locks, timeout=0) as second,
    ):
        assert (first.gpu_id, first.device) == (keys[0], torch.device("cuda", 0))
        assert (second.gpu_id, second.device) == (keys[1], torch.device("cuda", 1))
        assert first.lock_path == locks / f"gpu-{keys[0]}.lock"


def test_cgroup_confined_jobs_that_all_see_device_0_do_not_queue(tmp_path, monkeypatch,
                                                                  two_cuda_gpus):
    """Under SLURM with confined devices each job sees its own GPU as ``0``: two jobs on
    one node, sharing the lock directory, must not wait for each other."""
    _, uuids = two_cuda_gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    locks = tmp_path / "locks"
    with gpu_lease(lock_dir=locks, timeout=0) as job_a:
        uuids[0] = uuid.UUID(int=0xC2)  # the other job's process: another GPU, also "0"
        with gpu_lease(lock_dir=locks, timeout=0) as job_b:
            assert job_a.device == job_b.device == torch.device("cuda", 0)
            assert job_a.lock_path != job_b.lock_path


def test_lock_key_falls_back_to_the_visible_entry_without_a_uuid(tmp_path, monkeypatch,
                                                                  two_cuda_gpus):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(name="old torch"))
    assert [g for g, _ in lease_module.candidates()] == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [g for g, _ in lease_module.candidates()] == ["0", "1"]


def test_asking_for_the_cpu_touches_no_cuda_device(tmp_path, monkeypatch, two_cuda_gpus):
    def no_cuda(i):
        raise AssertionError("a CPU job queried a GPU (and initialised CUDA)")

    monkeypatch.setattr(torch.cuda, "get_device_properties", no_cuda)
    with gpu_lease(gpus=[], lock_dir=tmp_path / "locks") as lease:
        assert lease.device == torch.device("cpu") and lease.gpu_id is None
    assert two_cuda_gpus[0] == []  # no set_device either


def test_the_leased_gpu_is_the_current_device_while_held(tmp_path, two_cuda_gpus):
    calls, _ = two_cuda_gpus
    with gpu_lease(lock_dir=tmp_path / "locks", gpus=["1"], timeout=0) as lease:
        assert calls == [torch.device("cuda", 1)]
        assert torch.cuda.current_device() == 1
        assert lease.device == torch.device("cuda", 1)
    assert calls[-1] == torch.device("cuda", 0)  # the previous one, restored
    assert torch.cuda.current_device() == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_gpu_lease_sets_the_device_and_keys_by_uuid(tmp_path):
    with gpu_lease(lock_dir=tmp_path / "locks", timeout=0) as lease:
        assert lease.device.type == "cuda"
        assert torch.cuda.current_device() == lease.device.index
        assert lease.gpu_id.startswith(("GPU-", "MIG-")), lease.gpu_id
        assert torch.empty(1, device="cuda").device == lease.device  # no index → leased one
