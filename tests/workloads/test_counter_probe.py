"""The counter service of Ngo et al. 2020 and the 10 ms probe, as real processes over TCP."""

from __future__ import annotations

from pathlib import Path

from edgemigrate.workloads.memory import PAGE_BYTES, ResidentMemory
from edgemigrate.workloads.probe import Probe
from tests.waiting import wait_until
from tests.workloads.conftest import LineClient, free_port, service


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_counter_increments_and_holds_resident_memory() -> None:
    with service("edgemigrate.workloads.counter", "--port", "0", "--resident-mb", "16", "--seed", "5") as (p, port):
        c = LineClient(port)
        assert [c.ask("INC") for _ in range(3)] == ["1", "2", "3"]
        assert c.ask("anything else") == "4"  # as in Ngo et al. 2020: every request increments
        assert c.ask("GET") == "4"
        assert c.ask("PING") == "PONG"
        assert c.ask("DIGEST") == ResidentMemory(16, seed=5).digest()
        c2 = LineClient(port)  # state is shared across connections
        assert c2.ask("INC") == "5"
        c.close()
        c2.close()
        assert _rss_bytes(p.pid) >= 16 * (1 << 20)


def test_resident_memory_is_nonzero_and_dirtying_changes_it() -> None:
    m = ResidentMemory(1, seed=1)
    assert m.size_bytes == 1 << 20 and m.n_pages == (1 << 20) // PAGE_BYTES
    assert 0 not in m.data[:65536]
    before = m.digest()
    assert ResidentMemory(1, seed=1).digest() == before
    m.dirty(m.n_pages + 3)  # wraps around
    assert m.pages_dirtied == m.n_pages + 3 and m.cursor == 3
    assert m.digest() != before


def test_probe_records_a_gap_free_monotonic_counter() -> None:
    with service("edgemigrate.workloads.counter", "--port", "0") as (_, port):
        c = LineClient(port)
        assert c.ask("INC") == "1"
        c.close()
        probe = Probe("127.0.0.1", port).start()
        wait_until(lambda: probe.result().replies > 10, "replies")  # a count of replies, not of seconds
        res = probe.stop()
    assert res.error is None
    assert res.replies == res.requests > 10
    assert res.monotonic and res.jumps == ()
    assert res.first_value == 2 and res.last_value == 1 + res.replies
    assert res.max_gap_s > 0


def test_probe_detects_lost_state_after_a_restart() -> None:
    port = free_port()
    probe = None
    with service("edgemigrate.workloads.counter", "--port", str(port)):
        probe = Probe("127.0.0.1", port, reconnect=True).start()
        wait_until(lambda: probe.result().replies >= 5, "first replies")
    with service("edgemigrate.workloads.counter", "--port", str(port)):  # fresh state: counts from 1 again
        start = probe.result().replies
        wait_until(lambda: probe.result().replies >= start + 5, "replies after the restart")
        res = probe.stop()
    assert res.reconnects >= 1
    assert not res.monotonic
    assert res.jumps and res.jumps[0][1] == 1


def test_probe_reports_an_unreachable_service() -> None:
    res = Probe("127.0.0.1", free_port()).run(duration_s=0.2)
    assert res.replies == 0 and res.error is not None and "connect" in res.error and not res.monotonic
