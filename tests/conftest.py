"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from sdkd.cli import main


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
