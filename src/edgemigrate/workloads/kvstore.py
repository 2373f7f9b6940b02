"""An in-memory key-value store with a configurable resident size and dirty rate.

The workload knob of pre-copy migration is how fast the service rewrites its memory (Ngo et al. 2020, section
IV-B: the delta checkpoint moves only what changed since the previous round; Zhang et al. 2019, section II:
pre-copy rounds converge only if the dirty rate stays below the link rate). This store holds ``--resident-mb`` MB
of resident pages and rewrites ``--dirty-pages-per-s`` of them per second (in 10 ms slices), independent of
requests.

Protocol (one ASCII line each way; keys and values are printable, without spaces in keys)::

    SET key value   -> OK
    GET key         -> VALUE value | NIL
    DEL key         -> 1 | 0
    INCR key        -> <new integer value>
    COUNT           -> <number of keys>
    DIGEST          -> <blake2b over all (key, value) pairs in key order>
    STATS           -> {"keys": .., "resident_bytes": .., "pages_dirtied": .., "dirty_pages_per_s": ..}
    DIRTY n         -> OK   (change the dirty rate at run time)
    PING            -> PONG

Errors reply ``ERR <reason>``. Run:
``python -m edgemigrate.workloads.kvstore --port 7001 --resident-mb 200 --dirty-pages-per-s 2000``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from edgemigrate.workloads.lineserver import LineServer
from edgemigrate.workloads.memory import ResidentMemory

TICK_S = 0.01


class KVStore:
    def __init__(self, resident_mb: float = 0.0, dirty_pages_per_s: float = 0.0, seed: int = 0) -> None:
        self.data: dict[str, str] = {}
        self.memory = ResidentMemory(resident_mb, seed)
        self.dirty_pages_per_s = float(dirty_pages_per_s)
        self._carry = 0.0  # fractional pages owed from previous ticks
        self._last_tick: float | None = None

    def tick(self, now: float) -> None:
        if self._last_tick is None:
            self._last_tick = now
            return
        owed = self.dirty_pages_per_s * (now - self._last_tick) + self._carry
        self._last_tick = now
        n = int(owed)
        self._carry = owed - n
        self.memory.dirty(n)

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for k in sorted(self.data):
            v = self.data[k]
            h.update(len(k).to_bytes(4, "little") + k.encode() + len(v).to_bytes(4, "little") + v.encode())
        return h.hexdigest()

    def handle(self, line: bytes) -> bytes:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return b"ERR not ascii"
        parts = text.split(" ", 2)
        cmd = parts[0].upper()
        try:
            if cmd == "SET" and len(parts) == 3:
                self.data[parts[1]] = parts[2]
                return b"OK"
            if cmd == "GET" and len(parts) == 2:
                v = self.data.get(parts[1])
                return b"NIL" if v is None else b"VALUE " + v.encode()
            if cmd == "DEL" and len(parts) == 2:
                return b"1" if self.data.pop(parts[1], None) is not None else b"0"
            if cmd == "INCR" and len(parts) == 2:
                n = int(self.data.get(parts[1], "0")) + 1
                self.data[parts[1]] = str(n)
                return str(n).encode()
            if cmd == "COUNT" and len(parts) == 1:
                return str(len(self.data)).encode()
            if cmd == "DIGEST" and len(parts) == 1:
                return self.digest().encode()
            if cmd == "STATS" and len(parts) == 1:
                return json.dumps({"keys": len(self.data), "resident_bytes": self.memory.size_bytes,
                                   "pages_dirtied": self.memory.pages_dirtied,
                                   "dirty_pages_per_s": self.dirty_pages_per_s}).encode()
            if cmd == "DIRTY" and len(parts) == 2:
                rate = float(parts[1])
                if not rate >= 0:
                    return b"ERR rate must be >= 0"
                self.dirty_pages_per_s = rate
                return b"OK"
            if cmd == "PING" and len(parts) == 1:
                return b"PONG"
        except ValueError as exc:
            return f"ERR {exc}".encode()
        return b"ERR unknown command or wrong number of arguments"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.workloads.kvstore",
                                 description="In-memory key-value store with a resident size and dirty rate.")
    ap.add_argument("--host", default="0.0.0.0", help="address to bind (the service IP)")
    ap.add_argument("--port", type=int, default=7001)
    ap.add_argument("--resident-mb", type=float, default=0.0)
    ap.add_argument("--dirty-pages-per-s", type=float, default=0.0, help="4 KiB pages rewritten per second")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    store = KVStore(args.resident_mb, args.dirty_pages_per_s, args.seed)
    server = LineServer(args.host, args.port, store.handle, tick=store.tick, tick_s=TICK_S)
    print(f"kvstore listening on {args.host}:{server.port} resident_bytes={store.memory.size_bytes}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
