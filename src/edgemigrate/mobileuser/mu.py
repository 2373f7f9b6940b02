"""The virtual mobile user of Ngo et al. 2020, sec. V-A: it moves, measures RSSI, reports, discovers its
service and sends offloading requests continuously, logging each one.

Everything it touches comes in through a small interface, so the same loop runs on virtual time in unit
tests and on a real testbed: the clock and sleep, the :class:`~.reporter.Reporter` (controller), the
:class:`RadioLink` (which BS serves it; a handover), the :class:`~.transport.Transport` (one request) and a
locator telling which server holds the service (for the log). In the *uncoordinated* mode the MU hands
itself over by RSSI hysteresis (:class:`~.radio.RadioModel`); in the *coordinated* mode the controller's plan
triggers handovers (through the testbed) and the MU only follows what its radio link reports - until its
serving BS falls below the receiver minimum: then it re-attaches on its own (a radio link failure).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edgemigrate.controller.store import BsRssi, MuReport, TaskDelay
from edgemigrate.controller.store.checks import MAX_RSSI_DBM, MIN_RSSI_DBM
from edgemigrate.controller.store.rows import MAX_REPORT_ITEMS
from edgemigrate.core.errors import DataFormatError, EdgeMigrateError, ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.mobileuser.log import MAX_ERROR_CHARS, RequestRecord
from edgemigrate.mobileuser.path import BackAndForthPath
from edgemigrate.mobileuser.radio import RadioModel, strongest
from edgemigrate.mobileuser.reporter import Reporter, check_endpoint
from edgemigrate.mobileuser.transport import Transport

REQUEST = b"INC"  # the Simple counter service's request (any line increments)
MAX_COUNTER_DIGITS = 19
MAX_REQUEST_BYTES = 200
# an uploaded image (facedetect's UPLOAD): the service's own bound (workloads/facedetect.py MAX_UPLOAD_BYTES)
MAX_BODY_BYTES = 4 << 20
PROC_TOKEN = b"proc_s="
MAX_PROC_S = 3600.0
ERROR_PAUSE_S = 0.05  # after a failed request: a refused connection must not become a busy loop


def request_for(kind: str, user: str, image: bytes | None = None) -> bytes:
    """The offloading request of a service kind: ``INC`` for the counter, ``DETECT <user>`` for facedetect on
    its bundled image, or with ``image`` ``UPLOAD <user> <n>`` (the n image bytes follow as the request's
    body; all reply with the counter first, ``workloads/facedetect.py``)."""
    if kind == "facedetect":
        if image is not None:
            return f"UPLOAD {check_id(user, 'mu.user')} {len(image)}".encode()
        return f"DETECT {check_id(user, 'mu.user')}".encode()
    if kind == "counter":
        return REQUEST
    raise ValidationError(f"mu request: unknown service kind {kind!r} (counter, facedetect)")


class RadioLink(Protocol):
    def serving(self) -> str:
        """The BS that serves the MU now."""

    def handover(self, to_bs: str) -> None:
        """Start switching to ``to_bs`` (the outage may still last when it returns); ``serving`` is
        ``to_bs`` from then on, so the MU does not decide the same handover twice."""


@dataclass(frozen=True, slots=True)
class MuConfig:
    user: str
    service: str
    path: BackAndForthPath
    radio: RadioModel
    coordinated: bool = False
    report_every_s: float = 1.0
    request_gap_s: float = 0.0  # pause between requests; 0 = back to back, "continuously"
    request_timeout_s: float = 2.0
    request: bytes = REQUEST  # one line; the reply's first token is the service's counter
    body: bytes = b""  # sent after the line (an UPLOAD's image): the task size S_u of eq. 4 with the line

    def __post_init__(self) -> None:
        check_id(self.user, "mu.user")
        check_id(self.service, "mu.service")
        if not isinstance(self.request, bytes) or not 0 < len(self.request) <= MAX_REQUEST_BYTES \
                or b"\n" in self.request or not self.request.isascii():
            raise ValidationError(f"mu.request: expected one ASCII line of 1..{MAX_REQUEST_BYTES} bytes")
        if not isinstance(self.body, bytes) or len(self.body) > MAX_BODY_BYTES:
            raise ValidationError(f"mu.body: expected at most {MAX_BODY_BYTES} bytes")
        for key, hi in (("report_every_s", 3600.0), ("request_gap_s", 3600.0), ("request_timeout_s", 600.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= hi:
                raise ValidationError(f"mu.{key}: expected a number in [0, {hi:g}], got {v!r:.80}")
        if self.request_timeout_s <= 0:
            raise ValidationError("mu.request_timeout_s: must be > 0")


def parse_counter(reply: bytes) -> int:
    """The counter in a reply line: its first token (decimal digits only, bounded)."""
    parts = reply.split(maxsplit=1)
    text = parts[0] if parts else b""
    if not text.isdigit() or len(text) > MAX_COUNTER_DIGITS:
        raise DataFormatError("counter reply", None, f"expected up to {MAX_COUNTER_DIGITS} digits, got {reply[:40]!r}")
    return int(text)


def parse_proc_s(reply: bytes) -> float | None:
    """The server's processing time in a reply (its last token ``proc_s=<s>``, facedetect's UPLOAD), or None
    when the reply has none; a malformed or out-of-range one is a DataFormatError."""
    parts = reply.rsplit(maxsplit=1)
    if len(parts) < 2 or not parts[1].startswith(PROC_TOKEN):
        return None
    try:
        v = float(parts[1][len(PROC_TOKEN):].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        v = math.nan
    if not 0.0 <= v <= MAX_PROC_S:
        raise DataFormatError("reply", None, f"proc_s must be a number of seconds in [0, {MAX_PROC_S:g}], "
                                             f"got {parts[1][:40]!r}")
    return v


@dataclass(frozen=True, slots=True)
class Handover:
    at_s: float
    from_bs: str
    to_bs: str


class MobileUser:
    """One virtual MU; :meth:`step` is one request (plus movement, handover and reporting when due)."""

    def __init__(self, config: MuConfig, *, reporter: Reporter, link: RadioLink, transport: Transport,
                 locate: Callable[[], str | None], sink: Callable[[RequestRecord], None],
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] | None = None,
                 air: Callable[[dict[str, float]], object] | None = None) -> None:
        self.config = config
        # reports are stamped on the wall clock: the controller windows them against its own time.time();
        # a virtual ``clock`` without a wall clock stamps them with itself (unit tests)
        self.wall_clock = wall_clock if wall_clock is not None else (time.time if clock is time.monotonic else clock)
        self.reporter = reporter
        self.link = link
        self.transport = transport
        self.locate = locate
        self.sink = sink
        # the radio link's rate from the RSSI (testbed.TestbedAirLink), updated with every report
        self.air = air
        self.clock = clock
        self.sleep = sleep
        self.start_s = clock()
        self.seq = 0
        self.endpoint: tuple[str, int] | None = None
        self.handovers: list[Handover] = []
        self.report_errors = 0
        self.discover_errors = 0
        self._stale = False
        self._delays: deque[TaskDelay] = deque(maxlen=MAX_REPORT_ITEMS)
        self._next_report_s = self.start_s

    def position_m(self) -> tuple[float, float]:
        return self.config.path.position_m(max(0.0, self.clock() - self.start_s))

    def step(self) -> RequestRecord:
        cfg = self.config
        xy = self.position_m()
        rssi = cfg.radio.rssi_dbm(xy)
        if not cfg.coordinated:
            self._maybe_hand_over(xy)
        else:
            self._maybe_lose_link(rssi)
        if self.clock() >= self._next_report_s:
            if self.air is not None:
                self.air(rssi)
            self._report(rssi)
        record = self._request()
        self.sink(record)
        if record.delay_s is not None:
            self._delays.append(TaskDelay(cfg.service, record.delay_s, len(cfg.request) + 1 + len(cfg.body)))
        if cfg.request_gap_s > 0:
            self.sleep(cfg.request_gap_s)
        return record

    def run(self, duration_s: float, *, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Step for ``duration_s`` more of the MU's clock (or until ``should_stop``); returns requests sent."""
        end = self.clock() + duration_s
        n = 0
        while self.clock() < end and not should_stop():
            self.step()
            n += 1
        return n

    def _discover(self) -> None:
        """Ask where the service is. While it is being moved the controller may not know yet (a frozen
        service runs nowhere); then the last known endpoint is tried again - on the testbed the service IP
        moves with the service, so it is usually still right - instead of failing until the move is
        recorded. With no endpoint known yet, the failure is the request's."""
        cfg = self.config
        try:
            self.endpoint = check_endpoint(self.reporter.discover(cfg.user, cfg.service))
            self._stale = False
        except EdgeMigrateError:
            if self.endpoint is None:
                raise
            self.discover_errors += 1

    def _maybe_hand_over(self, xy: tuple[float, float]) -> None:
        serving = self.link.serving()
        target = self.config.radio.choose(xy, serving)
        if target is not None and target != serving:
            self.handovers.append(Handover(self.clock(), serving, target))
            self.link.handover(target)

    def _maybe_lose_link(self, rssi: dict[str, float]) -> None:
        """Coordinated, the controller hands the MU over - but not past the serving BS's cell edge: below the
        receiver minimum nothing decodes, and the MU re-attaches to the strongest BS on its own (a radio link
        failure), as a real one does however late the controller's handover would come."""
        serving = self.link.serving()
        if rssi.get(serving, -math.inf) >= self.config.radio.min_rssi_dbm:
            return
        target = strongest(rssi, self.config.radio.names)
        if target != serving and rssi[target] >= self.config.radio.min_rssi_dbm:
            self.handovers.append(Handover(self.clock(), serving, target))
            self.link.handover(target)

    def _report(self, rssi: dict[str, float]) -> None:
        cfg = self.config
        now = self.clock()
        # the store's RSSI range bounds what a report may carry; beyond it a BS is simply out of reach
        samples = tuple(BsRssi(bs, min(max(v, MIN_RSSI_DBM), MAX_RSSI_DBM)) for bs, v in rssi.items())
        report = MuReport(cfg.user, self.wall_clock(), tuple(self._delays), samples)
        try:
            self.reporter.report(report)
        except EdgeMigrateError:
            self.report_errors += 1  # the controller is down or refused it: the MU keeps offloading
        else:
            self._delays.clear()
        self._next_report_s = now + cfg.report_every_s

    def _request(self) -> RequestRecord:
        cfg = self.config
        self.seq += 1
        bs = self.link.serving()
        send_s = self.clock()
        try:
            if self.endpoint is None or self._stale:
                self._discover()
            assert self.endpoint is not None
            line = self.transport.request(self.endpoint, cfg.request, cfg.request_timeout_s, body=cfg.body)
            reply, proc_s = parse_counter(line), parse_proc_s(line)
        except (OSError, EdgeMigrateError) as exc:
            self._stale = True  # rediscover: the service may have moved
            self.sleep(ERROR_PAUSE_S)
            msg = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            return RequestRecord(self.seq, send_s, None, None, bs, None, msg)
        recv_s = self.clock()
        # the server's processing time cannot exceed what the MU waited (clocks differ in resolution only)
        proc = None if proc_s is None else min(proc_s, recv_s - send_s)
        return RequestRecord(self.seq, send_s, recv_s, self.locate(), bs, reply, None, proc)
