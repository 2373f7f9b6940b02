"""Health checks and peer addresses (no root: a local socket stands in for the service)."""

from __future__ import annotations

import socket

import pytest

from edgemigrate.control.health import parse_addr, wait_healthy
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.engine.checkpoint.runtime import ContainerState


class _Runtime:
    def __init__(self, state: ContainerState) -> None:
        self.st = state

    def state(self, container_id: str) -> ContainerState:
        return self.st


def test_parse_addr() -> None:
    assert parse_addr("10.0.0.1:7400") == ("10.0.0.1", 7400)
    with pytest.raises(ConfigError, match="IP:PORT"):
        parse_addr("10.0.0.1")


def test_a_running_container_that_accepts_connections_is_healthy() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        spec = ServiceSpec("web", ServiceKind.COUNTER, "127.0.0.1", srv.getsockname()[1])
        wait_healthy(spec, _Runtime(ContainerState.RUNNING), None, "edge1", 10.0)  # type: ignore[arg-type]
        # something answers, but not the container: never healthy
        with pytest.raises(EngineError, match="the container is not running"):
            wait_healthy(spec, _Runtime(ContainerState.ABSENT), None, "edge1", 0.05)  # type: ignore[arg-type]


def test_nothing_listening_is_not_healthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        spec = ServiceSpec("web", ServiceKind.COUNTER, "127.0.0.1", port)
        with pytest.raises(EngineError, match="not healthy"):
            wait_healthy(spec, _Runtime(ContainerState.RUNNING), None, "edge1", 0.05)  # type: ignore[arg-type]
