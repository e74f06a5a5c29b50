"""Lease one GPU for the length of a training job, with lock files.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once but does not say
*which* GPU each job gets. :func:`gpu_lease` makes jobs on one machine pick different
GPUs: each GPU has a lock file ``gpu-<id>.lock`` in a shared lock directory, and a job
holds an exclusive ``fcntl.flock`` on the file of the GPU it uses.

- ``<id>`` is the *physical* id: the ``CUDA_VISIBLE_DEVICES`` entry of the GPU when that
  variable is set (an index, or a ``GPU-…``/``MIG-…`` UUID), else the CUDA index. Inside
  the process the device is ``cuda:<position in the visible list>``; two processes with
  the same visible list therefore contend on the same files, whatever index they use.
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

log = logging.getLogger(__name__)

FAKE_GPUS_ENV = "SDKD_FAKE_GPUS"
LOCK_DIR_ENV = "SDKD_GPU_LOCK_DIR"
_WAIT_LOG_EVERY = 600.0  # seconds between "still waiting" messages


@dataclass(frozen=True)
class Lease:
    """A leased GPU (or the CPU).

    ``device`` is what to train on; ``gpu_id`` is the physical id whose lock is held
    (``None`` on the CPU); with fake GPUs ``device`` is the CPU and ``gpu_id`` is set.
    """

    device: torch.device
    gpu_id: str | None = None
    lock_path: Path | None = None


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "sdkd-gpu-locks")


def candidates(gpus: Sequence[str] | None = None) -> list[tuple[str, torch.device]]:
    """The GPUs a lease may take, in order, as (physical id, device) pairs.

    ``gpus`` restricts the choice to these physical ids (each must be visible).
    """
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        found = [(g.strip(), torch.device("cpu")) for g in fake.split(",") if g.strip()]
    else:
        count = torch.cuda.device_count()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        entries = [v.strip() for v in visible.split(",")] if visible is not None else []
        # CUDA stops at the first invalid entry, so the count bounds the list.
        ids = entries[:count] if visible is not None else [str(i) for i in range(count)]
        found = [(gpu, torch.device("cuda", i)) for i, gpu in enumerate(ids)]
    if gpus is None:
        return found
    by_id = dict(found)
    missing = [str(g) for g in gpus if str(g) not in by_id]
    if missing:
        raise SdkdError(
            f"gpus: {', '.join(missing)} not available "
            f"(visible: {', '.join(by_id) or 'none'})"
        )
    return [(str(g), by_id[str(g)]) for g in gpus]


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
        yield Lease(device, gpu, path)
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
