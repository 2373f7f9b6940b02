"""Pieces of the control layer that need neither root nor CRIU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.control.source import RoundCost, StopRule
from edgemigrate.control.spec import ServiceKind, ServiceSpec, build_bundle
from edgemigrate.control.store import AgentStore, SessionPhase, SessionRecord
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.runc import read_dump_stats
from edgemigrate.engine.delta import encode_varint

MiB = 1 << 20


LINK_BYTES_PER_S = 12.5e6  # 100 Mbit/s


def _r(payload: int, wire: int | None = None, freeze_s: float = 0.08, link: float = LINK_BYTES_PER_S) -> RoundCost:
    return RoundCost(payload, payload if wire is None else wire, freeze_s, link)


@pytest.mark.parametrize(
    ("rounds", "again"),
    [
        ([], True),  # the first round always runs
        # 200 MB counter: 75 MB on the wire take 6 s, a quarter of that is worth far more than a freeze
        ([_r(227 * MiB, 75 * MiB)], True),
        # ... and once the second round found 80 KB dirty, a third cannot save a freeze
        ([_r(227 * MiB, 75 * MiB), _r(80 << 10, 30 << 10)], False),
        # Redis, 3 MB that compress to 350 KB: 28 ms on the wire, at most 7 ms to save against an 80 ms freeze
        ([_r(3 * MiB, 350 << 10)], False),
        # the same image on a 1 Mbit/s link: worth a second round
        ([_r(3 * MiB, 350 << 10, link=125e3)], True),
        # deltas that do not shrink save nothing
        ([_r(200 * MiB), _r(60 * MiB), _r(60 * MiB)], False),
        # shrinking by half, 30 MB left: another round saves ~0.6 s
        ([_r(200 * MiB), _r(60 * MiB), _r(30 * MiB)], True),
        # ... unless a freeze costs more than that
        ([_r(200 * MiB), _r(60 * MiB), _r(30 * MiB, freeze_s=1.0)], False),
        ([_r(100 * MiB), _r(60 * MiB), _r(30 * MiB), _r(15 * MiB), _r(8 * MiB)], False),  # max rounds
        ([_r(1 * MiB, link=0.0)], True),  # no link measured yet: no grounds to stop
    ],
)
def test_stop_rule_weighs_the_final_rounds_saving_against_a_freeze(rounds: list[RoundCost], again: bool) -> None:
    assert StopRule().another_round(rounds) is again


@pytest.mark.parametrize(
    ("dirty_bytes_per_s", "again"),
    [
        (None, True),  # no history: the first round's guess q = 1/2 makes a second round worth its freeze
        (20e3, False),  # facedetect's measured 20 KB/s: 16 s of transfer dirty 320 KB of 200 MB, q = 0.0016
        (6e6, True),  # a writer that dirties ~half the state while it is sent: another round pays
        (1e9, False),  # one that dirties it all again (q = 1): another round saves nothing
        (0.0, False),
    ],
)
def test_a_known_dirty_rate_tells_whether_a_second_round_finds_anything(dirty_bytes_per_s: float | None,
                                                                        again: bool) -> None:
    """The first round sent 200 MB uncompressed over 100 Mbit/s (16 s) and froze the service 0.4 s."""
    first = [_r(200_000_000, freeze_s=0.4)]
    assert StopRule(dirty_bytes_per_s=dirty_bytes_per_s).another_round(first) is again
    # a measured q (two rounds) wins over the estimate
    two = [_r(200_000_000, freeze_s=0.4), _r(100_000_000, freeze_s=0.4)]
    assert StopRule(dirty_bytes_per_s=0.0).another_round(two) is StopRule().another_round(two) is True


def test_stop_rule_saving_is_largest_for_half_shrinking_deltas() -> None:
    rule = StopRule()
    # the same last round (50 MiB), reached by deltas that shrank by q
    w = [rule.expected_saving_s([_r(int(50 * MiB / q)), _r(50 * MiB)]) for q in (0.02, 0.25, 0.5, 0.75, 1.0)]
    assert w[2] == max(w) and w[0] < w[1] and w[4] == 0.0
    assert rule.expected_saving_s([_r(100 * MiB)]) == pytest.approx(0.25 * 100 * MiB / LINK_BYTES_PER_S)


def test_spec_roundtrip_and_hostile_input() -> None:
    spec = ServiceSpec("counter", ServiceKind.COUNTER, "10.77.2.0", 7000, 200.0)
    assert ServiceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    bad = spec.to_dict() | {"argv": ["/bin/sh", "-c", "rm -rf /"]}
    with pytest.raises(ConfigError, match="unknown keys"):
        ServiceSpec.from_dict(bad)
    with pytest.raises(ConfigError, match="service.name"):
        ServiceSpec.from_dict(spec.to_dict() | {"name": "../etc"})
    with pytest.raises(ConfigError, match="service.kind"):
        ServiceSpec.from_dict(spec.to_dict() | {"kind": "shell"})
    with pytest.raises(ConfigError, match="service.ip"):
        ServiceSpec.from_dict(spec.to_dict() | {"ip": "example.com"})
    with pytest.raises(ConfigError, match="service.port"):
        ServiceSpec.from_dict(spec.to_dict() | {"port": 0})


def test_bundle_takes_namespaces_and_mounts_from_the_local_host(tmp_path: Path) -> None:
    spec = ServiceSpec("counter", ServiceKind.COUNTER, "10.77.2.0", 7000)
    build_bundle(spec, "/run/netns/em-edge2", tmp_path / "b")
    cfg = json.loads((tmp_path / "b/config.json").read_text())
    assert {"type": "network", "path": "/run/netns/em-edge2"} in cfg["linux"]["namespaces"]
    assert cfg["root"]["readonly"] is True and cfg["process"]["noNewPrivileges"] is True
    assert all("ro" in m["options"] for m in cfg["mounts"] if m["type"] == "bind")
    assert "CAP_SYS_ADMIN" not in cfg["process"]["capabilities"]["bounding"]
    assert cfg["process"]["args"][1:3] == ["-m", "edgemigrate.workloads.counter"]
    assert cfg["linux"]["cgroupsPath"] == "/edgemigrate/em-edge2/counter"


def test_store_roundtrip(tmp_path: Path) -> None:
    st = AgentStore(tmp_path)
    spec = ServiceSpec("redis", ServiceKind.REDIS, "10.77.2.1", 6379)
    st.put_service(spec)
    assert st.services() == {"redis": spec}
    rec = SessionRecord("abc", "source", spec, "edge2", "10.77.1.2:7400", SessionPhase.FROZEN, "/dev/shm/x")
    st.put_session(rec)
    (tmp_path / "sessions" / "junk.json").write_text("{not json")
    assert st.sessions() == [rec]
    st.drop_session("abc")
    st.drop_service("redis")
    assert st.sessions() == [] and st.services() == {}


def test_only_criu_lock_rules_are_ever_applied() -> None:
    ok = ("-A INPUT -s 10.77.1.4/32 -d 10.77.2.0/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 40000 "
          "--dport 7000 -j DROP")
    assert netlock.check_rules([ok]) == [ok]
    for bad in ["-A INPUT -j ACCEPT", "-F", ok.replace("DROP", "ACCEPT"), ok + " ; rm -rf /",
                "-A FORWARD" + ok[len("-A INPUT"):]]:
        with pytest.raises(EngineError, match="not a connection lock"):
            netlock.check_rules([bad])


def test_the_engines_address_lock_is_a_lock_rule_of_that_address() -> None:
    rules = netlock.service_lock_rules("10.77.2.9")
    assert netlock.check_service_rules(rules, "10.77.2.9") == rules
    with pytest.raises(EngineError, match="another address"):
        netlock.check_service_rules(rules, "10.77.2.8")
    for bad in ["10.77.2.9/0", "10.77.2.9 -j ACCEPT", "256.1.1.1", "", "::1"]:
        with pytest.raises(EngineError, match="not an IPv4 address"):
            netlock.service_lock_rules(bad)
    widened = rules[0].replace("/32", "/0")
    with pytest.raises(EngineError, match="not a connection lock"):
        netlock.check_rules([widened])


def test_criu_dump_stats_decoder(tmp_path: Path) -> None:
    def field(num: int, val: int) -> bytes:
        return encode_varint(num << 3) + encode_varint(val)

    inner = field(1, 669) + field(2, 84292) + field(7, 13766)
    body = encode_varint((1 << 3) | 2) + encode_varint(len(inner)) + inner
    data = (0x55105940).to_bytes(4, "little") + (0x57093306).to_bytes(4, "little") + len(body).to_bytes(4, "little")
    (tmp_path / "stats-dump").write_bytes(data + body)
    assert read_dump_stats(tmp_path / "stats-dump") == {
        "freezing_time_us": 669, "frozen_time_us": 84292, "pages_written": 13766}
    assert read_dump_stats(tmp_path / "absent") == {}


def test_agent_deploy_offers_every_service_kind() -> None:
    from click.testing import CliRunner

    from edgemigrate.cli import cli as edgemigrate_cli

    out = CliRunner().invoke(edgemigrate_cli, ["agent", "deploy", "--help"]).output
    assert all(kind.value in out for kind in ServiceKind), out
