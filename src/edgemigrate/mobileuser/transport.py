"""One offloading request over TCP: a line (and an optional body, an uploaded image) to the service, a bounded
line back.

The connection is kept open between requests (Ngo et al. 2020's MU sends requests continuously; a migrated
service keeps its established connections, restored by CRIU), and dropped on any failure so that the next
request reconnects - to wherever discovery then says the service is. The socket is bound to ``source_ip``
(on the testbed: the client's mobile-user address, which is what routes it through the serving BS).
"""

from __future__ import annotations

import socket
from typing import Protocol

from edgemigrate.core.errors import EngineError

MAX_REPLY_BYTES = 256  # a counter, PONG, a digest or a face reply with its boxes and proc_s: far less


class Transport(Protocol):
    def request(self, endpoint: tuple[str, int], payload: bytes, timeout_s: float, body: bytes = b"") -> bytes:
        """Send one request line and then ``body`` (raw bytes), return the reply line (without the newline);
        raise on failure."""

    def close(self) -> None: ...


class TcpLineTransport:
    def __init__(self, source_ip: str | None = None) -> None:
        self.source_ip = source_ip
        self._sock: socket.socket | None = None
        self._endpoint: tuple[str, int] | None = None
        self._buf = bytearray()

    def _connect(self, endpoint: tuple[str, int], timeout_s: float) -> socket.socket:
        if self._sock is not None and self._endpoint == endpoint:
            return self._sock
        self.close()
        src = (self.source_ip, 0) if self.source_ip else None
        self._sock = socket.create_connection(endpoint, timeout=timeout_s, source_address=src)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._endpoint = endpoint
        return self._sock

    def request(self, endpoint: tuple[str, int], payload: bytes, timeout_s: float, body: bytes = b"") -> bytes:
        try:
            sock = self._connect(endpoint, timeout_s)
            sock.settimeout(timeout_s)
            sock.sendall(payload.rstrip(b"\n") + b"\n" + body)
            while b"\n" not in self._buf:
                chunk = sock.recv(MAX_REPLY_BYTES)
                if not chunk:
                    raise EngineError(f"service {endpoint[0]}:{endpoint[1]} closed the connection")
                self._buf += chunk
                if len(self._buf) > MAX_REPLY_BYTES:
                    raise EngineError(f"service {endpoint[0]}:{endpoint[1]}: reply longer than "
                                      f"{MAX_REPLY_BYTES} bytes")
        except (OSError, EngineError):
            self.close()
            raise
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return line

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._endpoint, self._buf = None, None, bytearray()
