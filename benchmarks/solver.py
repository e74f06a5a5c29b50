"""Speed and accuracy benchmark of the Navier–Stokes solver (sdkd.data.navier_stokes).

Solves the FNO setting (64×64, ν = 1e-3, FNO forcing, GRF initial conditions, t_end = 20,
20 records) for a batch of trajectories and prints one JSON object per device with

* seconds per trajectory (median and minimum over ``--repeats`` timed runs, after a warm-up),
* the relative L2 error ‖w − w_ref‖/‖w_ref‖ over all records of the first ``--ref-batch``
  trajectories, where w_ref is the same solver in float64 with a CFL number ``--ref-factor``
  times smaller (so a step that much smaller).

Run ``python benchmarks/solver.py`` (well under a minute on two idle cores); it benchmarks the
CPU and then CUDA when available (``--device cpu`` or ``--device cuda`` picks one).

On a machine shared with other jobs, OpenMP worker threads that spin-wait make multi-threaded
wall times swing by 5–10×; ``OMP_WAIT_POLICY=PASSIVE`` in the environment avoids that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from _timing import sync

from sdkd.data.navier_stokes import DEFAULT_CFL, gaussian_random_field, simulate

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def bench_device(args: argparse.Namespace, device: torch.device) -> dict:
    dtype = DTYPES[args.dtype]
    w0 = gaussian_random_field(
        args.batch, args.n, generator=torch.Generator().manual_seed(args.seed), dtype=dtype
    ).to(device)
    common = {
        "viscosity": args.viscosity,
        "t_end": args.t_end,
        "n_records": args.n_records,
        "forcing": "fno",
    }

    # Warm-up: first FFT plans, allocator and (on CUDA) kernel loading.
    simulate(w0, **common | {"t_end": args.t_end / args.n_records, "n_records": 1})
    sync(device)

    times, cpu_times = [], []
    steps: list[int] = []
    for _ in range(args.repeats):
        steps.clear()
        start, cpu_start = time.perf_counter(), time.process_time()
        out = simulate(w0, **common, cfl=args.cfl, step_log=steps)
        sync(device)
        times.append((time.perf_counter() - start) / args.batch)
        cpu_times.append((time.process_time() - cpu_start) / args.batch)

    n_ref = min(args.ref_batch, args.batch)
    ref = simulate(w0[:n_ref].double(), **common, cfl=args.cfl / args.ref_factor)
    err = float((out[:n_ref].double() - ref).norm() / ref.norm())

    return {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
        "load_average_1min": os.getloadavg()[0] if device.type == "cpu" else None,
        "batch": args.batch,
        "grid": args.n,
        "dtype": args.dtype,
        "viscosity": args.viscosity,
        "t_end": args.t_end,
        "n_records": args.n_records,
        "cfl": args.cfl,
        "steps": sum(steps),
        "seconds_per_trajectory_median": statistics.median(times),
        "seconds_per_trajectory_min": min(times),
        "seconds_per_trajectory_all": times,
        # Process CPU time (all threads). On a machine shared with other jobs wall time swings
        # widely, while with one thread this stays close to the time on an idle core.
        "cpu_seconds_per_trajectory_median": statistics.median(cpu_times),
        "rel_l2_error": err,
        "reference": {
            "trajectories": n_ref,
            "dtype": "float64",
            "cfl": args.cfl / args.ref_factor,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="trajectories solved together")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="'all' (default) = CPU, then CUDA when available",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--cfl", type=float, default=DEFAULT_CFL)
    parser.add_argument("--n", type=int, default=64, help="grid points per side")
    parser.add_argument("--viscosity", type=float, default=1e-3)
    parser.add_argument("--t-end", type=float, default=20.0)
    parser.add_argument("--n-records", type=int, default=20)
    parser.add_argument("--ref-factor", type=float, default=8.0, help="reference CFL divisor")
    parser.add_argument("--ref-batch", type=int, default=4, help="trajectories checked")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("--device cuda: no CUDA device available")
    for device in devices:
        print(json.dumps(bench_device(args, device)), flush=True)


if __name__ == "__main__":
    main()
