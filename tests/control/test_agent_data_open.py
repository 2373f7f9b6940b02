"""A data connection may arrive before its session's HELLO is admitted: it waits for the admission (an
event), and gives up on a session that never comes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgemigrate.control import agent as agent_mod
from edgemigrate.control.agent import Agent, AgentConfig
from edgemigrate.engine.checkpoint.runtime import ContainerState
from edgemigrate.engine.protocol.codec import Message, MsgType
from edgemigrate.engine.transport.tls import create_pki, host_dir


class _Runtime:
    def state(self, container_id: str) -> ContainerState:
        return ContainerState.ABSENT


def _agent(tmp_path: Path) -> Agent:
    pki = create_pki(tmp_path / "pki", ["edge1", "edge2"])
    cfg = AgentConfig(host="edge2", listen_ip="127.0.0.1", port=1, pki_dir=host_dir(pki, "edge2"),
                      state_dir=tmp_path / "state", image_root=tmp_path / "images")
    return Agent(cfg, runtime=_Runtime(), mover=None)  # type: ignore[arg-type]


def _open(session: str) -> Message:
    return Message(MsgType.DATA_OPEN, {"session": session})


def test_a_data_connection_that_overtakes_its_hello_waits_for_it(tmp_path: Path) -> None:
    async def main() -> None:
        agent = _agent(tmp_path)
        conn = SimpleNamespace(peer="edge1")
        waiting = asyncio.create_task(agent._data_session(conn, _open("s1")))  # type: ignore[arg-type]
        other = asyncio.create_task(agent._data_session(conn, _open("s2")))  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiting.done() and not other.done()
        inc = SimpleNamespace(src_host="edge1")
        await agent._register("s1", inc)  # type: ignore[arg-type]
        assert await waiting is inc
        await asyncio.sleep(0)
        assert not other.done()  # still waiting for its own session
        other.cancel()

    asyncio.run(main())


def test_a_data_connection_from_another_host_gets_no_session(tmp_path: Path) -> None:
    async def main() -> None:
        agent = _agent(tmp_path)
        await agent._register("s1", SimpleNamespace(src_host="edge1"))  # type: ignore[arg-type]
        assert await agent._data_session(SimpleNamespace(peer="edge3"), _open("s1")) is None  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_data_connection_for_a_session_that_never_comes_gives_up(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "DATA_OPEN_WAIT_S", 0.01)

    async def main() -> None:
        agent = _agent(tmp_path)
        assert await agent._data_session(SimpleNamespace(peer="edge1"), _open("s9")) is None  # type: ignore[arg-type]

    asyncio.run(main())
