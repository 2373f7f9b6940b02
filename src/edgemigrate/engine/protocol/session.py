"""Socket-free migration session state machines (source and destination), websockets/h11 style.

Feed received bytes in (:meth:`receive_data`), get events out; calls that produce messages queue bytes that
the I/O layer drains with :meth:`data_to_send`. Nothing here touches sockets, CRIU or the clock, so every
transition - including every failure path - is unit-tested without a network.

The **point of no return** (p.haul's term) is the source's receipt of ``RESTORED``: the destination has
restored the service and its health check passed. Before it, any failure resumes the service at the source
(restoring the final image locally if the source was already frozen); the source's copy is discarded only
after it (:attr:`SourceSession.past_point_of_no_return`). If the control connection breaks while the
destination may be restoring (``RESTORE_SENT``), the outcome is *in doubt*: the source must ask the
destination agent for the session's status before it resumes anything (:class:`Failed.in_doubt`). The
destination, symmetrically, keeps a restored copy running when the connection breaks after the restore
began, and discards everything when it breaks earlier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.engine.manifest import MAX_IMAGE_SIZE_BYTES, Manifest, ManifestError
from edgemigrate.engine.protocol.codec import Chunk, FrameDecoder, Message, MsgType, ProtocolError, encode


class SourceState(enum.Enum):
    IDLE = "idle"
    HELLO_SENT = "hello-sent"
    READY = "ready"  # destination accepted; a (next) round may be sent
    ROUND_SENT = "round-sent"
    FINAL_SENT = "final-sent"  # frozen: the source was dumped without --leave-running
    FINAL_VERIFIED = "final-verified"
    RESTORE_SENT = "restore-sent"
    COMMITTED = "committed"  # POINT OF NO RETURN passed
    DONE = "done"
    ABORTED = "aborted"


class DestState(enum.Enum):
    IDLE = "idle"
    HELLO_RECEIVED = "hello-received"
    READY = "ready"
    RECEIVING = "receiving"
    FINAL_VERIFIED = "final-verified"
    RESTORING = "restoring"
    RESTORED = "restored"
    DONE = "done"
    ABORTED = "aborted"


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PeerReady:
    session: str


@dataclass(frozen=True, slots=True)
class RoundVerified:
    round_index: int
    received_bytes: int
    rebuild_s: float
    final: bool


@dataclass(frozen=True, slots=True)
class Restored:
    pid: int
    restore_s: float


@dataclass(frozen=True, slots=True)
class Finished:
    session: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The session failed. ``resume_at_source``: restore the final image locally (the source was frozen).

    ``in_doubt``: the destination may have restored; ask it before resuming. ``after_point_of_no_return``:
    the migration already succeeded from the source's view; the failure is only logged.
    """

    reason: str
    resume_at_source: bool
    in_doubt: bool = False
    after_point_of_no_return: bool = False


@dataclass(frozen=True, slots=True)
class HelloReceived:
    session: str
    service: dict[str, Any]
    src_host: str
    strategy: str
    src_addr: str = ""  # the source agent's control address, for resolving an in-doubt restore later
    token: str = ""  # the one-time token the controller gave the destination for this migration


@dataclass(frozen=True, slots=True)
class RoundAnnounced:
    """A round's manifest. A final round also carries the source's CRIU connection-lock rules, which the
    destination installs *before* it takes over the service IP (else its kernel would reset the clients'
    retransmissions while the image is still in flight)."""

    manifest: Manifest
    netfilter_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RestoreRequested:
    round_index: int
    netfilter_rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    session: str


@dataclass(frozen=True, slots=True)
class Aborted:
    """Destination side: discard staged images; ``kill_restored`` if a restored copy exists."""

    reason: str
    kill_restored: bool
    keep_running_in_doubt: bool = False


SourceEvent = PeerReady | RoundVerified | Restored | Finished | Failed
DestEvent = HelloReceived | RoundAnnounced | RestoreRequested | Committed | Aborted


class _Base:
    def __init__(self, session: str) -> None:
        self.session = session
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _send(self, mtype: MsgType, **body: Any) -> None:
        self._out.append(encode(mtype, session=self.session, **body))

    def _messages(self, data: bytes) -> list[Message]:
        msgs = []
        for m in self._decoder.feed(data):
            if isinstance(m, Chunk):
                raise ProtocolError("data chunk on the control connection")
            if m.body.get("session") != self.session:
                raise ProtocolError(f"{m.type.name} for session {m.body.get('session')!r}, expected {self.session!r}")
            msgs.append(m)
        return msgs


class SourceSession(_Base):
    """The migrating side. The agent calls :meth:`hello`, :meth:`send_round` ... and reacts to events."""

    def __init__(self, session: str) -> None:
        super().__init__(session)
        self.state = SourceState.IDLE
        self.frozen = False
        self.rounds_sent = 0
        self._final_ack_pending = False

    @property
    def past_point_of_no_return(self) -> bool:
        return self.state in (SourceState.COMMITTED, SourceState.DONE)

    def _require(self, *states: SourceState, action: str) -> None:
        if self.state not in states:
            raise ProtocolError(f"source session {self.session}: cannot {action} in state {self.state.value}")

    def hello(self, service: dict[str, Any], src_host: str, strategy: str, src_addr: str = "",
              token: str = "") -> None:
        self._require(SourceState.IDLE, action="say hello")
        self._send(MsgType.HELLO, service=service, src_host=src_host, src_addr=src_addr, strategy=strategy,
                   token=token)
        self.state = SourceState.HELLO_SENT

    def send_round(self, manifest: Manifest, netfilter_rules: list[str] | tuple[str, ...] = ()) -> None:
        """Announce a round. A final round means the source is frozen (dumped without leave-running)."""
        self._require(SourceState.READY, action="send a round")
        if manifest.round_index != self.rounds_sent + 1:
            raise ProtocolError(f"round {manifest.round_index} sent out of order (expected {self.rounds_sent + 1})")
        if netfilter_rules and not manifest.final:
            raise ProtocolError("connection-lock rules only travel with the final round")
        self._send(MsgType.ROUND, manifest=manifest.to_dict(), netfilter_rules=list(netfilter_rules))
        self.rounds_sent += 1
        if manifest.final:
            self.frozen = True
            self.state = SourceState.FINAL_SENT
        else:
            self.state = SourceState.ROUND_SENT

    def mark_frozen(self) -> None:
        """The source has been dumped without leave-running (before the final manifest could be sent)."""
        self.frozen = True

    def send_restore(self, netfilter_rules: list[str]) -> None:
        """Ask for the restore. Allowed right after the final round (pipelined: the destination restores as
        soon as it has verified that round, saving a round trip) or after its ``ROUND_OK``."""
        self._require(SourceState.FINAL_SENT, SourceState.FINAL_VERIFIED, action="request the restore")
        self._final_ack_pending = self.state is SourceState.FINAL_SENT
        self._send(MsgType.RESTORE, round=self.rounds_sent, netfilter_rules=list(netfilter_rules))
        self.state = SourceState.RESTORE_SENT

    def abort(self, reason: str) -> list[SourceEvent]:
        """A local failure (CRIU dump, planning ...). Before the point of no return: tell the peer, roll back."""
        if self.past_point_of_no_return:
            return [Failed(reason, resume_at_source=False, after_point_of_no_return=True)]
        if self.state is SourceState.ABORTED:
            return []
        if self.state is not SourceState.IDLE:
            self._send(MsgType.ABORT, reason=reason[:500])
        in_doubt = self.state is SourceState.RESTORE_SENT
        self.state = SourceState.ABORTED
        return [Failed(reason, resume_at_source=self.frozen, in_doubt=in_doubt)]

    def connection_lost(self, reason: str = "control connection lost") -> list[SourceEvent]:
        if self.state is SourceState.DONE or self.state is SourceState.ABORTED:
            return []
        if self.past_point_of_no_return:
            self.state = SourceState.DONE
            return [Failed(reason, resume_at_source=False, after_point_of_no_return=True)]
        in_doubt = self.state is SourceState.RESTORE_SENT
        self.state = SourceState.ABORTED
        return [Failed(reason, resume_at_source=self.frozen, in_doubt=in_doubt)]

    def resolve_in_doubt(self, destination_running: bool) -> list[SourceEvent]:
        """After an in-doubt failure the agent asked the destination: is the service running there?"""
        if destination_running:
            self.state = SourceState.DONE
            return [Finished(self.session)]
        return [Failed("destination did not restore", resume_at_source=self.frozen)]

    def receive_data(self, data: bytes) -> list[SourceEvent]:
        try:
            msgs = self._messages(data)
            events: list[SourceEvent] = []
            for m in msgs:
                events += self._handle(m)
            return events
        except ProtocolError as exc:
            return self.abort(f"protocol error from destination: {exc}")

    def receive_message(self, m: Message | Chunk) -> list[SourceEvent]:
        """Same as :meth:`receive_data` for a message the I/O layer already decoded."""
        try:
            if isinstance(m, Chunk):
                raise ProtocolError("data chunk on the control connection")
            if m.body.get("session") != self.session:
                raise ProtocolError(f"{m.type.name} for session {m.body.get('session')!r}, expected {self.session!r}")
            return self._handle(m)
        except ProtocolError as exc:
            return self.abort(f"protocol error from destination: {exc}")

    def _handle(self, m: Message) -> list[SourceEvent]:
        st = self.state
        if m.type is MsgType.ABORT:
            if self.past_point_of_no_return:
                return [Failed(m.body["reason"], resume_at_source=False, after_point_of_no_return=True)]
            # an explicit ABORT means the destination discarded its copy: never in doubt
            self.state = SourceState.ABORTED
            return [Failed(f"destination aborted: {m.body['reason']}", resume_at_source=self.frozen)]
        if m.type is MsgType.HELLO_OK and st is SourceState.HELLO_SENT:
            self.state = SourceState.READY
            return [PeerReady(self.session)]
        if m.type is MsgType.ROUND_OK and st is SourceState.RESTORE_SENT and self._final_ack_pending:
            if m.body["round"] != self.rounds_sent:
                raise ProtocolError(f"ROUND_OK for round {m.body['round']}, expected {self.rounds_sent}")
            self._final_ack_pending = False
            return [RoundVerified(self.rounds_sent, m.body["received_bytes"], float(m.body["rebuild_s"]), True)]
        if m.type is MsgType.ROUND_OK and st in (SourceState.ROUND_SENT, SourceState.FINAL_SENT):
            if m.body["round"] != self.rounds_sent:
                raise ProtocolError(f"ROUND_OK for round {m.body['round']}, expected {self.rounds_sent}")
            final = st is SourceState.FINAL_SENT
            self.state = SourceState.FINAL_VERIFIED if final else SourceState.READY
            return [RoundVerified(self.rounds_sent, m.body["received_bytes"], float(m.body["rebuild_s"]), final)]
        if m.type is MsgType.RESTORED and st is SourceState.RESTORE_SENT and not self._final_ack_pending:
            # ---- POINT OF NO RETURN: the destination runs the service; the source copy may now go ----
            self.state = SourceState.COMMITTED
            self._send(MsgType.COMMIT)
            return [Restored(m.body["pid"], float(m.body["restore_s"]))]
        if m.type is MsgType.DONE and st is SourceState.COMMITTED:
            self.state = SourceState.DONE
            return [Finished(self.session)]
        raise ProtocolError(f"unexpected {m.type.name} in state {st.value}")


class DestSession(_Base):
    """The receiving side. Emits events; the agent answers with :meth:`accept`, :meth:`round_verified` ..."""

    def __init__(self, session: str) -> None:
        super().__init__(session)
        self.state = DestState.IDLE
        self.manifest: Manifest | None = None
        self.rounds_verified = 0
        self._first = True
        self._pending_restore: RestoreRequested | None = None
        # what the source may send, set by the agent from the service's declared size when it accepts
        self.round_limit_bytes = MAX_IMAGE_SIZE_BYTES
        self.session_limit_bytes = MAX_IMAGE_SIZE_BYTES
        self.announced_bytes = 0

    def _require(self, *states: DestState, action: str) -> None:
        if self.state not in states:
            raise ProtocolError(f"destination session {self.session}: cannot {action} in state {self.state.value}")

    def accept(self, round_limit_bytes: int = MAX_IMAGE_SIZE_BYTES,
               session_limit_bytes: int = MAX_IMAGE_SIZE_BYTES) -> None:
        """Accept the migration; every later round's image and payload must fit ``round_limit_bytes``, and
        all rounds' payloads together ``session_limit_bytes``."""
        self._require(DestState.HELLO_RECEIVED, action="accept")
        self.round_limit_bytes, self.session_limit_bytes = round_limit_bytes, session_limit_bytes
        self._send(MsgType.HELLO_OK)
        self.state = DestState.READY

    def round_verified(self, received_bytes: int, rebuild_s: float) -> list[DestEvent]:
        """Confirm the current round; returns a :class:`RestoreRequested` if the source already asked."""
        self._require(DestState.RECEIVING, action="confirm a round")
        assert self.manifest is not None
        self.rounds_verified = self.manifest.round_index
        self._send(MsgType.ROUND_OK, round=self.manifest.round_index, received_bytes=received_bytes, rebuild_s=rebuild_s)
        self.state = DestState.FINAL_VERIFIED if self.manifest.final else DestState.READY
        if self._pending_restore is not None:
            ev, self._pending_restore = self._pending_restore, None
            self.state = DestState.RESTORING
            return [ev]
        return []

    def restored(self, pid: int, restore_s: float) -> None:
        self._require(DestState.RESTORING, action="report a restore")
        self._send(MsgType.RESTORED, pid=pid, restore_s=restore_s)
        self.state = DestState.RESTORED

    def abort(self, reason: str) -> list[DestEvent]:
        """A local failure (integrity, rebuild, restore): tell the source, discard everything staged."""
        if self.state in (DestState.DONE, DestState.ABORTED):
            return []
        if self.state is DestState.RESTORED:
            # RESTORED went out: the source may have passed the point of no return and dropped its copy, so
            # whatever goes wrong now (e.g. garbage instead of COMMIT) keeps this copy; the source resolves it
            return [Aborted(reason, kill_restored=False, keep_running_in_doubt=True)]
        kill = self.state is DestState.RESTORING
        self._send(MsgType.ABORT, reason=reason[:500])  # also for a refused HELLO: the source learns why
        self.state = DestState.ABORTED
        return [Aborted(reason, kill_restored=kill)]

    def connection_lost(self, reason: str = "control connection lost") -> list[DestEvent]:
        if self.state in (DestState.DONE, DestState.ABORTED):
            return []
        if self.state in (DestState.RESTORING, DestState.RESTORED):
            # the source may have passed the point of no return: keep the copy, the source resolves the doubt
            return [Aborted(reason, kill_restored=False, keep_running_in_doubt=True)]
        self.state = DestState.ABORTED
        return [Aborted(reason, kill_restored=False)]

    def receive_data(self, data: bytes) -> list[DestEvent]:
        try:
            decoded = self._decoder.feed(data)
        except ProtocolError as exc:
            return self.abort(f"protocol error from source: {exc}")
        events: list[DestEvent] = []
        for m in decoded:
            events += self.receive_message(m)
        return events

    def receive_message(self, m: Message | Chunk) -> list[DestEvent]:
        """Handle one decoded control message (the session id is learnt from HELLO)."""
        try:
            if isinstance(m, Chunk):
                raise ProtocolError("data chunk on the control connection")
            if self._first:
                if m.type is not MsgType.HELLO:
                    raise ProtocolError(f"expected HELLO, got {m.type.name}")
                try:
                    self.session = check_id(m.body["session"], "HELLO.session")
                except ValidationError as exc:
                    raise ProtocolError(str(exc)) from None
                self._first = False
            elif m.body.get("session") != self.session:
                raise ProtocolError(f"{m.type.name} for another session")
            return self._handle(m)
        except (ProtocolError, ManifestError) as exc:
            return self.abort(f"protocol error from source: {exc}")

    def _handle(self, m: Message) -> list[DestEvent]:
        st = self.state
        if m.type is MsgType.ABORT:
            kill = st in (DestState.RESTORING, DestState.RESTORED)
            self.state = DestState.ABORTED
            return [Aborted(f"source aborted: {m.body['reason']}", kill_restored=kill)]
        if m.type is MsgType.HELLO and st is DestState.IDLE:
            self.state = DestState.HELLO_RECEIVED
            return [HelloReceived(self.session, m.body["service"], m.body["src_host"], m.body["strategy"],
                                  m.body["src_addr"], m.body["token"])]
        if m.type is MsgType.ROUND and st is DestState.READY:
            manifest = Manifest.from_dict(m.body["manifest"], limit_bytes=self.round_limit_bytes)
            if manifest.round_index != self.rounds_verified + 1:
                raise ProtocolError(f"round {manifest.round_index} out of order")
            self.announced_bytes += manifest.payload_bytes
            if self.announced_bytes > self.session_limit_bytes:
                raise ProtocolError(f"round {manifest.round_index}: {self.announced_bytes} bytes in this migration "
                                    f"exceed its limit of {self.session_limit_bytes}")
            rules = m.body["netfilter_rules"]
            if not all(isinstance(r, str) for r in rules) or (rules and not manifest.final):
                raise ProtocolError("ROUND.netfilter_rules: strings, and only in the final round")
            self.manifest = manifest
            self.state = DestState.RECEIVING
            return [RoundAnnounced(manifest, tuple(rules))]
        pipelined = (m.type is MsgType.RESTORE and st is DestState.RECEIVING and self.manifest is not None
                     and self.manifest.final and self._pending_restore is None)
        if m.type is MsgType.RESTORE and (st is DestState.FINAL_VERIFIED or pipelined):
            expected = self.manifest.round_index if pipelined and self.manifest else self.rounds_verified
            if m.body["round"] != expected:
                raise ProtocolError(f"RESTORE of round {m.body['round']}, expected {expected}")
            rules = m.body["netfilter_rules"]
            if not all(isinstance(r, str) for r in rules):
                raise ProtocolError("RESTORE.netfilter_rules: expected strings")
            ev = RestoreRequested(expected, tuple(rules))
            if pipelined:  # acted on once the final round is verified (round_verified returns it)
                self._pending_restore = ev
                return []
            self.state = DestState.RESTORING
            return [ev]
        if m.type is MsgType.COMMIT and st is DestState.RESTORED:
            self.state = DestState.DONE
            self._send(MsgType.DONE)
            return [Committed(self.session)]
        raise ProtocolError(f"unexpected {m.type.name} in state {st.value}")
