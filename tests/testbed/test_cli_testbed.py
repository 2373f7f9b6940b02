"""CLI: doctor prints a table; testbed errors are one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.cli import main


def test_doctor_reports_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for item in ("python", "kernel", "root", "criu", "runc", "podman", "redis-server", "netem", "tbf", "bbr", "tun"):
        assert any(line.startswith(item) for line in out.splitlines()), item


def test_bad_scenario_key_is_one_line_with_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.toml"
    p.write_text("[testbed]\nedge = 2\n")
    assert main(["testbed", "up", "--scenario", str(p), "--name", "tcli"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "s.toml: testbed: unknown key 'edge' (did you mean 'edges'?)" in err


def test_unknown_testbed_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testbed", "down", "--name", "tnothere"]) == 2
    err = capsys.readouterr().err
    assert "no testbed 'tnothere'" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["doctor", "--help"], ["testbed", "--help"], ["testbed", "up", "--help"],
                                  ["testbed", "down", "--help"], ["testbed", "status", "--help"]])
def test_help(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    assert "Usage:" in capsys.readouterr().out
