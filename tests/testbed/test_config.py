"""Scenario parsing for the testbed: defaults from Ngo et al. 2020, validation, unknown keys with suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.testbed.config import (
    Emulator,
    HostKind,
    LinkSpec,
    TestbedConfig,
    config_from_mapping,
    config_to_mapping,
    load_config,
)
from edgemigrate.testbed.plan import Plan


def test_default_profile_is_ngo_2020() -> None:
    cfg = load_config(None)
    hosts = {h.name: h for h in cfg.hosts()}
    assert list(hosts) == ["edge1", "edge2", "edge3", "cloud", "client1"]
    assert cfg.link_between(hosts["edge1"], hosts["edge2"]) == LinkSpec(rate_mbit=100, rtt_ms=50)
    assert cfg.link_between(hosts["cloud"], hosts["edge3"]) == LinkSpec(rate_mbit=75, rtt_ms=150)
    assert cfg.link_between(hosts["client1"], hosts["edge1"]).rtt_ms == 5
    assert cfg.congestion_control == "bbr"
    assert cfg.emulator is Emulator.AUTO


def test_toml_file_with_classes_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text("""
[testbed]
edges = 2
clients = 2
subnet = "10.91.0.0/16"
[testbed.links.edge_cloud]
rate_mbit = 50
[[testbed.override]]
hosts = ["edge1", "edge2"]
rate_mbit = 10
rtt_ms = 20
loss = 0.01
""")
    cfg = load_config(p)
    hosts = {h.name: h for h in cfg.hosts()}
    assert [h.kind for h in cfg.hosts()].count(HostKind.CLIENT) == 2
    assert cfg.link_between(hosts["edge1"], hosts["cloud"]) == LinkSpec(rate_mbit=50, rtt_ms=150)
    assert cfg.link_between(hosts["edge2"], hosts["edge1"]) == LinkSpec(10, 20, 0.01)
    assert config_from_mapping(config_to_mapping(cfg)) == cfg


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"edgs": 3}, "unknown key 'edgs' (did you mean 'edges'?)"),
        ({"links": {"edge_edg": {"rate_mbit": 1}}}, "did you mean 'edge_edge'?"),
        ({"links": {"edge_edge": {"rate_mbps": 1}}}, "unknown key 'rate_mbps' (did you mean 'rate_mbit'?)"),
        ({"override": [{"hosts": ["edge1", "edge9"], "rate_mbit": 1}]}, "unknown host 'edge9'"),
        ({"emulator": "netm"}, "did you mean 'netem'?"),
        ({"edges": "3"}, "testbed.edges: expected an integer"),
        ({"links": {"edge_edge": {"loss": 1.5}}}, "loss must be a probability"),
        ({"subnet": "8.8.0.0/16"}, "private IPv4 network"),
        ({"subnet": "10.1.2.0/24"}, "/22 or larger"),
        ({"edges": 0, "clouds": 0, "clients": 1}, "between 2 and"),
    ],
)
def test_bad_keys_and_values_are_rejected(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping(raw)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[testbed]\nmtu_byte = 1500\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: testbed: unknown key 'mtu_byte' \(did you mean 'mtu_bytes'\?\)"):
        load_config(p)
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_config(tmp_path / "missing.toml")
    p.write_text("[testbed\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)


def test_plan_names_and_addresses() -> None:
    plan = Plan("tb1", TestbedConfig(edges=2, clouds=1, clients=1, subnet="10.92.0.0/16"))
    hosts = plan.hosts()
    assert [h.netns for h in hosts] == ["tb1-edge1", "tb1-edge2", "tb1-cloud", "tb1-client1"]
    assert [h.ip for h in hosts] == ["10.92.1.1", "10.92.1.2", "10.92.1.3", "10.92.1.4"]
    assert plan.gw_ip == "10.92.0.1" and plan.mgmt_ip == "10.92.0.254"
    assert plan.service_ip(0) == "10.92.2.0"
    assert plan.tun(1, 3) == "t1x3"
    assert len(plan.mgmt_if) <= 15
    assert plan.check_service_ip("10.92.2.7") == "10.92.2.7"
    for bad in ("10.93.2.7", "10.92.1.1", "10.92.0.1", "nonsense"):
        with pytest.raises(ConfigError):
            plan.check_service_ip(bad)
    with pytest.raises(ConfigError, match="testbed name"):
        Plan("Bad-Name", TestbedConfig())
    with pytest.raises(ConfigError, match="testbed name"):
        Plan("waytoolongname1", TestbedConfig())
