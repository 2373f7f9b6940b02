"""The ``[testbed.base_stations]`` section: defaults, path classes, overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.testbed import config_from_mapping, load_config
from edgemigrate.testbed.config import DEFAULT_BS_LINKS, LinkSpec, config_to_mapping
from edgemigrate.testbed.plan import Plan


def test_default_has_no_base_stations_and_unchanged_namespaces() -> None:
    cfg = config_from_mapping({})
    assert cfg.base_stations.count == 0
    assert Plan("x", cfg).base_stations() == []
    assert all("-bs" not in ns for ns in Plan("x", cfg).namespaces())


def test_path_classes_colocated_other_edge_and_cloud() -> None:
    cfg = config_from_mapping({"edges": 3, "base_stations": {"count": 3}})
    hosts = {h.name: h for h in cfg.hosts()}
    assert cfg.bs_link("bs2", hosts["edge2"]) == DEFAULT_BS_LINKS["bs_local"]
    assert cfg.bs_link("bs2", hosts["edge3"]) == DEFAULT_BS_LINKS["bs_edge"]
    assert cfg.bs_link("bs1", hosts["cloud"]) == DEFAULT_BS_LINKS["bs_cloud"]
    # the BS paths add one wired hop to the edge-edge / edge-cloud RTT of Ngo et al. 2020, sec. V-A
    assert DEFAULT_BS_LINKS["bs_edge"].rtt_ms > cfg.links["edge_edge"].rtt_ms
    assert DEFAULT_BS_LINKS["bs_cloud"].rtt_ms > cfg.links["cloud_edge"].rtt_ms


def test_override_and_class_change_round_trip() -> None:
    raw = {"edges": 3, "base_stations": {"count": 2, "links": {"bs_edge": {"rtt_ms": 60}},
                                         "override": [{"bs": "bs1", "host": "edge3", "rate_mbit": 10}]}}
    cfg = config_from_mapping(raw)
    hosts = {h.name: h for h in cfg.hosts()}
    assert cfg.bs_link("bs1", hosts["edge3"]) == LinkSpec(rate_mbit=10)
    assert cfg.bs_link("bs2", hosts["edge3"]).rtt_ms == 60
    assert config_from_mapping(config_to_mapping(cfg)) == cfg


def test_addresses_of_base_stations_and_mobile_users_are_distinct_and_reserved() -> None:
    cfg = config_from_mapping({"clients": 2, "base_stations": {"count": 3}})
    plan = Plan("x", cfg)
    clients = [h for h in plan.hosts() if h.kind.value == "client"]
    addrs = [b.ip for b in plan.base_stations()] + [plan.mu_ip(c) for c in clients] + [h.ip for h in plan.hosts()]
    assert len(set(addrs)) == len(addrs)
    with pytest.raises(ConfigError, match="reserved"):
        plan.check_service_ip(plan.base_stations()[0].ip)
    assert [b.netns for b in plan.base_stations()] == ["x-bs1", "x-bs2", "x-bs3"]


@pytest.mark.parametrize(("raw", "match"), [
    ({"count": 10}, r"base_stations\.count must be an integer in \[0, 9\]"),
    ({"count": True}, r"base_stations\.count: expected an integer"),
    ({"cont": 1}, r"unknown key 'cont' \(did you mean 'count'\?\)"),
    ({"count": 1, "links": {"bs_loc": {}}}, r"unknown path class 'bs_loc'"),
    ({"count": 1, "links": {"bs_edge": {"rtt_ms": -1}}}, r"links\.bs_edge: rtt_ms must be"),
    ({"count": 2, "override": [{"bs": "bs5", "host": "edge1"}]}, r"unknown base station 'bs5'"),
    ({"count": 2, "override": [{"bs": "bs1", "host": "client1"}]}, r"'client1' is not an edge or cloud host"),
    ({"count": 2, "override": [{"host": "edge1"}]}, r"override\[0\]: expected a table with bs"),
    ({"count": 2, "override": {"bs": "bs1"}}, r"override: expected an array of tables"),
    ("three", r"base_stations: expected a table"),
])
def test_errors_are_one_line_and_name_the_key(raw: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        config_from_mapping({"base_stations": raw})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("testbed")


def test_base_stations_need_a_client_host() -> None:
    with pytest.raises(ConfigError, match="at least one client host"):
        config_from_mapping({"clients": 0, "base_stations": {"count": 1}})


def test_the_handover_scenario_file_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "testbed-handover.toml"
    cfg = load_config(path)
    assert cfg.base_stations.count == 3 and cfg.base_stations.links == DEFAULT_BS_LINKS
    assert load_config(path.with_name("testbed-default.toml")).base_stations.count == 0
