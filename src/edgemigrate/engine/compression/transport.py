"""Byte links for the chunk pipeline: a :class:`ByteLink` protocol and a TCP socket implementation.

The pipeline needs only three things from a transport: send a list of buffers (and learn how long the
call was blocked, for the goodput estimate), read exactly ``n`` bytes, and optionally ``TCP_INFO``.
:class:`SocketLink` does this over a connected stream socket; an optional user-space
:class:`TokenBucket` caps its send rate so the benchmarks can emulate a slow link on loopback when no
shaped testbed (``tc tbf``) is available.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from edgemigrate.core.errors import EngineError, ValidationError
from edgemigrate.engine.compression.netstate import TcpInfo, read_tcp_info

Buffer = bytes | bytearray | memoryview


class LinkClosedError(EngineError):
    """The peer closed the connection in the middle of a frame."""


class ByteLink(Protocol):
    def send_parts(self, parts: Sequence[Buffer]) -> float:
        """Send all ``parts`` in order; return the seconds spent blocked in the call."""
        ...

    def recv_exact(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes; ``None`` on a clean EOF before the first byte; raise on EOF mid-way."""
        ...

    def tcp_info(self) -> TcpInfo | None: ...

    def close(self) -> None: ...


class TokenBucket:
    """Caps a byte rate at ``rate_bps`` bits per second with a ``burst_bytes`` bucket. Thread-safe.

    The rate may be changed while a transfer runs (:meth:`set_rate`), to emulate a link whose
    bandwidth changes mid-migration. ``clock``/``sleep`` default to the real monotonic clock.
    """

    def __init__(
        self,
        rate_bps: float,
        burst_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_bps <= 0 or burst_bytes <= 0:
            raise ValidationError(
                f"token bucket: rate_bps and burst_bytes must be > 0, got {rate_bps}, {burst_bytes}"
            )
        self._rate_bytes_per_s = rate_bps / 8.0
        self.burst_bytes = burst_bytes
        self._tokens = float(burst_bytes)
        self._clock, self._sleep = clock, sleep
        self._t = clock()
        self._lock = threading.Lock()

    @property
    def rate_bps(self) -> float:
        return self._rate_bytes_per_s * 8.0

    def set_rate(self, rate_bps: float) -> None:
        if rate_bps <= 0:
            raise ValidationError(f"token bucket: rate_bps must be > 0, got {rate_bps}")
        with self._lock:
            self._refill()
            self._rate_bytes_per_s = rate_bps / 8.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst_bytes), self._tokens + (now - self._t) * self._rate_bytes_per_s)
        self._t = now

    def acquire(self, n: int) -> None:
        """Block until ``n`` bytes (at most ``burst_bytes``) may be sent."""
        n = min(n, self.burst_bytes)
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= n - 1e-6:  # tolerance: float refill arithmetic may land a hair short
                    self._tokens -= n
                    return
                wait = (n - self._tokens) / self._rate_bytes_per_s
            self._sleep(wait)


class SocketLink:
    """A :class:`ByteLink` over a connected stream socket (TCP or Unix), optionally rate-limited."""

    def __init__(self, sock: socket.socket, limiter: TokenBucket | None = None) -> None:
        self.sock = sock
        self.limiter = limiter
        self._is_tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM

    def send_parts(self, parts: Sequence[Buffer]) -> float:
        t0 = time.perf_counter()
        if self.limiter is None:
            for p in parts:
                self.sock.sendall(p)
        else:
            step = self.limiter.burst_bytes
            for p in parts:
                view = memoryview(p).cast("B")
                for off in range(0, len(view), step):
                    piece = view[off : off + step]
                    self.limiter.acquire(len(piece))
                    self.sock.sendall(piece)
        return time.perf_counter() - t0

    def recv_exact(self, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                if got == 0:
                    return None
                raise LinkClosedError(f"connection closed after {got} of {n} bytes of a frame")
            got += k
        return bytes(buf)

    def tcp_info(self) -> TcpInfo | None:
        if not self._is_tcp:
            return None
        try:
            return read_tcp_info(self.sock)
        except OSError:
            return None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()


def tcp_pair(limiter: TokenBucket | None = None) -> tuple[SocketLink, SocketLink]:
    """A connected (sender, receiver) pair of TCP links on loopback, for tests and benchmarks."""
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(srv.getsockname()[:2])
        server, _ = srv.accept()
    finally:
        srv.close()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return SocketLink(client, limiter), SocketLink(server)


class MemoryLink:
    """A :class:`ByteLink` over an in-memory buffer: what one side sends, the other reads back.

    Used to record a stream once and replay it (or a tampered copy of it) into a receiver.
    """

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = bytearray(data)
        self._pos = 0

    def send_parts(self, parts: Sequence[Buffer]) -> float:
        t0 = time.perf_counter()
        for p in parts:
            self.buffer += p
        return time.perf_counter() - t0

    def recv_exact(self, n: int) -> bytes | None:
        if self._pos >= len(self.buffer) and n > 0:
            return None
        if self._pos + n > len(self.buffer):
            raise LinkClosedError(
                f"stream ended after {len(self.buffer) - self._pos} of {n} bytes of a frame"
            )
        out = bytes(self.buffer[self._pos : self._pos + n])
        self._pos += n
        return out

    def tcp_info(self) -> TcpInfo | None:
        return None

    def close(self) -> None:
        return None


class AsyncioStreamLink:
    """A :class:`ByteLink` over asyncio streams, for calling the (threaded) pipeline from asyncio code.

    The streams belong to the event loop ``loop``, which must run in *another* thread: the pipeline
    calls these blocking methods from its own threads (e.g. via ``loop.run_in_executor``), and each
    call is marshalled onto the loop with ``asyncio.run_coroutine_threadsafe``.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.reader, self.writer, self.loop = reader, writer, loop

    async def _send(self, parts: Sequence[Buffer]) -> None:
        for p in parts:
            self.writer.write(p)
        await self.writer.drain()

    async def _recv(self, n: int) -> bytes | None:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise LinkClosedError(
                f"connection closed after {len(exc.partial)} of {n} bytes of a frame"
            ) from None

    async def _close(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    def send_parts(self, parts: Sequence[Buffer]) -> float:
        t0 = time.perf_counter()
        asyncio.run_coroutine_threadsafe(self._send(parts), self.loop).result()
        return time.perf_counter() - t0

    def recv_exact(self, n: int) -> bytes | None:
        return asyncio.run_coroutine_threadsafe(self._recv(n), self.loop).result()

    def tcp_info(self) -> TcpInfo | None:
        sock = self.writer.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        try:
            return read_tcp_info(sock)  # type: ignore[arg-type]  # asyncio's TransportSocket has getsockopt
        except OSError:
            return None

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result()
