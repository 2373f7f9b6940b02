"""Host agents' resource reports (control/reports.py): measured from a cgroup tree, parsed strictly when they
come from a peer, and given only to the roles that may ask (a real in-process agent on loopback)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.control.test_agent_security import Env, _run, _spec

from edgemigrate.control import client
from edgemigrate.control.grants import grant_body
from edgemigrate.control.reports import (
    MAX_REPORT_SERVICES,
    HostReport,
    ReportError,
    ResourceMeter,
    ServiceReport,
    host_cgroup,
    parse_service_stats,
    query_report,
)
from edgemigrate.control.tokens import new_token
from edgemigrate.core.errors import EngineError
from edgemigrate.engine.protocol.codec import HEADER, MAGIC, PROTOCOL_VERSION, Message, MsgType, encode
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.tls import host_dir

GOOD = HostReport("edge1", 1.7e9, 2.0, 0.25, 12.5, 1 << 30, 8 << 30,
                  (ServiceReport("plates", "platedetect", "running", 0.0, 0.031, 0.02),
                   ServiceReport("web", "counter", "paused", 16.0, None)))


def test_a_report_round_trips() -> None:
    assert HostReport.from_dict(json.loads(json.dumps(GOOD.to_dict()))) == GOOD
    assert GOOD.service("plates") is not None and GOOD.service("nope") is None


def _with(**kw: Any) -> dict[str, Any]:
    return GOOD.to_dict() | kw


def _svc(**kw: Any) -> dict[str, Any]:
    return _with(services=[GOOD.to_dict()["services"][0] | kw])


@pytest.mark.parametrize("bad", [
    [], "report", None, _with(extra=1), {k: v for k, v in GOOD.to_dict().items() if k != "cpu_cores"},
    _with(host="../edge1"), _with(host=""), _with(cpu_used_fraction=1.5), _with(cpu_used_fraction=-0.1),
    _with(cpu_cores=True), _with(cpu_cores="2"), _with(memory_used_bytes=1.5), _with(memory_used_bytes=-1),
    _with(memory_total_bytes=1 << 63), _with(at_s=1e20), _with(services={}),
    _with(services=[GOOD.to_dict()["services"][0]] * (MAX_REPORT_SERVICES + 1)),
    _svc(name="Plates"), _svc(kind="shell"), _svc(state="hacked"), _svc(processing_s=-1.0), _svc(cpu_s=1e9),
    _svc(processing_s="0.1"), _svc(argv=["sh"]), _with(services=[7]),
])
def test_hostile_reports_are_refused_with_the_key(bad: Any) -> None:
    with pytest.raises(ReportError, match="report"):
        HostReport.from_dict(bad)


@pytest.mark.parametrize("line", [
    b"", b"{}", b'{"processing_s_mean": 0.1, "timed": 1}',  # no newline: cut off
    b"garbage\n", b'{"processing_s_mean": NaN, "timed": 1}\n', b'{"processing_s_mean": -1, "timed": 1}\n',
    b'{"processing_s_mean": 1e9, "timed": 1}\n', b'{"processing_s_mean": 0.1, "timed": 0}\n',
    b'{"processing_s_mean": 0.1, "timed": true}\n', b'{"processing_s_mean": true, "timed": 1}\n',
    b'{"processing_s_mean": 0.1, "processing_s_mean": 0.2, "timed": 1}\n', b'[0.1]\n',
    b'{"a": {"b": {"c": 1}}, "processing_s_mean": 0.1, "timed": 1}\n', b"\xff\xfe\n",
])
def test_a_service_saying_garbage_has_no_timing(line: bytes) -> None:
    assert parse_service_stats(line) is None


def test_a_service_timing_is_read() -> None:
    assert parse_service_stats(b'{"processing_s_mean": 0.04, "timed": 3, "cpu_s_mean": 0.02}\nmore') == (0.04, 0.02)
    assert parse_service_stats(b'{"processing_s_mean": 0.04, "timed": 3, "cpu_s_mean": -5}\n') == (0.04, None)


class Steps:
    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def _tree(root: Path, v2: bool, usage: str, quota: tuple[str, str] | None, mem: str) -> Path:
    rel = host_cgroup("/run/netns/tb-edge1")
    if v2:
        (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
        (root / "cgroup.controllers").write_text("cpu memory\n")
        d = root / rel
        d.mkdir(parents=True)
        (d / "cpu.stat").write_text(f"usage_usec {usage}\nuser_usec 1\n")
        (d / "cpu.max").write_text(f"{quota[0]} {quota[1]}\n" if quota else "max 100000\n")
        (d / "memory.current").write_text(mem)
        (d / "memory.max").write_text("max\n")
        return d / "cpu.stat"
    for ctl in ("cpu", "cpuacct", "memory"):
        (root / ctl / rel).mkdir(parents=True)
    (root / "cpuacct" / rel / "cpuacct.usage").write_text(usage)
    (root / "cpu" / rel / "cpu.cfs_quota_us").write_text(quota[0] if quota else "-1")
    (root / "cpu" / rel / "cpu.cfs_period_us").write_text(quota[1] if quota else "100000")
    (root / "memory" / rel / "memory.usage_in_bytes").write_text(mem)
    (root / "memory" / rel / "memory.limit_in_bytes").write_text("1048576\n")
    return root / "cpuacct" / rel / "cpuacct.usage"


@pytest.mark.parametrize("v2", [False, True])
def test_the_meter_reads_use_capacity_and_memory_of_the_host_cgroup(tmp_path: Path, v2: bool) -> None:
    usage_file = _tree(tmp_path, v2, "0" if v2 else "0", ("50000", "100000"), "4096\n")
    meter = ResourceMeter("/run/netns/tb-edge1", tmp_path, clock=Steps(10.0, 12.0, 14.0))
    assert meter.cpu_cores() == 0.5
    frac, usage = meter.cpu_used_fraction()  # first reading: two of them (10 s, 12 s), nothing used
    assert (frac, usage) == (0.0, 0.0)
    usage_file.write_text("usage_usec 500000\n" if v2 else str(500_000_000))  # 0.5 CPU-s over 2 s of 0.5 core
    frac, usage = meter.cpu_used_fraction()
    assert frac == pytest.approx(0.5) and usage == pytest.approx(0.5)
    used, total = meter.memory_bytes()
    assert used == 4096 and total > 0
    if not v2:
        assert total == 1048576  # the cgroup's limit when it is below the machine's memory


def test_the_meter_of_a_host_without_a_cgroup_reports_nothing_used(tmp_path: Path) -> None:
    meter = ResourceMeter(None, tmp_path, clock=Steps(0.0, 1.0))
    assert meter.cpu_used_fraction() == (0.0, 0.0)
    assert meter.cpu_cores() >= 1 and meter.memory_bytes()[0] == 0


# ------------------------------------------------------------------------------------------ the agent


async def _report_as(env: Env, name: str) -> HostReport:
    pki = env.pki if name == tls.CLIENT_NAME else host_dir(env.pki, name)
    return await query_report(tls.client_context(pki, name), "edge2", ("127.0.0.1", env.port))


def test_the_client_and_the_host_itself_get_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        env.agent.store.put_service(_spec("web"))
        for who in (tls.CLIENT_NAME, "edge2"):
            rep = await _report_as(env, who)
            assert rep.host == "edge2" and 0 <= rep.cpu_used_fraction <= 1
            assert [(s.name, s.kind, s.state, s.processing_s) for s in rep.services] == [
                ("web", "counter", "absent", None)]

    _run(tmp_path, monkeypatch, body)


def test_a_peer_gets_the_report_only_while_a_grant_links_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        for peer in ("edge1", "edge3"):
            with pytest.raises(EngineError, match="not the client, this host, or a granted neighbour"):
                await _report_as(env, peer)
        grant = grant_body(new_token(), "edge1", ["edge2"], ["web"], 60.0)
        await client._request(env.directory, "edge2", MsgType.GRANT, **grant)
        assert (await _report_as(env, "edge1")).host == "edge2"
        with pytest.raises(EngineError, match="granted neighbour"):
            await _report_as(env, "edge3")  # a grant links edge1, not every host of the CA
        env.agent.grants.clock = lambda: 1e12  # expired: edge1 is no neighbour any more
        with pytest.raises(EngineError, match="granted neighbour"):
            await _report_as(env, "edge1")

    _run(tmp_path, monkeypatch, body)


def test_malformed_and_oversized_report_requests_are_refused(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        # a REPORT with a body it does not allow: an error line, nothing measured for it
        conn = await env.peer("edge2")
        payload = b'{"services": ["../../etc"]}'
        await conn.write(HEADER.pack(MAGIC, PROTOCOL_VERSION, int(MsgType.REPORT), len(payload)) + payload)
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert reply is None or (isinstance(reply, Message) and reply.type is MsgType.ERROR)
        # a REPORT declaring a 4 GiB body: refused from its header, the connection closed, nothing allocated
        conn = await env.peer("edge2")
        await conn.write(HEADER.pack(MAGIC, PROTOCOL_VERSION, int(MsgType.REPORT), (1 << 32) - 1))
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert reply is None or (isinstance(reply, Message) and reply.type is MsgType.ERROR)
        # a REPORT_REPLY pushed at the agent is not a request
        conn = await env.peer("edge2")
        await conn.write(encode(MsgType.REPORT_REPLY, host="edge2", report=GOOD.to_dict()))
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and "unexpected first message" in reply.body["message"]
        # and it still answers
        assert (await _report_as(env, tls.CLIENT_NAME)).host == "edge2"

    _run(tmp_path, monkeypatch, body)
