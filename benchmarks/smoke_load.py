"""Benchmark the smoke DAG on an idle and on a loaded machine, for two versions of the code.

    python benchmarks/smoke_load.py --before b82d29d              # that commit vs this tree
    python benchmarks/smoke_load.py --before b82d29d --repeats 3 --timeout 1800

Prints ONE JSON document on stdout (progress goes to stderr). Each run is the whole smoke
DAG from nothing (``snakemake --cores N --configfile config/smoke.yaml`` in a fresh
folder: simulation, preprocessing, teachers, students, evaluation, report), timed from
start to exit. Two conditions:

- ``idle``: nothing else runs (keep the machine quiet: ``host.loadavg_*`` are recorded
  before and after each run so a disturbed one can be seen);
- ``loaded``: ``--load`` CPU-bound processes (default: one per core), started by this
  script before the run and killed after it: the busy shared machine on which OpenMP's
  spinning threads made jobs collapse (:mod:`sdkd.hardware`).

Two versions: ``before`` is the commit given (extracted with ``git archive``), ``after``
this working tree. Each runs its own Snakefile and its own ``sdkd`` (``PYTHONPATH`` put
first), in the environment this script was started in minus any thread settings
(``OMP_*``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``), so that each version's own
choice is what is measured. Runs interleave (per repeat: idle then loaded, before then
after within each), so drift in the machine's speed hits both versions alike.

Figures: every run's wall time (and its seconds per rule, from Snakemake's benchmark
files: a rule's jobs summed, so with two cores they add up to more than the wall
time), the median per version and condition, each version's
``loaded / idle`` slowdown, and ``after / before`` per condition (medians measured in
this same invocation). A run past ``--timeout`` is killed and recorded as ``null`` with
``timed_out``; its medians then count it as the timeout (a lower bound).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from _host import loadavg, log

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ("Snakefile", "workflow", "config")
THREAD_SETTINGS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                   "OPENBLAS_NUM_THREADS", "OMP_PROC_BIND", "OMP_DYNAMIC")
SPIN = "while True: pass"


def extract(rev: str, dest: Path) -> Path:
    """The tree of commit ``rev`` in ``dest`` (its sdkd package and workflow)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy Python loops for the body of the ``with``."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.send_signal(signal.SIGKILL)
            spinner.wait()


def smoke_run(code: Path, scratch: Path, cores: int, timeout: float) -> dict[str, Any]:
    """One smoke DAG from nothing with the Snakefile and ``sdkd`` of ``code``."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    for name in WORKFLOW:
        source = code / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores),
           "--configfile", "config/smoke.yaml"]
    before = loadavg()
    t0 = time.monotonic()
    # its own session, so that a run past the timeout is killed with all its jobs
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        record: dict[str, Any] = {"wall_s": None, "timed_out": True}
    else:
        if proc.returncode != 0:
            raise RuntimeError(f"smoke DAG of {code} failed: {stderr[-2000:]}")
        record = {"wall_s": time.monotonic() - t0, "timed_out": False,
                  "rule_s": rule_seconds(work)}
    shutil.rmtree(work, ignore_errors=True)
    return record | {"loadavg_before": before, "loadavg_after": loadavg()}


def rule_seconds(work: Path) -> dict[str, float]:
    """Wall seconds per rule, summed over its jobs, from Snakemake's benchmark files
    (``<results>/benchmarks/<rule>/...tsv``, column ``s``): where the time went."""
    totals: dict[str, float] = {}
    for tsv in work.glob("results/**/benchmarks/*/**/*.tsv"):
        rule = tsv.relative_to(work).parts[tsv.relative_to(work).parts.index("benchmarks") + 1]
        with tsv.open() as fh:
            header, values = fh.readline().split("\t"), fh.readline().split("\t")
        totals[rule] = totals.get(rule, 0.0) + float(values[header.index("s")])
    for tsv in work.glob("results/**/benchmarks/*.tsv"):  # one job per rule: figures, report
        with tsv.open() as fh:
            header, values = fh.readline().split("\t"), fh.readline().split("\t")
        totals[tsv.stem] = totals.get(tsv.stem, 0.0) + float(values[header.index("s")])
    return dict(sorted(totals.items()))


def median_s(runs: list[dict[str, Any]], timeout: float) -> float:
    return statistics.median(r["wall_s"] if r["wall_s"] is not None else timeout for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="commit of the 'before' code")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="snakemake --cores (default: every core)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1,
                        help="busy processes of the loaded condition (default: one per core)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sdkd-smoke-load-") as tmp:
        scratch = Path(tmp)
        trees = {"before": extract(args.before, scratch / "before"), "after": ROOT}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            version: {"idle": [], "loaded": []} for version in trees}
        for repeat in range(args.repeats):
            for condition in ("idle", "loaded"):
                for version, code in trees.items():
                    log(f"repeat {repeat + 1}/{args.repeats}: {version}, {condition}")
                    load = cpu_load(args.load) if condition == "loaded" else nullcontext()
                    with load:
                        record = smoke_run(code, scratch, args.cores, args.timeout)
                    log(f"  {record['wall_s']} s")
                    runs[version][condition].append(record)

    medians = {version: {condition: median_s(records, args.timeout)
                         for condition, records in by_condition.items()}
               for version, by_condition in runs.items()}
    doc = {
        "benchmark": "smoke_load",
        "host": {"machine": platform.processor() or platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version()},
        "before": args.before,
        "after": _describe_tree(),
        "cores": args.cores, "load_processes": args.load, "repeats": args.repeats,
        "timeout_s": args.timeout,
        "runs": runs,
        "median_s": medians,
        "slowdown_loaded_over_idle": {v: m["loaded"] / m["idle"] for v, m in medians.items()},
        "after_over_before": {c: medians["after"][c] / medians["before"][c]
                              for c in ("idle", "loaded")},
    }
    print(json.dumps(doc, indent=2))


def _describe_tree() -> str:
    """This working tree as ``git describe`` names it (``-dirty`` when edited)."""
    result = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
