"""Acquire a dataset's raw file: simulate it or download it (a user's own file is read
where it is, and only checked here).

Simulated data is written as the ``sdkd`` raw layout (see :mod:`sdkd.data.raw`):
``frames`` float32 (N, T, C, H, W) with the solver's parameters as attributes. All
initial conditions are drawn up front from one generator seeded from the config seed
and the dataset name, so the data do not depend on ``batch_size`` or the device order
of batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import sdkd
from sdkd.data import diffusion_reaction, navier_stokes
from sdkd.data.limits import DEFAULT_MAX_GIB, FLOAT32, h5_output, trajectory_chunks
from sdkd.data.sources import is_weatherbench, open_source
from sdkd.errors import SdkdError
from sdkd.train.lease import Lease, gpu_lease

log = logging.getLogger(__name__)


def dataset_seed(seed: int, name: str) -> int:
    """A stable per-dataset seed (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def resolve_device(choice: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise SdkdError("simulate.device is 'cuda' but no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def simulation_device(choice: str) -> contextlib.AbstractContextManager[Lease]:
    """Where to integrate, held for the simulation's length: ``cpu`` as is; ``auto`` and
    ``cuda`` lease a free GPU like a training job (:func:`sdkd.train.lease.gpu_lease`;
    ``auto`` falls back to the CPU without one), so a simulation never runs on a GPU
    that a training or evaluation job holds."""
    if choice == "cpu":
        return contextlib.nullcontext(Lease(torch.device("cpu")))
    resolve_device(choice)  # cuda without a GPU: the error, before any lock
    return gpu_lease()


def _navier_stokes(
    sim: Mapping[str, Any], generator: torch.Generator, device: torch.device
) -> tuple[Callable[[slice], torch.Tensor], dict[str, Any]]:
    """Initial vorticity on the solver grid and a batch solver returning (B, T, 1, H, W)."""
    n_solver = sim["solver_resolution"] or sim["resolution"]
    w0 = navier_stokes.gaussian_random_field(
        sim["n_trajectories"], n_solver, generator=generator, dtype=torch.float64
    )

    def solve(batch: slice) -> torch.Tensor:
        w = navier_stokes.simulate(
            w0[batch].to(device, torch.float32),
            viscosity=sim["viscosity"],
            t_end=sim["t_end"],
            n_records=sim["n_records"],
            forcing=None if sim["forcing"] == "none" else sim["forcing"],
            dt=sim["dt"],
            cfl=sim["cfl"],
        )
        return navier_stokes.downsample(w, sim["resolution"])[:, :, None]

    attrs = {
        "channels": ["vorticity"],
        "dt": sim["t_end"] / sim["n_records"],
        "dx": 1.0 / sim["resolution"],
        "times": np.arange(1, sim["n_records"] + 1) * sim["t_end"] / sim["n_records"],
        "solver_resolution": n_solver,
    }
    return solve, attrs


def _diffusion_reaction(
    sim: Mapping[str, Any], generator: torch.Generator, device: torch.device
) -> tuple[Callable[[slice], torch.Tensor], dict[str, Any]]:
    """PDEBench-style noise initial states and a batch solver returning (B, T, 2, H, W)."""
    u0, v0 = diffusion_reaction.random_initial_condition(
        sim["n_trajectories"], sim["resolution"], generator=generator, dtype=torch.float64
    )

    def solve(batch: slice) -> torch.Tensor:
        return diffusion_reaction.simulate(
            u0[batch].to(device, torch.float32),
            v0[batch].to(device, torch.float32),
            t_end=sim["t_end"],
            n_frames=sim["n_frames"],
            du=sim["du"],
            dv=sim["dv"],
            k=sim["k"],
        )

    attrs = {
        "channels": ["u", "v"],
        "dt": sim["t_end"] / (sim["n_frames"] - 1),
        "dx": 2.0 / sim["resolution"],
        "times": np.linspace(0.0, sim["t_end"], sim["n_frames"]),
    }
    return solve, attrs


SOLVERS = {"navier_stokes": _navier_stokes, "diffusion_reaction": _diffusion_reaction}


def simulate(sim: Mapping[str, Any], out: Path, *, seed: int) -> Path:
    """Integrate ``sim['n_trajectories']`` trajectories in batches into ``out``."""
    with simulation_device(sim["device"]) as lease:
        return _simulate(sim, out, seed=seed, device=lease.device)


def _simulate(sim: Mapping[str, Any], out: Path, *, seed: int, device: torch.device) -> Path:
    """:func:`simulate` on a device already chosen (and leased)."""
    generator = torch.Generator().manual_seed(seed)
    solve, attrs = SOLVERS[sim["equation"]](sim, generator, device)
    n, batch_size = sim["n_trajectories"], sim["batch_size"]
    shape = (n, len(attrs["times"]), len(attrs["channels"]), sim["resolution"], sim["resolution"])
    log.info("simulate %s: %d trajectories on %s", sim["equation"], n, device)
    with h5_output(out, math.prod(shape) * FLOAT32) as f:
        frames = f.create_dataset(
            "frames", shape=shape, dtype=np.float32, chunks=trajectory_chunks(shape)
        )
        for start in tqdm(range(0, n, batch_size), desc=f"simulate {sim['equation']}",
                          unit="batch"):
            frames[start : start + batch_size] = solve(
                slice(start, start + batch_size)
            ).float().cpu().numpy()
        frames.attrs.update({k: v for k, v in attrs.items() if k != "times"})
        f["times"] = attrs["times"]
        f.attrs.update(
            {
                "equation": sim["equation"],
                "parameters": repr(dict(sim)),
                "seed": seed,
                "device": str(device),
                "created_with": f"sdkd {sdkd.__version__}, torch {torch.__version__}",
            }
        )
    return out


def acquire(
    dataset: Mapping[str, Any],
    out: str | Path | None,
    *,
    name: str,
    seed: int,
    max_gib: float = DEFAULT_MAX_GIB,
) -> Path | None:
    """Write the raw file of dataset ``name`` to ``out``, whatever its source.

    A ``file`` source is read where it is, so nothing is written: its files are only
    checked to read as declared (``out`` must be None), and None is returned.
    ``max_gib`` (``limits.max_array_gib``) bounds one trajectory that is read or fetched.
    """
    source = dataset["source"]
    if source == "file":
        if out is not None:
            raise SdkdError(
                f"{out}: dataset {name} reads {dataset['file']['path']} where it is, so "
                "acquire writes nothing; leave --out out"
            )
        with open_source(dataset, None, max_gib=max_gib) as raw:
            log.info("file %s: %s %s, read in place by preprocess", dataset["file"]["path"],
                     raw.variable, raw.shape)
        return None
    if out is None:
        raise SdkdError(f"dataset {name}: give --out, the raw file to write")
    out = Path(out)
    if source == "simulate":
        return simulate(dataset["simulate"], out, seed=dataset_seed(seed, name))
    if is_weatherbench(dataset):
        from sdkd.data.weatherbench import fetch_weatherbench

        return fetch_weatherbench(dataset["download"], out, max_gib=max_gib)
    from sdkd.data.download import fetch, resolve

    remote = resolve(dataset["download"])
    return fetch(remote.url, remote.known_hash, out)
