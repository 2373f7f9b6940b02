"""Debian's redis-server filled with seeded data and checked key by key."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from edgemigrate.core.errors import EngineError
from edgemigrate.workloads.redis import (
    RespClient,
    checksum,
    diff_checksums,
    fill,
    key_checksums,
    redis_argv,
)
from tests.workloads.conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server missing (scripts/install-system-deps)")


def test_fill_and_checksum_roundtrip(tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen(redis_argv("127.0.0.1", port, workdir=str(tmp_path)), stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with RespClient("127.0.0.1", port, timeout_s=1) as c:
                    if c.call("PING") == "PONG":
                        break
            except EngineError:
                time.sleep(0.05)
        n = fill("127.0.0.1", port, 8, value_bytes=4096, seed=1)
        assert n == 2048
        with RespClient("127.0.0.1", port) as c:
            assert c.call("DBSIZE") == n
            assert c.call("CONFIG", "GET", "save") == [b"save", b""]
            assert c.call("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        sums = key_checksums("127.0.0.1", port)
        assert len(sums) == n
        same = fill("127.0.0.1", port, 8, value_bytes=4096, seed=1)  # same seed rewrites the same values
        assert same == n and checksum(key_checksums("127.0.0.1", port)) == checksum(sums)
        with RespClient("127.0.0.1", port) as c:
            c.call("SET", "k:0000007", "changed")
            c.call("DEL", "k:0000008")
            c.call("SET", "extra", "1")
        diff = diff_checksums(sums, key_checksums("127.0.0.1", port))
        assert diff == {"missing": ["k:0000008"], "added": ["extra"], "changed": ["k:0000007"]}
        with pytest.raises(EngineError, match="redis error"):
            RespClient("127.0.0.1", port).call("INCR", "k:0000001")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
