"""A data connection may arrive before its session's HELLO is admitted: it waits for the admission (an
event), and gives up on a session that never comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from edgemigrate.control import agent as agent_mod
from edgemigrate.control.agent import Agent
from edgemigrate.engine.protocol.codec import Message, MsgType


def _open(session: str) -> Message:
    return Message(MsgType.DATA_OPEN, {"session": session})


def test_a_data_connection_that_overtakes_its_hello_waits_for_it(bare_agent: Callable[[], Agent]) -> None:
    async def main() -> None:
        agent = bare_agent()
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


def test_a_data_connection_from_another_host_gets_no_session(bare_agent: Callable[[], Agent]) -> None:
    async def main() -> None:
        agent = bare_agent()
        await agent._register("s1", SimpleNamespace(src_host="edge1"))  # type: ignore[arg-type]
        assert await agent._data_session(SimpleNamespace(peer="edge3"), _open("s1")) is None  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_data_connection_for_a_session_that_never_comes_gives_up(bare_agent: Callable[[], Agent],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "DATA_OPEN_WAIT_S", 0.01)

    async def main() -> None:
        agent = bare_agent()
        assert await agent._data_session(SimpleNamespace(peer="edge1"), _open("s9")) is None  # type: ignore[arg-type]

    asyncio.run(main())
