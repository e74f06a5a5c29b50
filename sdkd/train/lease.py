"""Lease one GPU for the length of a job (training, evaluation, simulation), with lock files.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once but does not say
*which* GPU each job gets. :func:`gpu_lease` makes jobs on one machine pick different
GPUs: each GPU has a lock file ``gpu-<key>.lock`` in a shared lock directory, and a job
holds an exclusive ``fcntl.flock`` on the file of the GPU it uses.

- ``<key>`` names the *physical* GPU: ``GPU-<uuid>``, the UUID CUDA reports for it
  (``torch.cuda.get_device_properties(i).uuid``, the form ``nvidia-smi -L`` prints).
  Why the UUID and not the ``CUDA_VISIBLE_DEVICES`` entry: under SLURM with
  cgroup-confined devices every job sees its one GPU as ``0``, so with a lock directory
  shared by a node's jobs (the default, in ``/tmp``) keying by the entry would make all
  jobs of the node queue on ``gpu-0.lock`` while their own GPUs sit idle; the UUID is
  the same GPU's in every process, whatever it is called there. Locking is kept (rather
  than skipped when a scheduler isolates devices) because ``snakemake --resources gpu=N``
  on a workstation has no scheduler to do it; under SLURM the lease of a job's only GPU
  is free at once. When torch reports no UUID (older torch, fake GPUs) the key falls
  back to the ``CUDA_VISIBLE_DEVICES`` entry (an index, or a ``GPU-…``/``MIG-…`` UUID),
  else the CUDA index. Inside the process the device is ``cuda:<position in the visible
  list>``.
- ``gpus`` (of :func:`candidates` and :func:`gpu_lease`) may name a GPU by its key or by
  its ``CUDA_VISIBLE_DEVICES`` entry (index).
- While the lease is held the leased GPU is the process's current CUDA device
  (``torch.cuda.set_device``), so calls without an index (a DataLoader's pin-memory
  thread, ``torch.cuda.synchronize()``, ``.cuda()``) do not create a context on GPU 0 of
  a multi-GPU node; the previous current device is restored on release.
- The first free GPU (in visible order) is taken. When all are held the lease waits,
  polling every ``poll`` seconds, until one frees or ``timeout`` seconds pass
  (:class:`SdkdError`); ``timeout=None`` waits as long as it takes.
- The kernel drops a ``flock`` when its holder exits for any reason, SIGKILL included,
  so a crashed job never leaves its GPU blocked. Lock files are never deleted (deleting
  a lock file races with processes that have it open); the holder's pid, host and start
  time are written into it for humans and cleared on release.
- No GPU → the lease is the CPU and nothing is locked.
- ``SDKD_FAKE_GPUS="0,1"`` pretends these GPUs exist (tests and CI have none): they are
  leased through lock files exactly like real ones, but the device is the CPU;
  :attr:`Lease.gpu_id` says which fake GPU was leased. ``SDKD_FAKE_GPUS=""`` means no GPUs.

The lock directory is ``lock_dir``, else ``$SDKD_GPU_LOCK_DIR``, else
``<tempdir>/sdkd-gpu-locks``; it must be on a local file system shared by the jobs of
one machine (``flock`` over NFS is unreliable), which the default is.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sdkd.errors import SdkdError
from sdkd.hardware import FAKE_GPUS_ENV

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "SDKD_GPU_LOCK_DIR"
_WAIT_LOG_EVERY = 600.0  # seconds between "still waiting" messages


@dataclass(frozen=True)
class Lease:
    """A leased GPU (or the CPU).

    ``device`` is what to run on; ``gpu_id`` is the key of the GPU whose lock is held
    (``GPU-<uuid>``, see the module docstring; ``None`` on the CPU); with fake GPUs
    ``device`` is the CPU and ``gpu_id`` is set.
    """

    device: torch.device
    gpu_id: str | None = None
    lock_path: Path | None = None


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "sdkd-gpu-locks")


def candidates(gpus: Sequence[str] | None = None) -> list[tuple[str, torch.device]]:
    """The GPUs a lease may take, in order, as (lock key, device) pairs.

    ``gpus`` restricts the choice to these GPUs, each named by its key or its
    ``CUDA_VISIBLE_DEVICES`` entry (each must be visible).
    """
    if gpus is not None and not gpus:  # the CPU asked for: touch no CUDA device
        return []
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        entries = [g.strip() for g in fake.split(",") if g.strip()]
        found = [(g, g, torch.device("cpu")) for g in entries]
    else:
        count = torch.cuda.device_count()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        listed = [v.strip() for v in visible.split(",")] if visible is not None else []
        # CUDA stops at the first invalid entry, so the count bounds the list.
        entries = listed[:count] if visible is not None else [str(i) for i in range(count)]
        found = [(_uuid_key(i) or entry, entry, torch.device("cuda", i))
                 for i, entry in enumerate(entries)]
    if gpus is None:
        return [(key, device) for key, _, device in found]
    by_name = {name: (key, device) for key, entry, device in found for name in (key, entry)}
    missing = [str(g) for g in gpus if str(g) not in by_name]
    if missing:
        raise SdkdError(
            f"gpus: {', '.join(missing)} not available "
            f"(visible: {', '.join(key for key, _, _ in found) or 'none'})"
        )
    return [by_name[str(g)] for g in gpus]


def _uuid_key(index: int) -> str | None:
    """``GPU-<uuid>`` of visible CUDA device ``index``; None when torch does not say."""
    try:
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except (RuntimeError, AssertionError, AttributeError):  # no driver, older torch
        return None
    if uuid is None or not str(uuid):
        return None
    text = str(uuid)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


@contextlib.contextmanager
def gpu_lease(
    *,
    gpus: Sequence[str] | None = None,
    lock_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
) -> Iterator[Lease]:
    """Hold one free GPU (or the CPU when there is none) for the body of the ``with``::

        with gpu_lease() as lease:
            result = fit(model, ..., device=lease.device)
    """
    choices = candidates(gpus)
    if not choices:
        yield Lease(torch.device("cpu"))
        return
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    _make_lock_dir(directory)

    gpu, device, path, fd = _acquire(choices, directory, timeout, poll)
    try:
        _write_holder(fd)
        log.info("leased GPU %s as %s (lock %s)", gpu, device, path)
        with _current_device(device):
            yield Lease(device, gpu, path)
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def _current_device(device: torch.device) -> Iterator[None]:
    """Make a CUDA ``device`` the current one for the body; restore the previous after."""
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.current_device()
    torch.cuda.set_device(device)
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):  # a failed device must not hide the error
            torch.cuda.set_device(previous)


def _acquire(
    choices: list[tuple[str, torch.device]], directory: Path, timeout: float | None, poll: float
) -> tuple[str, torch.device, Path, int]:
    """Lock the first free GPU of ``choices``, waiting until one frees or ``timeout``."""
    start = time.monotonic()
    next_note = start
    while True:
        for gpu, device in choices:
            path = directory / f"gpu-{_safe(gpu)}.lock"
            fd = _try_lock(path)
            if fd is not None:
                return gpu, device, path, fd
        now = time.monotonic()
        if timeout is not None and now - start >= timeout:
            raise SdkdError(
                f"GPU lease: all GPUs busy ({', '.join(g for g, _ in choices)}) for "
                f"{now - start:.1f}s (timeout {timeout:g}s); lock files in {directory}: "
                + "; ".join(_holder(directory / f"gpu-{_safe(g)}.lock") for g, _ in choices)
            )
        if now >= next_note:
            log.info("waiting for a free GPU (%s busy; locks in %s)",
                     ", ".join(g for g, _ in choices), directory)
            next_note += _WAIT_LOG_EVERY
        time.sleep(poll if timeout is None else min(poll, max(0.0, start + timeout - now)))


def _safe(gpu: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", gpu)


def _make_lock_dir(directory: Path) -> None:
    """Create the lock directory; when we create it, make it shared like /tmp (1777)."""
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise SdkdError(f"GPU lock directory {directory}: cannot create it ({exc})") from None
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o1777)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another holder has it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # created by another user without write access for us
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise SdkdError(f"GPU lock file {path}: cannot open it ({exc})") from None
    except OSError as exc:
        raise SdkdError(f"GPU lock file {path}: cannot open it ({exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise SdkdError(f"GPU lock file {path}: cannot lock it ({exc})") from None
    return fd


def _write_holder(fd: int) -> None:
    """Write who holds the lock into the file (for humans); skipped when read-only."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    text = f"pid={os.getpid()} host={socket.gethostname()} since={stamp}\n".encode()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f"{path.name}: {text or 'holder unknown'}"
