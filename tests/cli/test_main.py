"""``python -m edgemigrate.cli`` is the same command as ``python -m edgemigrate`` (run as real processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), check=False)


@pytest.mark.parametrize("module", ["edgemigrate.cli", "edgemigrate"])
def test_the_cli_runs_as_a_module_with_help(module: str) -> None:
    proc = _run(module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: edgemigrate ")
    for command in ("agent", "controller", "experiment", "migrate", "testbed"):
        assert f"\n  {command} " in proc.stdout


def test_both_module_entry_points_give_the_same_help_and_errors() -> None:
    assert _run("edgemigrate.cli", "--help").stdout == _run("edgemigrate", "--help").stdout
    bad = _run("edgemigrate.cli", "no-such-command")
    assert bad.returncode == 2 and "No such command" in bad.stderr and "Traceback" not in bad.stderr
