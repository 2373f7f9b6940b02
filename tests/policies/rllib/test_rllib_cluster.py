"""``--ray ADDRESS``: a malformed or unreachable address is a one-line error, within a bounded wait."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgemigrate.cli import main
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.policies.rllib.cluster import init_ray, parse_address, probe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


@pytest.mark.parametrize("bad", ["localhost", "host:", ":6379", "host:99999", "host:abc"])
def test_malformed_address(bad: str) -> None:
    with pytest.raises(EdgeMigrateError, match="expected HOST:PORT"):
        parse_address(bad)


def test_unreachable_address_names_it() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(EdgeMigrateError) as e:
        probe(address, timeout_s=2.0)
    assert address in str(e.value) and "no Ray head reachable" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EdgeMigrateError, match="no Ray head reachable"):
        init_ray(address, connect_timeout_s=2.0)  # before ray.init: nothing is started


def test_cli_unreachable_ray_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    rc = main(["experiment", "mobilekube", "train", "--algo", "impala", "--timesteps", "100", "--ray", address,
               "--out", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and address in err and err.startswith("edgemigrate: error:")
    assert not (tmp_path / "results").exists()  # checked before any results folder is made
