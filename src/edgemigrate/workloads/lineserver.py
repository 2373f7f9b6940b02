"""A single-threaded, line-oriented TCP server loop shared by the test services.

One thread, one ``selectors`` loop, no asyncio: the process is small and simple for CRIU to checkpoint (sockets
are plain, no helper threads, no timers in the kernel). Each request is one ``\\n``-terminated ASCII line of at
most :data:`MAX_LINE_BYTES`; each reply is one line. A line that is too long closes that connection.
An optional ``tick`` callback runs every ``tick_s`` seconds (used by the key-value store to dirty memory).
"""

from __future__ import annotations

import errno
import selectors
import signal
import socket
import time
from collections.abc import Callable

MAX_LINE_BYTES = 64 * 1024
RECV_BYTES = 65536

Handler = Callable[[bytes], bytes]


class LineServer:
    def __init__(self, host: str, port: int, handler: Handler, *, tick: Callable[[float], None] | None = None,
                 tick_s: float = 0.01, backlog: int = 64) -> None:
        self.handler = handler
        self.tick = tick
        self.tick_s = tick_s
        self.sel = selectors.DefaultSelector()
        self.listener = socket.create_server((host, port), backlog=backlog, reuse_port=False)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.buffers: dict[socket.socket, bytearray] = {}
        self.outbox: dict[socket.socket, bytearray] = {}
        self.stopping = False

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def stop(self, *_: object) -> None:
        self.stopping = True

    def _close(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        self.buffers.pop(conn, None)
        self.outbox.pop(conn, None)
        conn.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffers[conn] = bytearray()
        self.outbox[conn] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, "conn")

    def _receive(self, conn: socket.socket) -> bytearray | None:
        """Append what ``conn`` has to its buffer and return the buffer; None if nothing came or it closed."""
        try:
            data = conn.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self._close(conn)
            return None
        if not data:
            self._close(conn)
            return None
        buf = self.buffers[conn]
        buf += data
        return buf

    def _serve(self, conn: socket.socket) -> None:
        buf = self._receive(conn)
        if buf is None:
            return
        replies = bytearray()
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            replies += self.handler(line) + b"\n"
        if len(buf) > MAX_LINE_BYTES:
            self._close(conn)
            return
        if replies:
            self._send(conn, replies)

    def _send(self, conn: socket.socket, data: bytes | bytearray) -> None:
        out = self.outbox[conn]
        out += data
        try:
            n = conn.send(out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN,):
                self._close(conn)
                return
            n = 0
        del out[:n]
        self.sel.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0), "conn")

    def serve_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        next_tick = time.monotonic() + self.tick_s
        while not self.stopping:
            timeout = max(0.0, next_tick - time.monotonic()) if self.tick else 0.5
            for key, events in self.sel.select(timeout):
                if key.data is None:
                    self._accept()
                    continue
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                if events & selectors.EVENT_WRITE and conn in self.outbox:
                    self._send(conn, b"")
                if events & selectors.EVENT_READ and conn in self.buffers:
                    self._serve(conn)
            if self.tick is not None:
                now = time.monotonic()
                if now >= next_tick:
                    self.tick(now)
                    next_tick = max(next_tick + self.tick_s, now)
        for conn in list(self.buffers):
            self._close(conn)
        self.listener.close()
