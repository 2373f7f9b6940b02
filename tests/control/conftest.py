"""Shared fixtures of the agent tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edgemigrate.control.agent import Agent, AgentConfig
from edgemigrate.engine.checkpoint.runtime import ContainerState
from edgemigrate.engine.transport.tls import create_pki, host_dir


class _AbsentRuntime:
    """A runtime with no container: enough for the agent's logic that never reaches a real one."""

    def state(self, container_id: str) -> ContainerState:
        return ContainerState.ABSENT


@pytest.fixture
def bare_agent(tmp_path: Path) -> Callable[[], Agent]:
    """An agent for host edge2 (PKI of edge1 and edge2, state under ``tmp_path``) that is never started."""

    def make() -> Agent:
        pki = create_pki(tmp_path / "pki", ["edge1", "edge2"])
        cfg = AgentConfig(host="edge2", listen_ip="127.0.0.1", port=1, pki_dir=host_dir(pki, "edge2"),
                          state_dir=tmp_path / "state", image_root=tmp_path / "images")
        return Agent(cfg, runtime=_AbsentRuntime(), mover=None)  # type: ignore[arg-type]

    return make
