"""The key-value store: protocol, digest, and the dirty-rate process."""

from __future__ import annotations

import json

from edgemigrate.workloads.kvstore import KVStore
from tests.waiting import wait_until
from tests.workloads.conftest import LineClient, service


def test_protocol_over_tcp() -> None:
    with service("edgemigrate.workloads.kvstore", "--port", "0", "--resident-mb", "4",
                 "--dirty-pages-per-s", "2000") as (_, port):
        c = LineClient(port)
        assert c.ask("SET a hello world") == "OK"
        assert c.ask("GET a") == "VALUE hello world"
        assert c.ask("GET b") == "NIL"
        assert c.ask("INCR n") == "1" and c.ask("INCR n") == "2"
        assert c.ask("INCR a").startswith("ERR")
        assert c.ask("COUNT") == "2"
        assert c.ask("DEL a") == "1" and c.ask("DEL a") == "0"
        assert c.ask("FLY").startswith("ERR unknown")
        local = KVStore()
        local.handle(b"SET n 2")
        assert c.ask("DIGEST") == local.digest()
        s1 = json.loads(c.ask("STATS"))
        assert s1["resident_bytes"] == 4 << 20 and s1["dirty_pages_per_s"] == 2000
        # the store keeps rewriting pages between requests
        wait_until(lambda: json.loads(c.ask("STATS"))["pages_dirtied"] > s1["pages_dirtied"], "dirtying")
        assert c.ask("DIRTY 0") == "OK" and c.ask("DIRTY -1").startswith("ERR")
        c.close()


def test_dirty_rate_is_exact_in_simulated_time() -> None:
    kv = KVStore(resident_mb=1, dirty_pages_per_s=1000)
    kv.tick(10.0)  # first tick only starts the clock
    kv.tick(10.5)
    assert kv.memory.pages_dirtied == 500
    for k in range(1, 101):  # fractional pages carry over between ticks
        kv.tick(10.5 + k * 0.0015)
    assert kv.memory.pages_dirtied == 650


def test_digest_depends_on_every_pair() -> None:
    a, b = KVStore(), KVStore()
    for kv in (a, b):
        kv.handle(b"SET x 1")
        kv.handle(b"SET y 2")
    assert a.digest() == b.digest()
    b.handle(b"SET y 3")
    assert a.digest() != b.digest()
    assert a.handle("SET é 1".encode()) == b"ERR not ascii"
