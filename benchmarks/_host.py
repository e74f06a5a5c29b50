"""What the benchmark scripts read from the host: progress lines, load, this process's
resident memory, and child processes that answer in JSON.

The scripts import this as a sibling module (Python puts a script's own folder first on
``sys.path``). It imports no torch: ``benchmarks/evaluate.py``'s child times the steps
of an evaluation, lazy imports included, so nothing it imports may pay for them first.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def log(msg: str) -> None:
    """A timestamped progress line on stderr (stdout is the JSON document)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), None where unknown."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def proc_status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``), None where unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _mib(kib: int | None) -> float | None:
    return kib / 1024 if kib is not None else None


@contextmanager
def rss_peak() -> Iterator[dict[str, Any]]:
    """How far the body raises this process's resident high-water mark, in MiB.

    The record (filled on exit) says which reading it used in ``source``: VmHWM of
    /proc/self/status, else ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux). VmHWM
    is preferred because Linux carries a *parent's* peak into a fork+exec'd child's
    ru_maxrss (signal->maxrss), so after the parent has run a large model every child's
    ru_maxrss is pinned at that peak and its increase reads 0; exec resets VmHWM. Either
    way the peak is the process's, so measure in a fresh process.
    """
    record: dict[str, Any] = {}
    base_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base_hwm, base_rss = proc_status_kib("VmHWM"), proc_status_kib("VmRSS")
    yield record
    peak_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_hwm = proc_status_kib("VmHWM")
    if base_hwm is not None and peak_hwm is not None:
        source, increase = "VmHWM", peak_hwm - base_hwm
    else:
        source, increase = "ru_maxrss", peak_ru - base_ru
    record.update(
        source=source,
        increase_mb=max(0, increase) / 1024,
        baseline_ru_maxrss_mb=_mib(base_ru),
        peak_ru_maxrss_mb=_mib(peak_ru),
        baseline_vmhwm_mb=_mib(base_hwm),
        peak_vmhwm_mb=_mib(peak_hwm),
        baseline_vmrss_mb=_mib(base_rss),
    )


def thread_env(threads: int) -> dict[str, str]:
    """Environment that gives a child's OpenMP and MKL pools ``threads`` threads."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_json(cmd: list[str], env: Mapping[str, str]) -> Any:
    """Run ``cmd`` with ``env`` added to this environment; the JSON of its last stdout line.

    The child's stderr (its progress lines) is passed on; a failure raises RuntimeError
    with the end of it.
    """
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env},
                          check=False)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[1]} child exited with {proc.returncode}: {proc.stderr[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
