"""Helpers to run the services as real processes on the loopback interface."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(module: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start ``python -m module --host 127.0.0.1 args`` and yield (process, port) once it listens."""
    proc = subprocess.Popen([PY, "-m", module, "--host", "127.0.0.1", *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on [\d.]+:(\d+)", line)
        assert m, f"service did not start: {line!r}"
        yield proc, int(m.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class LineClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.rfile = self.sock.makefile("rb")

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self.rfile.readline().decode().rstrip("\n")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()
