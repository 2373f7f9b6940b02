"""The mobile user's loop on virtual time: a real counter service handler, a real (in-memory) central store,
a radio link that only records handovers. Nothing here reads the wall clock."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edgemigrate.controller.store import (
    BaseStation,
    Host,
    HostRole,
    MuReport,
    Placement,
    Store,
    User,
    open_store,
)
from edgemigrate.core.errors import DataFormatError, EngineError, ValidationError
from edgemigrate.mobileuser import (
    BackAndForthPath,
    MobileUser,
    MuConfig,
    RadioModel,
    RequestRecord,
    StoreReporter,
    check_counter,
    check_endpoint,
    default_sites,
)
from edgemigrate.mobileuser.mu import parse_counter
from edgemigrate.radio import WIFI_PATHLOSS
from edgemigrate.workloads.counter import Counter

SERVICE_IP, PORT = "10.77.2.0", 7000
RTT_S = 0.004


class VirtualClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, s: float) -> None:
        self.now_s += s


class FakeLink:
    """The radio link: serving BS and handovers, with the outage spent on the virtual clock."""

    def __init__(self, clock: VirtualClock, serving: str = "bs1", outage_s: float = 0.5) -> None:
        self.clock, self.bs, self.outage_s = clock, serving, outage_s
        self.log: list[tuple[float, str]] = []

    def serving(self) -> str:
        return self.bs

    def handover(self, to_bs: str) -> None:
        self.clock.sleep(self.outage_s)
        self.bs = to_bs
        self.log.append((self.clock(), to_bs))


class CounterServers:
    """The Simple counter service (its real handler) on one server at a time; ``migrate`` moves its state."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.host = "edge1"
        self.counter = Counter()
        self.requests = 0

    def request(self, endpoint: tuple[str, int], payload: bytes, timeout_s: float, body: bytes = b"") -> bytes:
        assert endpoint == (SERVICE_IP, PORT)
        self.requests += 1
        self.clock.sleep(RTT_S)
        return self.counter.handle(payload) + b""

    def close(self) -> None: ...

    def migrate(self, to: str, *, keep_state: bool = True) -> None:
        value = self.counter.value
        self.host, self.counter = to, Counter(start=value if keep_state else 0)


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store("sqlite://:memory:")
    for name in ("edge1", "edge2"):
        s.put_host(Host(name, HostRole.EDGE, f"{name}:7443", 4.0, 2**33, 2**36))
    for site in default_sites():
        s.put_base_station(BaseStation(site.name, site.x_m, site.y_m, 1e9, 8))
    s.put_user(User("mu1"))
    s.put_placement(Placement("mu1", "simple", "edge1", "bs1"))
    try:
        yield s
    finally:
        s.close()


def make_mu(store: Store, *, coordinated: bool = False, gap_s: float = 0.05, min_rssi_dbm: float = -82.0):
    clock = VirtualClock()
    servers = CounterServers(clock)
    link = FakeLink(clock)
    records: list[RequestRecord] = []
    path = BackAndForthPath(0.0, 0.0, 120.0, 0.0, speed_m_per_s=1.0)
    radio = RadioModel(default_sites(), hysteresis_db=3.0, min_rssi_dbm=min_rssi_dbm)
    cfg = MuConfig("mu1", "simple", path, radio, coordinated=coordinated, report_every_s=1.0, request_gap_s=gap_s)
    mu = MobileUser(cfg, reporter=StoreReporter.fixed(store, {"simple": (SERVICE_IP, PORT)}), link=link,
                    transport=servers, locate=lambda: servers.host, sink=records.append, clock=clock,
                    sleep=clock.sleep)
    return mu, clock, servers, link, records


def test_a_round_trip_hands_over_by_hysteresis_and_logs_every_request(store: Store) -> None:
    mu, clock, servers, link, records = make_mu(store)
    n = mu.run(240.0)  # one round trip at 1 m/s along 120 m
    assert n == len(records) == servers.requests
    assert [bs for _, bs in link.log] == ["bs2", "bs3", "bs2", "bs1"]
    assert [h.from_bs for h in mu.handovers] == ["bs1", "bs2", "bs3", "bs2"]
    # each switch happened past the midpoint between the two BSs (the hysteresis), on the way out and back
    xs = [mu.config.path.position_m(h.at_s - mu.start_s)[0] for h in mu.handovers]
    assert 30 < xs[0] < 45 and 90 < xs[1] < 105 and 75 < xs[2] < 90 and 15 < xs[3] < 30
    assert all(r.delay_s == pytest.approx(RTT_S) and r.server == "edge1" for r in records)
    assert {r.bs for r in records} == {"bs1", "bs2", "bs3"}
    check = check_counter(records)
    assert check.ok and check.first == 1 and check.last == n and check.unanswered == 0
    # the Local Monitor reported once per virtual second, with every BS's RSSI and the delays in between
    rssi = store.rssi_samples("mu1", limit=10_000)
    assert {s.base_station for s in rssi} == {"bs1", "bs2", "bs3"}
    assert 230 <= len(rssi) // 3 <= 242
    delays = store.task_delays("mu1", limit=100_000)
    assert len(delays) >= n - 30 and all(d.e2e_delay_s == pytest.approx(RTT_S) for d in delays)


def test_counter_continuity_across_a_migration_and_a_lost_state(store: Store) -> None:
    mu, clock, servers, _, records = make_mu(store)
    mu.run(5.0)
    servers.migrate("edge2")
    mu.run(5.0)
    check = check_counter(records)
    assert check.ok and {r.server for r in records} == {"edge1", "edge2"}
    servers.migrate("edge1", keep_state=False)  # a migration that lost the state
    mu.run(2.0)
    bad = check_counter(records)
    assert not bad.ok and "went backwards" in bad.violations[0]


def test_coordinated_mode_leaves_handovers_to_the_controller(store: Store) -> None:
    mu, _, _, link, records = make_mu(store, coordinated=True)
    mu.run(120.0)
    assert link.log == [] and mu.handovers == []
    assert {r.bs for r in records} == {"bs1"}
    link.bs = "bs3"  # the controller's plan switched it
    assert mu.step().bs == "bs3"


def test_coordinated_mode_re_attaches_on_its_own_past_the_cell_edge(store: Store) -> None:
    """No controller handover came in time: below the receiver minimum the MU re-attaches to the strongest BS
    itself (a radio link failure), once per cell edge, and not a step earlier."""
    sites = default_sites()
    edge_m = 40.0
    edge_dbm = float(WIFI_PATHLOSS.rssi_dbm(np.array([edge_m]))[0])
    mu, _, _, link, _ = make_mu(store, coordinated=True, min_rssi_dbm=edge_dbm)
    mu.run(110.0)
    assert [(h.from_bs, h.to_bs) for h in mu.handovers] == [("bs1", "bs2"), ("bs2", "bs3")]
    assert [bs for _, bs in link.log] == ["bs2", "bs3"]
    xs = [mu.config.path.position_m(h.at_s - mu.start_s)[0] for h in mu.handovers]
    assert sites[0].x_m + edge_m <= xs[0] < sites[0].x_m + edge_m + 1.0  # 1 m: one step of the walk
    assert sites[1].x_m + edge_m <= xs[1] < sites[1].x_m + edge_m + 1.0


def test_the_air_link_gets_the_rssi_of_every_report(store: Store) -> None:
    """The MU hands each report's RSSI to its air link (testbed.TestbedAirLink sets B(RSSI) from it)."""
    mu, clock, _, _, _ = make_mu(store)
    got: list[tuple[float, dict[str, float]]] = []
    mu.air = lambda rssi: got.append((clock(), rssi))
    mu.run(10.0)
    reported = store.rssi_samples("mu1", limit=10_000)
    assert len(got) == len(reported) // 3 >= 9  # once per report (every virtual second), not per request
    for at_s, rssi in got:
        assert rssi == mu.config.radio.rssi_dbm(mu.config.path.position_m(at_s - mu.start_s))


def test_discovery_failure_is_logged_and_retried(store: Store) -> None:
    store.remove_placement("mu1", "simple")
    mu, _, servers, _, records = make_mu(store)
    r = mu.step()
    assert r.reply is None and r.recv_s is None and "NotFoundError" in (r.error or "")
    assert servers.requests == 0
    store.put_placement(Placement("mu1", "simple", "edge1", "bs1"))
    assert mu.step().reply == 1
    assert check_counter(records).ok


class HostileReporter:
    def __init__(self, endpoint: object) -> None:
        self.endpoint = endpoint
        self.reports: list[MuReport] = []

    def report(self, report: MuReport) -> None:
        raise EngineError("controller unreachable")

    def discover(self, user: str, service: str) -> tuple[str, int]:
        return self.endpoint  # type: ignore[return-value]


@pytest.mark.parametrize("endpoint", [("10.0.0.1", 0), ("not-an-ip", 80), ("0.0.0.0", 80), "10.0.0.1:80",
                                      ("10.0.0.1", True)])
def test_a_hostile_discovery_answer_is_refused(store: Store, endpoint: object) -> None:
    mu, _, servers, _, _ = make_mu(store)
    mu.reporter = HostileReporter(endpoint)
    r = mu.step()
    assert r.reply is None and "ValidationError: discover" in (r.error or "")
    assert servers.requests == 0
    assert mu.report_errors == 1  # a failing controller does not stop the MU


def test_reply_parsing_is_bounded() -> None:
    assert parse_counter(b"42") == 42
    assert parse_counter(b"7 1 10,20,30,30") == 7  # facedetect: the counter is the first token
    for bad in (b"", b"-1", b"ERR user: bad", b"PONG", b"9" * 20, b"\xff1"):
        with pytest.raises(DataFormatError, match="counter reply"):
            parse_counter(bad)
    assert check_endpoint(("10.0.0.1", 80)) == ("10.0.0.1", 80)


def test_invalid_config() -> None:
    path = BackAndForthPath(0.0, 0.0, 1.0, 0.0)
    radio = RadioModel(default_sites())
    with pytest.raises(ValidationError, match="mu.user"):
        MuConfig("MU 1", "simple", path, radio)
    with pytest.raises(ValidationError, match="mu.request_timeout_s"):
        MuConfig("mu1", "simple", path, radio, request_timeout_s=0)
    with pytest.raises(ValidationError, match="mu.report_every_s"):
        MuConfig("mu1", "simple", path, radio, report_every_s=-1)


class MovingService(StoreReporter):
    """Discovery that the controller cannot answer for a while (the service is frozen between two hosts)."""

    refuse = False

    def discover(self, user: str, service: str) -> tuple[str, int]:
        if self.refuse:
            raise ValidationError(f"discover: {user}/{service} is not running on edge1 right now")
        return super().discover(user, service)


def test_while_discovery_cannot_place_a_moving_service_the_last_endpoint_is_used(store: Store) -> None:
    mu, clock, servers, link, records = make_mu(store)
    rep = MovingService(store, lambda service, host: (SERVICE_IP, PORT))
    mu.reporter = rep
    mu.run(1.0)
    real = servers.request
    fail_once = iter([True])

    def flaky(endpoint: tuple[str, int], payload: bytes, timeout_s: float, body: bytes = b"") -> bytes:
        if next(fail_once, False):
            raise EngineError("service 10.77.2.0:7000 closed the connection")
        return real(endpoint, payload, timeout_s)

    servers.request = flaky  # type: ignore[method-assign]
    rep.refuse = True
    servers.migrate("edge2")
    mu.run(1.0)
    assert mu.discover_errors >= 1 and mu.endpoint == (SERVICE_IP, PORT)
    after = [r for r in records if r.send_s > records[0].send_s + 1.0]
    assert after[0].reply is None and all(r.answered and r.server == "edge2" for r in after[1:])
    assert check_counter(records).ok
    rep.refuse = False
    mu.run(0.5)
    assert not mu._stale  # discovery answered again: back to what the controller says


def test_with_no_endpoint_known_yet_a_failed_discovery_fails_the_request(store: Store) -> None:
    mu, clock, servers, link, records = make_mu(store)
    rep = MovingService(store, lambda service, host: (SERVICE_IP, PORT))
    rep.refuse = True
    mu.reporter = rep
    mu.run(0.5)
    assert records and all(r.reply is None and "not running" in (r.error or "") for r in records)
    assert servers.requests == 0
