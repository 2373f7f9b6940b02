"""The simulator backend behind the controller: the Protocol, the calibration file, determinism, and the
coordinated schedule of Ngo et al. 2020 against the nearest baseline on the testbed mirror."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math

import numpy as np
import pytest

from edgemigrate.controller.backend import Backend, BackendError
from edgemigrate.controller.sim import (
    CALIBRATION_FORMAT,
    SimBackend,
    SimController,
    calibration_to_json,
    load_calibration,
    load_scenario,
    metrics_columns,
    parse_calibration,
    parse_scenario,
)
from edgemigrate.controller.sim.calibration import MAX_CALIBRATION_BYTES, MAX_SAMPLES
from edgemigrate.controller.store import ActionState, HostState
from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.costs import handover as ho
from edgemigrate.planning import make_planner


def _small_city(seed: int = 3) -> object:
    return dataclasses.replace(load_scenario("handover-city"), users=150, bss=40, edge_servers=5, seed=seed)


def _good_calibration() -> dict:
    return calibration_to_json({"edge-0": (1000.0, [(50e6, 0.1), (100e6, 0.2)], [(72e6, 0.144)])},
                               service={"image_bytes": 50e6, "checkpoint_bytes": 20e6, "delta_bytes": 2e6},
                               measured_downtime_s=[0.6])


def test_sim_backend_honours_the_protocol_and_the_deployment_drives_it_to_done() -> None:
    backend = SimBackend(load_scenario("handover-testbed"))
    assert isinstance(backend, Backend)
    ctl = SimController(backend, make_planner("nearest"))
    metrics = ctl.run(120)
    actions = ctl.store.actions()
    assert actions, "the MU walks past three base stations: the plan must hand it over"
    assert all(a.state is ActionState.DONE for a in actions)
    assert sum(m.handovers for m in metrics) == sum(a.dest_bs is not None for a in actions)
    assert not ctl.store.in_flight()
    # the store (updated by the DONE transitions) and the simulated world agree on where everything is
    for p in ctl.store.placements():
        u = backend.topo.users.index(p.user)
        assert backend.topo.hosts[backend.server[u]] == p.host
        assert backend.topo.bss[backend.bs[u]] == p.base_station
    ctl.close()


def test_migrate_refuses_a_wrong_source_and_an_unreachable_host_is_marked_down() -> None:
    backend = SimBackend(load_scenario("handover-testbed"))
    ctl = SimController(backend, make_planner("nearest"))
    src = ctl.store.placement("mu-0", "svc-0").host
    other = next(h for h in backend.topo.hosts if h != src)
    with pytest.raises(BackendError, match="does not run on"):
        asyncio.run(backend.migrate("svc-0", other, src, "s1"))
    with pytest.raises(BackendError, match="not in the simulated scenario"):
        asyncio.run(backend.migrate("svc-9", src, other, "s1"))
    backend.down.add(other)
    from edgemigrate.controller.store import Action, ActionKind, new_action_id
    a = ctl.store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "mu-0", "svc-0",
                                     source_host=src, dest_host=other))
    final, down = asyncio.run(ctl.deployment.run(a))
    assert down == other and ctl.store.host(other).state is HostState.DOWN
    assert final.state is ActionState.ROLLED_BACK  # the service still runs at its source
    assert ctl.store.placement("mu-0", "svc-0").host == src
    ctl.close()


def test_calibration_is_fitted_to_eq5_and_drives_the_simulated_migration_times() -> None:
    cal = parse_calibration(_good_calibration())
    h = cal.hosts["edge-0"]
    assert h.psi == pytest.approx(1000.0 * 0.2 / 100e6)  # seconds = psi * bytes / C_s, both samples on the line
    assert h.rho == pytest.approx(1000.0 * 0.144 / 72e6)
    assert cal.measured_downtime_s == (0.6,)
    backend = SimBackend(load_scenario("handover-testbed"), cal)
    t = backend.migration_times_s(0, 1)
    S = backend.topo.servers
    expect = ho.migration_s(h.psi, S.rho[1], 50e6, 20e6, 2e6, 1000.0, S.cpu_power[1], 100e6)
    assert t["downtime_s"] == pytest.approx(float(expect))
    assert t["total_s"] == pytest.approx(t["premigration_s"] + t["downtime_s"])


def _set(body: dict, path: tuple, value: object) -> dict:
    obj = body
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    return body


@pytest.mark.parametrize(("path", "value", "key"), [
    (("format",), "other/1", "calibration.format"),
    (("extra",), 1, "calibration.extra"),
    (("hosts",), {}, "calibration.hosts"),
    (("hosts", "edge-0", "cpu_power"), 0, "calibration.hosts.edge-0.cpu_power"),
    (("hosts", "edge-0", "cpu_power"), True, "calibration.hosts.edge-0.cpu_power"),
    (("hosts", "edge-0", "checkpoint"), [{"bytes": -1, "seconds": 1}], "calibration.hosts.edge-0.checkpoint[0].bytes"),
    (("hosts", "edge-0", "restore"), [{"bytes": 1e6, "seconds": float("nan")}],
     "calibration.hosts.edge-0.restore[0].seconds"),
    (("hosts", "edge-0", "restore"), [{"bytes": 0, "seconds": 1}], "calibration.hosts.edge-0.restore"),
    (("hosts", "edge-0", "restore"), [{"bytes": 1}] , "calibration.hosts.edge-0.restore[0].seconds"),
    (("hosts", "edge-0", "checkpoint"), [{"bytes": 1, "seconds": 1}] * (MAX_SAMPLES + 1),
     "calibration.hosts.edge-0.checkpoint"),
    (("hosts", "Bad Host!"), {}, "calibration.hosts"),
    (("service", "image_mb"), 3, "calibration.service.image_mb"),
    (("measured_downtime_s",), "0.5", "calibration.measured_downtime_s"),
])
def test_bad_calibration_is_one_line_error_naming_the_key(path: tuple, value: object, key: str) -> None:
    body = _set(_good_calibration(), path, value)
    with pytest.raises(ValidationError) as info:
        parse_calibration(body)
    msg = str(info.value)
    assert msg.startswith(key) and "\n" not in msg


def test_calibration_file_is_bounded_and_must_be_json(tmp_path) -> None:  # noqa: ANN001
    good = tmp_path / "cal.json"
    good.write_text(json.dumps(_good_calibration()))
    assert load_calibration(good).hosts["edge-0"].cpu_power == 1000.0
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CALIBRATION_BYTES + 1))
    with pytest.raises(ValidationError, match="at most"):
        load_calibration(big)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValidationError, match="not JSON"):
        load_calibration(bad)
    with pytest.raises(ValidationError, match="cannot read"):
        load_calibration(tmp_path / "missing.json")
    assert CALIBRATION_FORMAT in good.read_text()


@pytest.mark.parametrize(("table", "key"), [
    ({"name": "x", "colour": 1}, "handover.colour"),
    ({"name": "x", "users": -1}, "handover.users"),
    ({"name": "x", "mobility": "teleport", "bs_positions_m": [[0, 0]], "edge_servers": 1}, "handover.mobility"),
    ({"name": "x", "tick_s": float("inf")}, "handover.tick_s"),
    ({"users": 1}, "handover.name"),
])
def test_bad_scenario_is_one_line_config_error_naming_the_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario({"handover": table})
    assert str(info.value).startswith(key) and "\n" not in str(info.value)


@pytest.mark.parametrize("planner", ["nearest", "orchestrated"])
def test_same_seed_gives_the_same_per_tick_metrics(planner: str) -> None:
    runs = []
    for _ in range(2):
        ctl = SimController(SimBackend(_small_city()), make_planner(planner))
        runs.append(metrics_columns(ctl.run(8)))
        ctl.close()
    for name, col in runs[0].items():
        np.testing.assert_array_equal(col, runs[1][name], err_msg=name)
    assert runs[0]["replanned"].sum() > 0  # the run did exercise the planner
    other = SimController(SimBackend(_small_city(seed=4)), make_planner(planner))
    cols = metrics_columns(other.run(8))
    assert any(not np.array_equal(cols[k], runs[0][k]) for k in ("replanned", "handovers", "e2e_delay_p95_s"))
    other.close()


def test_testbed_mirror_orchestrated_downtime_is_at_most_nearest() -> None:
    """Structural, not a timing: the testbed's edge servers are identical (same C_s, psi, rho, links), so a
    move to any of them costs the same T_mig. Nearest runs the migration after the handover (sequential
    triggers: T_ho + T_mig per move); the orchestrated plan starts both outages at the handover instant
    (max(T_mig, T_ho)) and moves only when eq. 3a's gain pays for the downtime, so it cannot lose."""
    out = {}
    for planner in ("nearest", "orchestrated"):
        backend = SimBackend(load_scenario("handover-testbed"))
        ctl = SimController(backend, make_planner(planner))
        m = metrics_columns(ctl.run(200))
        out[planner] = m
        t_mig = backend.migration_times_s(0, 1)["downtime_s"]
        moves = int(m["migrations"].sum())
        ctl.close()
        if planner == "nearest":
            assert moves > 0
            assert m["downtime_s"].sum() == pytest.approx(moves * (t_mig + 0.5) + (m["handovers"].sum() - moves) * 0.5)
    # simulated seconds from the eq. 5 model, the same for every run of this seed: no clock is read
    orchestrated_outage_s, nearest_outage_s = out["orchestrated"]["downtime_s"].sum(), out["nearest"]["downtime_s"].sum()
    assert orchestrated_outage_s <= nearest_outage_s
    assert math.isfinite(out["orchestrated"]["e2e_delay_mean_s"].max())
