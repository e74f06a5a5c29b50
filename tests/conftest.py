"""Shared fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from snakerun import copy_workflow, snakemake

from sdkd.cli import main


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``, pyproject.toml): one worker per test file,
    so that module-scoped fixtures are built once, and every test that reads the smoke
    run on one worker, so that the session-scoped ``smoke_run`` (minutes) is built once,
    not once per worker that needs it.

    The groups are then handed out in collection order (``--no-loadscope-reorder``), so
    the long ones go first: the smoke group, then every group with a `workflow` test
    (Snakemake, DVC, chromium). The many quick files fill in behind them, and no worker
    starts a long group while the other has nothing left: ordered by their number of
    tests (xdist's default), the smoke group started late and ran alone for minutes.

    First among the hooks: xdist's own reads the ``xdist_group`` marks to name each
    test's group, and marks added after it are ignored. (It names the group in the
    test's id, which pytest 9 no longer reads: the `test` extra keeps pytest below 9,
    or every test goes wherever a worker is free and both workers build the smoke
    run.)"""
    groups: dict[pytest.Item, str] = {}
    for item in items:
        reads_smoke = "smoke_run" in getattr(item, "fixturenames", ())
        groups[item] = "smoke" if reads_smoke else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    slow = {groups[item] for item in items if item.get_closest_marker("workflow")}
    items.sort(key=lambda item: (groups[item] != "smoke", groups[item] not in slow))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """In-process torch work on one thread.

    The tests' tensors are tiny, and on a 2-core machine shared with the pipeline's
    subprocesses two OpenMP threads mostly wait on each other (up to 10× slower).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sdkd_cli(capsys):
    """Run ``sdkd ARGS`` in-process; returns (exit status, stderr)."""

    def run(*args: object) -> tuple[int, str]:
        status = main([str(a) for a in args])
        return status, capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A folder where the whole smoke DAG has run, once per test session: its files
    lie in the smoke experiment's folders, ``snakerun.SMOKE_RESULTS``
    (results/experiments/smoke) and resources/shared/.

    Tests may read it, never change it: a test that reruns or edits works on
    ``copy_of_smoke``.
    """
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    # cores to spare, so only the gpu resource keeps training jobs apart
    result = snakemake(work, "--configfile", "config/smoke.yaml", "--resources", "gpu=1",
                       cores=4)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


@pytest.fixture
def copy_of_smoke(smoke_run, tmp_path) -> Path:
    """A private copy of ``smoke_run``; copy2 keeps the file times Snakemake compares."""
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, symlinks=True)
    return work
