"""Run Debian's ``redis-server`` as a migratable service, fill it with data and check it key by key.

* :func:`redis_argv` - the command line: no persistence (``save ""``, ``appendonly no``), no daemonising,
  bound to the service IP, no protected mode (it is reachable only inside the testbed), log to stdout. The
  caller starts it where it wants (``Testbed.popen_in``, a runc bundle, ...).
* :class:`RespClient` - a minimal RESP2 client (pipelined commands; no third-party dependency).
* :func:`fill` - writes keys ``k:000000..`` with seeded random values until ``total_mb`` MB are stored.
* :func:`key_checksums` / :func:`checksum` - per-key blake2b digests of every value (via ``SCAN`` + ``MGET``),
  and one digest over them, to compare before and after a migration; :func:`diff_checksums` lists differences.

CLI: ``python -m edgemigrate.workloads.redis fill|checksum --host IP --port P [--total-mb 300]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from edgemigrate.core.errors import EngineError
from edgemigrate.core.seeding import SeedTree

MiB = 1 << 20
PIPELINE = 256
SCAN_COUNT = 1000


def redis_argv(bind: str, port: int, *, maxmemory_mb: int | None = None, binary: str = "redis-server",
               workdir: str = "/tmp") -> list[str]:
    """The ``redis-server`` command line for a migratable, non-persistent instance."""
    argv = [binary, "--bind", bind, "--port", str(port), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", "", "--dir", workdir,
            "--supervised", "no"]
    if maxmemory_mb is not None:
        argv += ["--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy", "noeviction"]
    return argv


class RespClient:
    """A small blocking RESP2 client."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise EngineError(f"redis at {host}:{port}: {exc}") from None
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> RespClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def encode(args: Sequence[bytes | str | int]) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _read(self) -> object:
        line = self.rfile.readline()
        if not line:
            raise EngineError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise EngineError(f"redis error: {rest.decode(errors='replace')}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise EngineError(f"bad RESP reply {line[:40]!r}")

    def pipeline(self, commands: Iterable[Sequence[bytes | str | int]]) -> list[object]:
        cmds = list(commands)
        self.sock.sendall(b"".join(self.encode(c) for c in cmds))
        return [self._read() for _ in cmds]

    def call(self, *args: bytes | str | int) -> object:
        return self.pipeline([args])[0]


def key_name(i: int) -> str:
    return f"k:{i:07d}"


def _text_values(rng: np.random.Generator, n: int, value_bytes: int) -> list[bytes]:
    """``n`` values of ``value_bytes`` each: words drawn from a 512-word vocabulary with numbers in between,
    roughly as compressible as cached JSON/text (zstd-3 ~3x), unlike uniformly random bytes."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    vocab = [bytes(letters[rng.integers(0, 26, size=int(k))]) for k in rng.integers(3, 10, size=512)]
    out = []
    for _ in range(n):
        idx = rng.integers(0, len(vocab), size=value_bytes // 4)
        nums = rng.integers(0, 100000, size=len(idx) // 8)
        parts = [vocab[j] for j in idx]
        for k, v in enumerate(nums):
            parts[k * 8] = b'"%d"' % v
        out.append(b" ".join(parts)[:value_bytes].ljust(value_bytes, b" "))
    return out


def fill(host: str, port: int, total_mb: float, *, value_bytes: int = 4096, seed: int = 0,
         values: str = "random") -> int:
    """Store ``ceil(total_mb MiB / value_bytes)`` keys with seeded values; returns the key count.

    ``values``: ``random`` (uniform bytes: incompressible) or ``text`` (word-like records, compressible).
    """
    if value_bytes <= 0 or total_mb <= 0:
        raise EngineError("fill needs total_mb > 0 and value_bytes > 0")
    if values not in ("random", "text"):
        raise EngineError(f"fill: values {values!r}: expected random or text")
    n_keys = -(-int(total_mb * MiB) // value_bytes)
    rng = SeedTree(seed).rng("services/redis")
    with RespClient(host, port) as c:
        for start in range(0, n_keys, PIPELINE):
            stop = min(start + PIPELINE, n_keys)
            if values == "text":
                vals = _text_values(rng, stop - start, value_bytes)
            else:
                block = rng.integers(0, 256, size=(stop - start) * value_bytes, dtype=np.uint8).tobytes()
                vals = [block[k * value_bytes:(k + 1) * value_bytes] for k in range(stop - start)]
            cmds = [("SET", key_name(i), vals[i - start]) for i in range(start, stop)]
            for r in c.pipeline(cmds):
                if r != "OK":
                    raise EngineError(f"redis SET failed: {r!r}")
    return n_keys


def key_checksums(host: str, port: int) -> dict[str, str]:
    """Every key -> blake2b-128 of its value (string keys only; other types are reported by type)."""
    out: dict[str, str] = {}
    with RespClient(host, port) as c:
        cursor = b"0"
        while True:
            reply = c.call("SCAN", cursor, "COUNT", SCAN_COUNT)
            if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list)):
                raise EngineError(f"unexpected SCAN reply {str(reply)[:80]}")
            cursor, keys = reply[0], reply[1]
            if keys:
                values = c.call("MGET", *keys)
                if not (isinstance(values, list) and len(values) == len(keys)):
                    raise EngineError(f"unexpected MGET reply {str(values)[:80]}")
                for k, v in zip(keys, values, strict=True):
                    name = k.decode(errors="replace")
                    out[name] = "missing" if v is None else hashlib.blake2b(v, digest_size=16).hexdigest()
            if cursor in (b"0", "0"):
                break
    return out


def checksum(sums: dict[str, str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(sums):
        h.update(k.encode() + b"\0" + sums[k].encode() + b"\n")
    return h.hexdigest()


def diff_checksums(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """Keys missing after, added after, or with a different value (sorted)."""
    return {
        "missing": sorted(set(before) - set(after)),
        "added": sorted(set(after) - set(before)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.workloads.redis")
    ap.add_argument("action", choices=["fill", "checksum"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--total-mb", type=float, default=300.0)
    ap.add_argument("--value-bytes", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.action == "fill":
        n = fill(args.host, args.port, args.total_mb, value_bytes=args.value_bytes, seed=args.seed)
        print(json.dumps({"keys": n}))
    else:
        sums = key_checksums(args.host, args.port)
        print(json.dumps({"keys": len(sums), "checksum": checksum(sums)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
