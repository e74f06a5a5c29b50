"""What the machine offers a job, known before torch or numpy is imported.

- :func:`visible_gpus` counts the GPUs this process may use without importing torch
  (the Snakefile asks at every start, where an import of torch would cost seconds):
  ``$SDKD_FAKE_GPUS`` when set (the tests' pretend GPUs, as :mod:`sdkd.train.lease`
  reads them), else the GPUs ``nvidia-smi -L`` lists, cut to ``$CUDA_VISIBLE_DEVICES``
  when that is set. No ``nvidia-smi`` (a CPU machine, or a GPU without NVIDIA's driver
  tools) counts as none: the jobs still lease GPUs one per job (:mod:`sdkd.train.lease`).
- :func:`limit_thread_pools` sizes the thread pools of the libraries a job loads (OpenMP
  under torch, BLAS under numpy) to the job's share of the cores and makes their idle
  threads sleep. It must run before those libraries are imported: they read the
  environment once, when they load.

Why threads sleep: OpenMP's worker threads spin for a while at every barrier by
default, waiting for the next parallel region. On an idle machine that saves a wake-up;
on a busy one (other jobs on the same cores, the normal case for a Snakemake run with
``--cores all``) the spinning threads take the cores the job's real work needs, and a
two-thread solve ran 5–10× slower (``benchmarks/solver.py``). ``OMP_WAIT_POLICY=PASSIVE``
makes them sleep at once; ``benchmarks/smoke_load.py`` measures the whole smoke DAG
idle and under load with and without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

FAKE_GPUS_ENV = "SDKD_FAKE_GPUS"  # read here and by sdkd.train.lease

# The thread pools a job's libraries start, each read from the environment at load time:
# OpenMP (torch's intra-op pool and numpy's OpenBLAS when built with OpenMP), MKL, and
# OpenBLAS's own pthreads pool.
THREAD_POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def visible_gpus() -> int:
    """How many GPUs this process may use (see the module docstring)."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        return len([g for g in fake.split(",") if g.strip()])
    installed = _nvidia_smi_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return installed
    # CUDA reads the list up to its first invalid entry ("", "-1", "NoDevFiles", ...).
    listed = 0
    for entry in (e.strip() for e in visible.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        listed += 1
    return min(listed, installed)


def _nvidia_smi_gpus() -> int:
    """The number of GPUs ``nvidia-smi -L`` lists (0 without it, or when it fails)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return 0
    try:
        listing = subprocess.run([program, "-L"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    # One "GPU <i>: <name> (UUID: ...)" line per GPU; its MIG instances follow, indented.
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def limit_thread_pools(threads: int | None) -> None:
    """Size the job's thread pools to ``threads`` and let idle threads sleep.

    ``OMP_WAIT_POLICY`` is set to ``PASSIVE`` unless the environment already chose a
    policy. With ``threads`` given (Snakemake passes the rule's ``{threads}``), every
    pool of :data:`THREAD_POOL_VARIABLES` gets that many threads, whatever the
    environment said: a job granted one core must not start a pool per core. Call it
    before importing torch or numpy; the caller sets torch's own counts after the import.
    """
    os.environ.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")
    if threads is not None:
        for variable in THREAD_POOL_VARIABLES:
            os.environ[variable] = str(threads)


__all__ = ["FAKE_GPUS_ENV", "THREAD_POOL_VARIABLES", "WAIT_POLICY_VARIABLE",
           "limit_thread_pools", "visible_gpus"]
