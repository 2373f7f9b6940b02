"""Deployment and controller rounds on the real store (SQLite in memory) and the in-memory backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edgemigrate.controller.deployment import Deployment, actions_from_plan
from edgemigrate.controller.monitor import Monitor, SnapshotDefaults
from edgemigrate.controller.service import Controller
from edgemigrate.controller.store import (
    Action,
    ActionKind,
    ActionState,
    HostState,
    new_action_id,
    open_store,
)
from edgemigrate.planning import make_planner

from .controller_helpers import RTT, MemoryBackend, seed_edge

NOW = 1_000_000.0


@pytest.fixture
def store():
    s = open_store("sqlite://:memory:", clock=lambda: NOW)
    seed_edge(s, ("u1", "u2"))
    yield s
    s.close()


@pytest.fixture
def backend():
    return MemoryBackend(running={"edge1": {"counter"}})


def _controller(store, backend, planner="nearest") -> Controller:
    mon = Monitor(store, SnapshotDefaults(bs_host_rtt_s=RTT), clock=lambda: NOW)
    dep = Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0, resume_wait_s=0.0)
    return Controller(store, backend, make_planner(planner), mon, dep)


def _moves_to_bs2(ctl: Controller, user: str = "u1") -> None:
    ctl.monitor.ingest_mu({"user": user, "at_s": NOW, "rssi": [{"base_station": "bs1", "rssi_dbm": -85.0},
                                                                {"base_station": "bs2", "rssi_dbm": -50.0}]})


def test_round_moves_the_triggered_user_and_its_placement(store, backend) -> None:
    ctl = _controller(store, backend)
    _moves_to_bs2(ctl)
    (a,) = asyncio.run(ctl.plan_round())
    assert a.state is ActionState.DONE and a.kind is ActionKind.MIGRATION_HANDOVER
    assert (a.source_host, a.dest_host, a.source_bs, a.dest_bs) == ("edge1", "edge2", "bs1", "bs2")
    assert backend.migrations == [("counter", "edge1", "edge2")] and backend.handovers == [("u1", "bs1", "bs2")]
    p = store.placement("u1", "counter")
    assert (p.host, p.base_station) == ("edge2", "bs2")
    assert store.placement("u2", "counter").host == "edge1"  # not triggered: stays
    assert asyncio.run(ctl.plan_round()) == []  # nothing left to do


def test_failed_migration_is_rolled_back_when_the_service_runs_at_the_source(store, backend) -> None:
    ctl = _controller(store, backend)
    _moves_to_bs2(ctl)
    backend.fail_next = "restore failed at the destination"
    (a,) = asyncio.run(ctl.plan_round())
    assert a.state is ActionState.ROLLED_BACK and "restore failed" in a.detail
    assert store.placement("u1", "counter").host == "edge1" and store.in_flight() == []


def test_dead_destination_is_marked_down_and_the_plan_fails_over(store, backend) -> None:
    ctl = _controller(store, backend)
    _moves_to_bs2(ctl)
    backend.down.add("edge2")
    first, second = asyncio.run(ctl.plan_round())
    assert first.dest_host == "edge2" and first.state is ActionState.ROLLED_BACK
    assert store.host("edge2").state is HostState.DOWN
    assert second.dest_host == "edge3" and second.state is ActionState.DONE  # next nearest to bs2
    assert store.placement("u1", "counter").host == "edge3"
    # the host answers again: a poll marks it up
    backend.down.clear()
    assert asyncio.run(ctl.poll_hosts())["edge2"] == "up" and store.host("edge2").state is HostState.UP


def test_action_for_a_host_already_down_fails_before_it_starts(store, backend) -> None:
    dep = Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0)
    a = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u1", "counter", "edge1", "edge2"))
    store.set_host_state("edge2", HostState.DOWN)
    final, down = asyncio.run(dep.run(a))
    assert final.state is ActionState.FAILED and "edge2 is down" in final.detail and down is None
    assert backend.migrations == []


def test_actions_come_in_trigger_order(store, backend) -> None:
    ctl = _controller(store, backend, "orchestrated")
    for u in ("u1", "u2"):
        _moves_to_bs2(ctl, u)
    snap, index = ctl.monitor.snapshot()
    plan = ctl.planner.plan(snap, np.random.default_rng(0))
    actions = actions_from_plan(plan, index, snap.users.server, snap.users.bs)
    firsts = [min(t for t in (a.migrate_at_s, a.handover_at_s) if t is not None) for a in actions]
    assert len(actions) == 2 and firsts == sorted(firsts)
    assert {a.user for a in actions} == {"u1", "u2"}


def test_resume_rolls_back_at_source_and_leaves_a_split_to_the_operator(store) -> None:
    """RUNNING, service at its source only: ROLLED_BACK. Running at both ends: FAILED, never picked for
    the operator (one copy must go, and which one holds the newer state only the service knows)."""
    backend = MemoryBackend(running={"edge1": {"counter"}, "edge2": set(), "edge3": {"counter"}})
    dep = Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0, resume_wait_s=0.0)
    stayed = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u1", "counter", "edge1", "edge2"))
    split = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u2", "counter", "edge1", "edge3"))
    for a in (stayed, split):
        store.transition(a.id, ActionState.PLANNED, ActionState.RUNNING)
    settled = {a.id: a for a in asyncio.run(dep.resume())}
    assert settled[stayed.id].state is ActionState.ROLLED_BACK
    assert settled[split.id].state is ActionState.FAILED and "split" in settled[split.id].detail
    assert store.placement("u1", "counter").host == "edge1" and store.in_flight() == []


def test_resume_finishes_arrived_fails_lost_and_unstarted(store) -> None:
    backend = MemoryBackend(running={"edge1": set(), "edge2": {"counter"}, "edge3": set()})
    dep = Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0, resume_wait_s=0.0)
    arrived = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u1", "counter", "edge1", "edge2"))
    store.transition(arrived.id, ActionState.PLANNED, ActionState.RUNNING)
    lost = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u2", "counter", "edge1", "edge3"))
    store.transition(lost.id, ActionState.PLANNED, ActionState.RUNNING)
    settled = {a.id: a for a in asyncio.run(dep.resume())}
    assert settled[arrived.id].state is ActionState.DONE
    assert store.placement("u1", "counter").host == "edge2"
    assert settled[lost.id].state is ActionState.FAILED and "lost" in settled[lost.id].detail
    # a PLANNED action never started: it fails without touching a host
    fresh = store.plan_action(Action(new_action_id(), ActionKind.HANDOVER, "u1", "counter",
                                     source_bs="bs1", dest_bs="bs3"))
    (only,) = asyncio.run(dep.resume())
    assert only.id == fresh.id and only.state is ActionState.FAILED and "not started" in only.detail


def test_resume_marks_an_unreachable_source_down_and_judges_a_dead_destination_from_the_source(store) -> None:
    backend = MemoryBackend(running={"edge1": {"counter"}}, down={"edge1"})
    dep = Deployment(store, backend, clock=lambda: NOW, resume_wait_s=0.0)
    a = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u1", "counter", "edge1", "edge2"))
    store.transition(a.id, ActionState.PLANNED, ActionState.RUNNING)
    (final,) = asyncio.run(dep.resume())
    assert final.state is ActionState.FAILED and store.host("edge1").state is HostState.DOWN
    backend.down = {"edge2"}
    b = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u2", "counter", "edge1", "edge2"))
    store.transition(b.id, ActionState.PLANNED, ActionState.RUNNING)
    (final,) = asyncio.run(dep.resume())
    assert final.state is ActionState.ROLLED_BACK  # the source runs it


class _GarbledReply(MemoryBackend):
    """A backend whose migration ends in an error that is not a BackendError (e.g. a peer's bad reply)."""

    async def migrate(self, service, source_host, dest_host, session):
        from edgemigrate.core.errors import ValidationError

        raise ValidationError("stats.rounds: expected a list")


def test_any_backend_error_settles_the_action_instead_of_leaving_it_running(store) -> None:
    backend = _GarbledReply(running={"edge1": {"counter"}})
    dep = Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0)
    a = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION, "u1", "counter", "edge1", "edge2"))
    final, down = asyncio.run(dep.run(a))
    assert final.state is ActionState.ROLLED_BACK and "stats.rounds" in final.detail and down is None
    assert store.in_flight() == []


def test_an_uncovered_user_is_reported_and_the_others_still_move(store, backend) -> None:
    ctl = _controller(store, backend, "orchestrated")
    _moves_to_bs2(ctl, "u1")
    ctl.monitor.ingest_mu({"user": "u2", "at_s": NOW, "rssi": [{"base_station": b, "rssi_dbm": -95.0}
                                                                for b in ("bs1", "bs2", "bs3")]})
    (a,) = asyncio.run(ctl.plan_round(["u1", "u2"]))
    assert a.user == "u1" and a.state is ActionState.DONE and a.dest_bs == "bs2"
    assert ctl.uncovered == ("u2",)
    assert store.placement("u2", "counter").host == "edge1"  # left where it was


class _FakeTime:
    """An injected clock whose sleep moves it: the deployment's waits cost no wall time and are recorded."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_deployment_waits_for_trigger_times_on_the_injected_clock(store, backend) -> None:
    fake = _FakeTime(NOW)
    a = store.plan_action(Action(new_action_id(), ActionKind.MIGRATION_HANDOVER, "u1", "counter", "edge1", "edge2",
                                 "bs1", "bs2", migrate_at_s=NOW + 4.0, handover_at_s=NOW + 6.5))
    dep = Deployment(store, backend, clock=fake.clock, sleep=fake.sleep, max_wait_s=60.0)
    final, down = asyncio.run(dep.run(a))
    assert final.state is ActionState.DONE and down is None
    assert fake.slept == pytest.approx([4.0, 2.5])  # to the migration trigger, then on to the handover's
    assert fake.t == pytest.approx(NOW + 6.5)
