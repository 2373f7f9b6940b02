"""CLI: ``edgemigrate mu`` and the runner reject what they cannot run with a one-line error."""

from __future__ import annotations

import pytest

from edgemigrate.cli import main
from edgemigrate.mobileuser.__main__ import main as runner_main


def test_unknown_testbed_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mu", "--testbed", "tnothere", "--host", "client1", "--duration-s", "1"]) == 2
    err = capsys.readouterr().err
    assert "no testbed 'tnothere'" in err and "Traceback" not in err


def test_help_names_the_runner_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mu", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and "--coordinated" in out


def test_runner_rejects_a_bad_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        runner_main(["--testbed", "x", "--host", "client1", "--user", "mu1", "--service", "simple",
                     "--store", "sqlite://:memory:", "--endpoint", "10.0.0.1:0", "--log", "/dev/null",
                     "--duration-s", "1"])
    assert info.value.code == 2
    assert "--endpoint: port: expected 1..65535" in capsys.readouterr().err


def test_runner_unknown_testbed_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner_main(["--testbed", "tnothere", "--host", "client1", "--user", "mu1", "--service", "simple",
                        "--store", "sqlite://:memory:", "--endpoint", "10.0.0.1:7000", "--log", "/dev/null",
                        "--duration-s", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no testbed 'tnothere'") and "\n" not in err
