"""asyncio framed connections over mutual TLS (thin I/O layer under the socket-free protocol machines)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.protocol.codec import Chunk, FrameDecoder, Message, MsgType, encode
from edgemigrate.engine.transport.tls import peer_name

READ_SIZE_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 10.0
# Receive buffer of the data connection: a bulk transfer at 1 Gbit/s x 20 ms needs ~2.5 MB in flight. Linux
# starts a connection with a ~64 KiB window and autotuning doubles it at most once per RTT, and only as fast as
# the application reads; a destination busy decompressing lags, the window stalls for a few RTTs, and BBR takes
# the plateau for the path's bandwidth and leaves its start-up early (measured at 1000 Mbit/s: 8 of 16 runs then
# grew the window linearly, after ~140 ms limited by the receive window; 0 of 16 with this fixed buffer, which
# is advertised at once - docs/results/compression/tcp-ramp-1000mbit).
DATA_RCVBUF_BYTES = 16 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: may exceed net.core.rmem_max (CAP_NET_ADMIN)


class TransportError(EngineError):
    """A connection could not be made or broke."""


def size_receive_buffer(sock: Any, n_bytes: int) -> int:
    """Give ``sock`` (a listening socket: accepted connections inherit it and announce a window scale to
    match) a fixed ``n_bytes`` receive buffer, which turns off the kernel's receive autotuning for it; beyond
    ``net.core.rmem_max`` only with ``CAP_NET_ADMIN``, else capped there. ``n_bytes`` 0 keeps autotuning.
    Returns the buffer the kernel reports (twice the request: it counts its bookkeeping)."""
    if n_bytes > 0:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, n_bytes)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, n_bytes)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class FramedConnection:
    """One TLS stream: raw ``write`` of encoded frames, and ``next_message`` decoding incoming frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = FrameDecoder()
        self._pending: list[Message | Chunk] = []
        self.peer = peer_name(writer.get_extra_info("ssl_object"))
        self.bytes_sent = 0
        self.bytes_received = 0

    async def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self.writer.write(data)
        self.bytes_sent += len(data)
        await self.writer.drain()

    async def send(self, mtype: MsgType, **body: Any) -> None:
        await self.write(encode(mtype, **body))

    async def read_raw(self) -> bytes:
        """Next bytes from the peer (b"" at EOF); for feeding a socket-free session machine."""
        data = await self.reader.read(READ_SIZE_BYTES)
        self.bytes_received += len(data)
        return data

    async def next_message(self) -> Message | Chunk | None:
        """Next decoded frame, or None at EOF."""
        while not self._pending:
            data = await self.read_raw()
            if not data:
                return None
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    async def expect(self, *types: MsgType) -> Message:
        m = await self.next_message()
        if m is None:
            raise TransportError(f"peer {self.peer or '?'} closed the connection")
        if isinstance(m, Chunk) or m.type not in types:
            got = "CHUNK" if isinstance(m, Chunk) else m.type.name
            if isinstance(m, Message) and m.type is MsgType.ERROR:
                raise EngineError(str(m.body["message"]))
            raise TransportError(f"expected {'/'.join(t.name for t in types)} from {self.peer or '?'}, got {got}")
        return m

    async def close(self) -> None:
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (TimeoutError, OSError, ssl.SSLError):
            pass


async def connect(host: str, port: int, ctx: ssl.SSLContext, server_name: str,
                  timeout_s: float = CONNECT_TIMEOUT_S) -> FramedConnection:
    """Open a mutual-TLS connection to an agent; ``server_name`` must match its certificate."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name, limit=READ_SIZE_BYTES * 4),
            timeout_s,
        )
    except ssl.SSLError as exc:
        raise TransportError(f"TLS handshake with {server_name} at {host}:{port} failed: {exc.reason or exc}") from None
    except (TimeoutError, OSError) as exc:
        raise TransportError(f"cannot connect to {server_name} at {host}:{port}: {exc or 'timeout'}") from None
    return FramedConnection(reader, writer)
