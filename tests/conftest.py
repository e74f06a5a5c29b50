"""Shared fixtures."""

from __future__ import annotations

import pytest

from sdkd.cli import main


@pytest.fixture
def sdkd_cli(capsys):
    """Run ``sdkd ARGS`` in-process; returns (exit status, stderr)."""

    def run(*args: object) -> tuple[int, str]:
        status = main([str(a) for a in args])
        return status, capsys.readouterr().err

    return run
