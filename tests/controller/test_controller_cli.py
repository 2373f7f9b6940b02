"""``edgemigrate controller``: its help, and one-line errors for bad input before anything starts."""

from __future__ import annotations

import pytest

from edgemigrate.cli import main


def test_help_lists_the_options(capsys) -> None:
    assert main(["controller", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--store", "--pki", "--listen", "--planner", "--rtt", "--interval-s"):
        assert opt in out


@pytest.mark.parametrize(("args", "says"), [
    (["--planner", "bogus"], "unknown planner 'bogus'"),
    (["--listen", "nowhere"], "expected IP:PORT"),
    (["--rtt", "bs1-edge1=1"], "expected BS:HOST=SECONDS"),
    (["--rtt", "bs1:edge1=-2"], "expected BS:HOST=SECONDS"),
])
def test_bad_options_are_one_line_errors(args, says, tmp_path, capsys) -> None:
    code = main(["controller", "--store", f"sqlite:///{tmp_path}/s.db", "--pki", str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and "\n" not in err and "Traceback" not in err, err


def test_bad_store_url_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["controller", "--store", "mysql://x", "--pki", str(tmp_path), "--planner", "nearest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgemigrate: error:") and "\n" not in err, err
