"""The frozen window's helper processes run at a raised priority (root), and as given otherwise."""

from __future__ import annotations

import os
import subprocess

import pytest

from edgemigrate.engine.checkpoint import priority
from edgemigrate.engine.checkpoint.priority import CRITICAL_NICE, critical


def _nice_of(argv: list[str]) -> int:
    """The niceness the command ran at, as the kernel reports it (field 19 of /proc/self/stat)."""
    stat = subprocess.run(critical(argv), capture_output=True, text=True, check=True).stdout
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_a_critical_command_and_its_children_run_at_the_raised_priority() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may raise a priority")
    assert _nice_of(["cat", "/proc/self/stat"]) == CRITICAL_NICE
    assert _nice_of(["sh", "-c", "cat /proc/self/stat"]) == CRITICAL_NICE  # what runc starts (CRIU) inherits


def test_without_the_right_to_raise_it_the_command_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority.os, "geteuid", lambda: 1000)
    assert critical(["runc", "list"]) == ["runc", "list"]
