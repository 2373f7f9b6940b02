from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.engine.protocol.codec import MsgType
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.streams import FramedConnection, TransportError, connect


async def _serve_once(pki: Path, name: str) -> tuple[asyncio.base_events.Server, int, list[str | None]]:
    peers: list[str | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FramedConnection(reader, writer)
        peers.append(conn.peer)
        m = await conn.next_message()
        if m is not None:
            await conn.send(MsgType.OK, detail=f"hello {conn.peer}")
        await conn.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls.server_context(tls.host_dir(pki, name), name))
    return server, server.sockets[0].getsockname()[1], peers


def test_mutual_tls_accepts_same_ca_and_names_the_peer(tmp_path: Path) -> None:
    pki = tls.create_pki(tmp_path / "pki", ["edge1", "edge2"])

    async def main() -> None:
        server, port, peers = await _serve_once(pki, "edge2")
        async with server:
            conn = await connect("127.0.0.1", port, tls.client_context(tls.host_dir(pki, "edge1"), "edge1"), "edge2")
            await conn.send(MsgType.STATUS)
            reply = await conn.expect(MsgType.OK)
            await conn.close()
        assert reply.body["detail"] == "hello edge1"
        assert peers == ["edge1"]

    asyncio.run(main())


def test_certificate_from_another_ca_is_rejected_both_ways(tmp_path: Path) -> None:
    good = tls.create_pki(tmp_path / "good", ["edge1", "edge2"])
    rogue = tls.create_pki(tmp_path / "rogue", ["edge1", "edge2"])

    async def main() -> None:
        server, port, peers = await _serve_once(good, "edge2")
        async with server:
            # a client with a foreign certificate: the server refuses it
            with pytest.raises(TransportError):
                conn = await connect("127.0.0.1", port, tls.client_context(tls.host_dir(rogue, "edge1"), "edge1"), "edge2")
                await conn.send(MsgType.STATUS)
                if await conn.next_message() is None:
                    raise TransportError("closed")
            # a server with a foreign certificate: the client refuses it at the handshake
        rserver, rport, _ = await _serve_once(rogue, "edge2")
        async with rserver:
            with pytest.raises(TransportError, match="TLS handshake"):
                await connect("127.0.0.1", rport, tls.client_context(tls.host_dir(good, "edge1"), "edge1"), "edge2")
        assert peers in ([], [None])

    asyncio.run(main())


def test_wrong_host_name_is_rejected(tmp_path: Path) -> None:
    pki = tls.create_pki(tmp_path / "pki", ["edge1", "edge2", "edge3"])

    async def main() -> None:
        server, port, _ = await _serve_once(pki, "edge3")
        async with server:
            with pytest.raises(TransportError, match="TLS handshake"):
                await connect("127.0.0.1", port, tls.client_context(tls.host_dir(pki, "edge1"), "edge1"), "edge2")

    asyncio.run(main())


def test_missing_pki_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca.pem: missing"):
        tls.server_context(tmp_path, "edge1")
    with pytest.raises(ConfigError, match="no CA here"):
        tls.issue(tmp_path, "edge1")
