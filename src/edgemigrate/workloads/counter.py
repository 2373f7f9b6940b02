"""The "Simple" service of Ngo et al. 2020: a TCP server whose every request increments and returns a counter.

Ngo et al. 2020, section V: "a dumb TCP server that simply responds to each incoming offloading request with an
incrementing counter"; the counter is the state checked across a migration. In addition this server can hold
``--resident-mb`` MB of mostly static memory (to give the checkpoint a realistic size, as the 74 MB image of Ngo
et al. 2020's Simple container).

Protocol (one ASCII line per request and reply)::

    INC      -> <counter after increment>      (any unknown line is treated as INC, as in the paper)
    GET      -> <counter>                       (no increment)
    DIGEST   -> <blake2b of the resident memory>
    PING     -> PONG

Run: ``python -m edgemigrate.workloads.counter --host 10.77.2.0 --port 7000 --resident-mb 200``.
"""

from __future__ import annotations

import argparse
import sys

from edgemigrate.workloads.lineserver import LineServer
from edgemigrate.workloads.memory import ResidentMemory


class Counter:
    def __init__(self, resident_mb: float = 0.0, seed: int = 0, start: int = 0) -> None:
        self.value = start
        self.memory = ResidentMemory(resident_mb, seed)

    def handle(self, line: bytes) -> bytes:
        cmd = line.strip().upper()
        if cmd == b"GET":
            return str(self.value).encode()
        if cmd == b"DIGEST":
            return self.memory.digest().encode()
        if cmd == b"PING":
            return b"PONG"
        self.value += 1
        return str(self.value).encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.workloads.counter", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="0.0.0.0", help="address to bind (the service IP)")
    ap.add_argument("--port", type=int, default=7000)
    ap.add_argument("--resident-mb", type=float, default=0.0, help="MB of mostly static resident memory")
    ap.add_argument("--seed", type=int, default=0, help="seed of the resident memory's content")
    args = ap.parse_args(argv)
    counter = Counter(args.resident_mb, args.seed)
    server = LineServer(args.host, args.port, counter.handle)
    print(f"counter listening on {args.host}:{server.port} resident_bytes={counter.memory.size_bytes}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
