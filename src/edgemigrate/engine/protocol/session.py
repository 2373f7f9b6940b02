"""Socket-free migration session state machines (source and destination), websockets/h11 style.

Feed received bytes in (:meth:`receive_data`), get events out; calls that produce messages queue bytes that
the I/O layer drains with :meth:`data_to_send`. Nothing here touches sockets, CRIU or the clock, so every
transition - including every failure path - is unit-tested without a network.

Every state is explicit: :data:`SOURCE_TRANSITIONS` and :data:`DEST_TRANSITIONS` list each allowed
``(state, input)`` pair and the state it leads to; any other pair is a :class:`ProtocolError` (a caller's
misuse raises it, a peer's message that breaks the protocol aborts the session). Inputs are the calls of
the agent that drives the session and the messages received from the peer.

The **point of no return** (p.haul's term) is the source's receipt of ``RESTORED``: the destination has
restored the service and its health check passed. Before it, any failure resumes the service at the source
(restoring the final image locally if the source was already frozen); the source's copy is discarded only
after it (:attr:`SourceSession.past_point_of_no_return`). If the control connection breaks while the
destination may be restoring (a restore was requested), the outcome is *in doubt*
(:attr:`SourceState.IN_DOUBT`): the source must ask the destination agent for the session's status before
it resumes anything. The destination, symmetrically, keeps a restored copy running when the connection
breaks after the restore began, and discards everything when it breaks earlier.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.engine.manifest import MAX_IMAGE_SIZE_BYTES, Manifest, ManifestError
from edgemigrate.engine.protocol.codec import Chunk, FrameDecoder, Message, MsgType, ProtocolError, encode

# ---------------------------------------------------------------------------------------------- source


class SourceState(enum.Enum):
    IDLE = "idle"
    HELLO_SENT = "hello-sent"
    READY = "ready"  # destination accepted; a (next) leave-running round or the final one may be sent
    ROUND_SENT = "round-sent"  # a leave-running round is on its way
    FROZEN = "frozen"  # paused for the final dump; only the final round may follow
    FROZEN_ANNOUNCED = "frozen-announced"  # paused and locked, and the destination told to take the address
    FINAL_SENT = "final-sent"
    FINAL_VERIFIED = "final-verified"
    RESTORE_PIPELINED = "restore-pipelined"  # restore requested before the final round's ROUND_OK
    RESTORE_SENT = "restore-sent"  # final round verified, restore requested: the destination may restore
    COMMITTED = "committed"  # POINT OF NO RETURN passed
    DONE = "done"
    ABORTED = "aborted"  # failed; the service never stopped here
    ABORTED_FROZEN = "aborted-frozen"  # failed while frozen here; the destination has no copy
    IN_DOUBT = "in-doubt"  # failed while the destination may have restored: ask it (resolve_in_doubt)


class SourceInput(enum.Enum):
    """What moves a source session: the agent's calls (values read as "cannot <value>") and received messages."""

    SEND_HELLO = "say hello"
    SEND_ROUND = "send a round"
    FREEZE = "freeze the service"
    ANNOUNCE_FROZEN = "announce the freeze"
    SEND_FINAL_ROUND = "send the final round"
    SEND_RESTORE = "request the restore"
    LOCAL_FAILURE = "abort"
    CONNECTION_LOST = "lose the connection"
    PEER_RUNNING = "resolve the doubt as restored"
    PEER_NOT_RUNNING = "resolve the doubt as not restored"
    GOT_HELLO_OK = "receive HELLO_OK"
    GOT_ROUND_OK = "receive ROUND_OK"
    GOT_RESTORED = "receive RESTORED"
    GOT_DONE = "receive DONE"
    GOT_ABORT = "receive ABORT"


class SourceRecovery(enum.Enum):
    """What a failed source session leaves the agent to do (one per failure state)."""

    MIGRATED = "migrated"  # past the point of no return: the destination serves; the failure is only logged
    KEEP_RUNNING = "keep-running"  # the service never stopped here: lift the lock, nothing else
    RESUME_HERE = "resume-here"  # frozen here: thaw it, or restore the final image locally
    ASK_DESTINATION = "ask-destination"  # the destination may have restored: ask it before resuming


_S, _SI = SourceState, SourceInput
_SOURCE_RUNNING = (_S.IDLE, _S.HELLO_SENT, _S.READY, _S.ROUND_SENT)  # the service runs here
_SOURCE_FROZEN = (_S.FROZEN, _S.FROZEN_ANNOUNCED, _S.FINAL_SENT, _S.FINAL_VERIFIED)  # frozen; the destination cannot have restored
_SOURCE_RESTORE_ASKED = (_S.RESTORE_PIPELINED, _S.RESTORE_SENT)  # the destination may be restoring
_SOURCE_FAILED = (_S.ABORTED, _S.ABORTED_FROZEN, _S.IN_DOUBT)
_LOCAL_FAILURES = (_SI.LOCAL_FAILURE, _SI.CONNECTION_LOST)

SOURCE_TRANSITIONS: Mapping[tuple[SourceState, SourceInput], SourceState] = {
    (_S.IDLE, _SI.SEND_HELLO): _S.HELLO_SENT,
    (_S.HELLO_SENT, _SI.GOT_HELLO_OK): _S.READY,
    (_S.READY, _SI.SEND_ROUND): _S.ROUND_SENT,
    (_S.ROUND_SENT, _SI.GOT_ROUND_OK): _S.READY,
    (_S.READY, _SI.FREEZE): _S.FROZEN,
    (_S.FROZEN, _SI.ANNOUNCE_FROZEN): _S.FROZEN_ANNOUNCED,
    (_S.FROZEN_ANNOUNCED, _SI.SEND_FINAL_ROUND): _S.FINAL_SENT,
    (_S.READY, _SI.SEND_FINAL_ROUND): _S.FINAL_SENT,  # stop-and-copy may announce the frozen round at once
    (_S.FROZEN, _SI.SEND_FINAL_ROUND): _S.FINAL_SENT,
    (_S.FINAL_SENT, _SI.GOT_ROUND_OK): _S.FINAL_VERIFIED,
    (_S.FINAL_SENT, _SI.SEND_RESTORE): _S.RESTORE_PIPELINED,  # saves a round trip in the frozen window
    (_S.RESTORE_PIPELINED, _SI.GOT_ROUND_OK): _S.RESTORE_SENT,
    (_S.FINAL_VERIFIED, _SI.SEND_RESTORE): _S.RESTORE_SENT,
    (_S.RESTORE_SENT, _SI.GOT_RESTORED): _S.COMMITTED,  # ---- POINT OF NO RETURN ----
    (_S.COMMITTED, _SI.GOT_DONE): _S.DONE,
    # failures before the point of no return: where the service is decides the state
    **{(s, i): _S.ABORTED for s in _SOURCE_RUNNING for i in (*_LOCAL_FAILURES, _SI.GOT_ABORT)},
    **{(s, i): _S.ABORTED_FROZEN for s in _SOURCE_FROZEN for i in (*_LOCAL_FAILURES, _SI.GOT_ABORT)},
    **{(s, i): _S.IN_DOUBT for s in _SOURCE_RESTORE_ASKED for i in _LOCAL_FAILURES},
    # an explicit ABORT means the destination discarded its copy: never in doubt
    **{(s, _SI.GOT_ABORT): _S.ABORTED_FROZEN for s in _SOURCE_RESTORE_ASKED},
    (_S.IN_DOUBT, _SI.PEER_RUNNING): _S.DONE,
    (_S.IN_DOUBT, _SI.PEER_NOT_RUNNING): _S.ABORTED_FROZEN,
    # failures after the point of no return are only reported; a lost connection ends the session
    (_S.COMMITTED, _SI.LOCAL_FAILURE): _S.COMMITTED,
    (_S.COMMITTED, _SI.GOT_ABORT): _S.COMMITTED,
    (_S.COMMITTED, _SI.CONNECTION_LOST): _S.DONE,
    (_S.DONE, _SI.LOCAL_FAILURE): _S.DONE,
    (_S.DONE, _SI.GOT_ABORT): _S.DONE,
    (_S.DONE, _SI.CONNECTION_LOST): _S.DONE,
    # a session that already failed stays as it is (and reports nothing new)
    **{(s, i): s for s in _SOURCE_FAILED for i in _LOCAL_FAILURES},
}

_SOURCE_RECOVERY = {
    _S.COMMITTED: SourceRecovery.MIGRATED, _S.DONE: SourceRecovery.MIGRATED,
    _S.ABORTED: SourceRecovery.KEEP_RUNNING, _S.ABORTED_FROZEN: SourceRecovery.RESUME_HERE,
    _S.IN_DOUBT: SourceRecovery.ASK_DESTINATION,
}
_SOURCE_RECEIVED = {MsgType.HELLO_OK: _SI.GOT_HELLO_OK, MsgType.ROUND_OK: _SI.GOT_ROUND_OK,
                    MsgType.RESTORED: _SI.GOT_RESTORED, MsgType.DONE: _SI.GOT_DONE, MsgType.ABORT: _SI.GOT_ABORT}

# ------------------------------------------------------------------------------------------ destination


class DestState(enum.Enum):
    IDLE = "idle"
    HELLO_RECEIVED = "hello-received"
    READY = "ready"
    RECEIVING = "receiving"  # a leave-running round
    SOURCE_FROZEN = "source-frozen"  # the source froze the service; the address is taken over here, held
    RECEIVING_FINAL = "receiving-final"
    RESTORE_QUEUED = "restore-queued"  # receiving the final round; its (pipelined) restore waits for it
    FINAL_VERIFIED = "final-verified"
    RESTORING = "restoring"
    RESTORED = "restored"
    DONE = "done"
    ABORTED = "aborted"


class DestInput(enum.Enum):
    """What moves a destination session: the agent's calls and received messages."""

    ACCEPT = "accept"
    VERIFIED = "confirm a round"
    RESTORED = "report a restore"
    LOCAL_FAILURE = "abort"
    CONNECTION_LOST = "lose the connection"
    GOT_HELLO = "receive HELLO"
    GOT_ROUND = "receive a ROUND"
    GOT_FROZEN = "receive FROZEN"
    GOT_FINAL_ROUND = "receive the final ROUND"
    GOT_RESTORE = "receive RESTORE"
    GOT_COMMIT = "receive COMMIT"
    GOT_ABORT = "receive ABORT"


class DestCleanup(enum.Enum):
    """What an aborted destination session leaves the agent to do."""

    DISCARD = "discard"  # drop the staged images; nothing was restored
    KILL_RESTORED = "kill-restored"  # ... and kill the restored copy
    KEEP_IN_DOUBT = "keep-in-doubt"  # keep the restored copy: the source may have passed the point of no return


_D, _DI = DestState, DestInput
_DEST_BEFORE_RESTORE = (_D.IDLE, _D.HELLO_RECEIVED, _D.READY, _D.RECEIVING, _D.SOURCE_FROZEN, _D.RECEIVING_FINAL,
                        _D.RESTORE_QUEUED, _D.FINAL_VERIFIED)

DEST_TRANSITIONS: Mapping[tuple[DestState, DestInput], DestState] = {
    (_D.IDLE, _DI.GOT_HELLO): _D.HELLO_RECEIVED,
    (_D.HELLO_RECEIVED, _DI.ACCEPT): _D.READY,
    (_D.READY, _DI.GOT_ROUND): _D.RECEIVING,
    (_D.RECEIVING, _DI.VERIFIED): _D.READY,
    (_D.READY, _DI.GOT_FROZEN): _D.SOURCE_FROZEN,
    (_D.READY, _DI.GOT_FINAL_ROUND): _D.RECEIVING_FINAL,
    (_D.SOURCE_FROZEN, _DI.GOT_FINAL_ROUND): _D.RECEIVING_FINAL,
    (_D.RECEIVING_FINAL, _DI.VERIFIED): _D.FINAL_VERIFIED,
    (_D.RECEIVING_FINAL, _DI.GOT_RESTORE): _D.RESTORE_QUEUED,  # acted on once the final round is verified
    (_D.RESTORE_QUEUED, _DI.VERIFIED): _D.RESTORING,
    (_D.FINAL_VERIFIED, _DI.GOT_RESTORE): _D.RESTORING,
    (_D.RESTORING, _DI.RESTORED): _D.RESTORED,
    (_D.RESTORED, _DI.GOT_COMMIT): _D.DONE,
    # failures before the restore discard everything
    **{(s, i): _D.ABORTED for s in _DEST_BEFORE_RESTORE for i in (_DI.LOCAL_FAILURE, _DI.CONNECTION_LOST)},
    # the source's ABORT ends every session it has said HELLO to (before the point of no return it still
    # runs its own copy, so even a restored one here goes)
    **{(s, _DI.GOT_ABORT): _D.ABORTED for s in _DEST_BEFORE_RESTORE + (_D.RESTORING, _D.RESTORED) if s is not _D.IDLE},
    (_D.RESTORING, _DI.LOCAL_FAILURE): _D.ABORTED,  # the restore failed: kill what it left
    # the source may have passed the point of no return: the copy stays, the state too, the source resolves it
    (_D.RESTORING, _DI.CONNECTION_LOST): _D.RESTORING,
    (_D.RESTORED, _DI.CONNECTION_LOST): _D.RESTORED,
    (_D.RESTORED, _DI.LOCAL_FAILURE): _D.RESTORED,
    # a finished session stays as it is (and reports nothing)
    **{(s, i): s for s in (_D.DONE, _D.ABORTED) for i in (_DI.LOCAL_FAILURE, _DI.CONNECTION_LOST)},
}

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
    """The session failed; ``recovery`` says what the source agent must do about it."""

    reason: str
    recovery: SourceRecovery


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
class SourceFrozen:
    """The source paused the service and locked its address for the final dump: the destination takes the
    address over now (lock rules, then a hold, then the IP), so that what clients send during the frozen
    window - their retransmissions - queues here for the restored sockets instead of being dropped at the
    source's lock (a dropped request costs its client a retransmission timeout after the service is back)."""

    netfilter_rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestoreRequested:
    round_index: int
    netfilter_rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    session: str


@dataclass(frozen=True, slots=True)
class Aborted:
    """Destination side: the session ended without a commit; ``cleanup`` says what to discard."""

    reason: str
    cleanup: DestCleanup


SourceEvent = PeerReady | RoundVerified | Restored | Finished | Failed
DestEvent = HelloReceived | SourceFrozen | RoundAnnounced | RestoreRequested | Committed | Aborted

_State = TypeVar("_State", SourceState, DestState)
_Input = TypeVar("_Input", SourceInput, DestInput)


def next_state(table: Mapping[tuple[_State, _Input], _State], state: _State, inp: _Input, who: str) -> _State:
    """The state ``inp`` leads to from ``state``; a :class:`ProtocolError` if the table does not list it."""
    try:
        return table[(state, inp)]
    except KeyError:
        raise ProtocolError(f"{who}: cannot {inp.value} in state {state.value}") from None


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
            msgs.append(self._own(m))
        return msgs

    def _own(self, m: Message | Chunk) -> Message:
        """``m`` if it is a control message of this session."""
        if isinstance(m, Chunk):
            raise ProtocolError("data chunk on the control connection")
        if m.body.get("session") != self.session:
            raise ProtocolError(f"{m.type.name} for session {m.body.get('session')!r}, expected {self.session!r}")
        return m


class SourceSession(_Base):
    """The migrating side. The agent calls :meth:`hello`, :meth:`send_round` ... and reacts to events."""

    def __init__(self, session: str) -> None:
        super().__init__(session)
        self.state = SourceState.IDLE
        self.rounds_sent = 0

    @property
    def past_point_of_no_return(self) -> bool:
        return self.state in (SourceState.COMMITTED, SourceState.DONE)

    @property
    def frozen(self) -> bool:
        """The service was paused here for its final dump (whatever happened since)."""
        return self.state not in (*_SOURCE_RUNNING, SourceState.ABORTED)

    @property
    def recovery(self) -> SourceRecovery | None:
        """What a failure now leaves the agent to do (None while the session is alive before committing)."""
        return _SOURCE_RECOVERY.get(self.state)

    def _advance(self, inp: SourceInput) -> SourceState:
        """Take the transition ``inp`` (or raise); returns the state left."""
        old, self.state = self.state, next_state(SOURCE_TRANSITIONS, self.state, inp, f"source session {self.session}")
        return old

    def hello(self, service: dict[str, Any], src_host: str, strategy: str, src_addr: str = "",
              token: str = "") -> None:
        self._advance(SourceInput.SEND_HELLO)
        self._send(MsgType.HELLO, service=service, src_host=src_host, src_addr=src_addr, strategy=strategy,
                   token=token)

    def send_round(self, manifest: Manifest, netfilter_rules: list[str] | tuple[str, ...] = ()) -> None:
        """Announce a round. A final round means the source is frozen (dumped without leave-running)."""
        inp = SourceInput.SEND_FINAL_ROUND if manifest.final else SourceInput.SEND_ROUND
        next_state(SOURCE_TRANSITIONS, self.state, inp, f"source session {self.session}")
        if manifest.round_index != self.rounds_sent + 1:
            raise ProtocolError(f"round {manifest.round_index} sent out of order (expected {self.rounds_sent + 1})")
        if netfilter_rules and not manifest.final:
            raise ProtocolError("connection-lock rules only travel with the final round")
        self._advance(inp)
        self._send(MsgType.ROUND, manifest=manifest.to_dict(), netfilter_rules=list(netfilter_rules))
        self.rounds_sent += 1

    def mark_frozen(self) -> None:
        """The source has been paused for its final dump (before the final manifest could be sent)."""
        self._advance(SourceInput.FREEZE)

    def announce_frozen(self, netfilter_rules: list[str] | tuple[str, ...]) -> None:
        """Tell the destination the service is paused and its address locked here (with the lock rules, which
        the destination installs before it takes the address over)."""
        self._advance(SourceInput.ANNOUNCE_FROZEN)
        self._send(MsgType.FROZEN, netfilter_rules=list(netfilter_rules))

    def send_restore(self, netfilter_rules: list[str]) -> None:
        """Ask for the restore. Allowed right after the final round (pipelined: the destination restores as
        soon as it has verified that round, saving a round trip) or after its ``ROUND_OK``."""
        self._advance(SourceInput.SEND_RESTORE)
        self._send(MsgType.RESTORE, round=self.rounds_sent, netfilter_rules=list(netfilter_rules))

    def _fail(self, inp: SourceInput, reason: str) -> list[SourceEvent]:
        """A failure input: take its transition and report it, unless the session had already failed or
        ended (a lost connection after DONE is no news)."""
        old = self._advance(inp)
        if old in _SOURCE_FAILED or (old is SourceState.DONE and inp is SourceInput.CONNECTION_LOST):
            return []
        recovery = self.recovery
        assert recovery is not None  # every failure transition ends in a state with a recovery
        return [Failed(reason, recovery)]

    def abort(self, reason: str) -> list[SourceEvent]:
        """A local failure (CRIU dump, planning ...). Before the point of no return: tell the peer, roll back."""
        tell_peer = self.state not in (SourceState.IDLE, *_SOURCE_FAILED) and not self.past_point_of_no_return
        events = self._fail(SourceInput.LOCAL_FAILURE, reason)
        if tell_peer:
            self._send(MsgType.ABORT, reason=reason[:500])
        return events

    def connection_lost(self, reason: str = "control connection lost") -> list[SourceEvent]:
        return self._fail(SourceInput.CONNECTION_LOST, reason)

    def resolve_in_doubt(self, destination_running: bool) -> list[SourceEvent]:
        """After an in-doubt failure the agent asked the destination: is the service running there?"""
        if destination_running:
            self._advance(SourceInput.PEER_RUNNING)
            return [Finished(self.session)]
        self._advance(SourceInput.PEER_NOT_RUNNING)
        return [Failed("destination did not restore", SourceRecovery.RESUME_HERE)]

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
            return self._handle(self._own(m))
        except ProtocolError as exc:
            return self.abort(f"protocol error from destination: {exc}")

    def _handle(self, m: Message) -> list[SourceEvent]:
        inp = _SOURCE_RECEIVED.get(m.type)
        if inp is None or (self.state, inp) not in SOURCE_TRANSITIONS:
            raise ProtocolError(f"unexpected {m.type.name} in state {self.state.value}")
        if inp is SourceInput.GOT_ABORT:
            reason = m.body["reason"] if self.past_point_of_no_return else f"destination aborted: {m.body['reason']}"
            return self._fail(inp, reason)
        if inp is SourceInput.GOT_ROUND_OK and m.body["round"] != self.rounds_sent:
            raise ProtocolError(f"ROUND_OK for round {m.body['round']}, expected {self.rounds_sent}")
        old = self._advance(inp)
        if inp is SourceInput.GOT_HELLO_OK:
            return [PeerReady(self.session)]
        if inp is SourceInput.GOT_ROUND_OK:
            final = old is not SourceState.ROUND_SENT
            return [RoundVerified(self.rounds_sent, m.body["received_bytes"], float(m.body["rebuild_s"]), final)]
        if inp is SourceInput.GOT_RESTORED:
            # ---- POINT OF NO RETURN: the destination runs the service; the source copy may now go ----
            self._send(MsgType.COMMIT)
            return [Restored(m.body["pid"], float(m.body["restore_s"]))]
        return [Finished(self.session)]  # DONE


def _string_rules(m: Message) -> tuple[str, ...]:
    rules = m.body["netfilter_rules"]
    if not all(isinstance(r, str) for r in rules):
        raise ProtocolError(f"{m.type.name}.netfilter_rules: expected strings")
    return tuple(rules)


class DestSession(_Base):
    """The receiving side. Emits events; the agent answers with :meth:`accept`, :meth:`round_verified` ..."""

    def __init__(self, session: str) -> None:
        super().__init__(session)
        self.state = DestState.IDLE
        self.manifest: Manifest | None = None
        self.rounds_verified = 0
        self._queued_restore: RestoreRequested | None = None  # the request, in RESTORE_QUEUED
        # what the source may send, set by the agent from the service's declared size when it accepts
        self.round_limit_bytes = MAX_IMAGE_SIZE_BYTES
        self.session_limit_bytes = MAX_IMAGE_SIZE_BYTES
        self.announced_bytes = 0

    def _advance(self, inp: DestInput) -> DestState:
        """Take the transition ``inp`` (or raise); returns the state left."""
        old, self.state = self.state, next_state(DEST_TRANSITIONS, self.state, inp,
                                                 f"destination session {self.session}")
        return old

    def accept(self, round_limit_bytes: int = MAX_IMAGE_SIZE_BYTES,
               session_limit_bytes: int = MAX_IMAGE_SIZE_BYTES) -> None:
        """Accept the migration; every later round's image and payload must fit ``round_limit_bytes``, and
        all rounds' payloads together ``session_limit_bytes``."""
        self._advance(DestInput.ACCEPT)
        self.round_limit_bytes, self.session_limit_bytes = round_limit_bytes, session_limit_bytes
        self._send(MsgType.HELLO_OK)

    def round_verified(self, received_bytes: int, rebuild_s: float) -> list[DestEvent]:
        """Confirm the current round; returns a :class:`RestoreRequested` if the source already asked."""
        old = self._advance(DestInput.VERIFIED)
        assert self.manifest is not None
        self.rounds_verified = self.manifest.round_index
        self._send(MsgType.ROUND_OK, round=self.manifest.round_index, received_bytes=received_bytes, rebuild_s=rebuild_s)
        if old is DestState.RESTORE_QUEUED:
            assert self._queued_restore is not None
            ev, self._queued_restore = self._queued_restore, None
            return [ev]
        return []

    def restored(self, pid: int, restore_s: float) -> None:
        self._advance(DestInput.RESTORED)
        self._send(MsgType.RESTORED, pid=pid, restore_s=restore_s)

    def abort(self, reason: str) -> list[DestEvent]:
        """A local failure (integrity, rebuild, restore): tell the source, discard everything staged."""
        old = self._advance(DestInput.LOCAL_FAILURE)
        if old in (DestState.DONE, DestState.ABORTED):
            return []
        if old is DestState.RESTORED:
            # RESTORED went out: the source may have passed the point of no return and dropped its copy, so
            # whatever goes wrong now (e.g. garbage instead of COMMIT) keeps this copy; the source resolves it
            return [Aborted(reason, DestCleanup.KEEP_IN_DOUBT)]
        self._send(MsgType.ABORT, reason=reason[:500])  # also for a refused HELLO: the source learns why
        return [Aborted(reason, DestCleanup.KILL_RESTORED if old is DestState.RESTORING else DestCleanup.DISCARD)]

    def connection_lost(self, reason: str = "control connection lost") -> list[DestEvent]:
        old = self._advance(DestInput.CONNECTION_LOST)
        if old in (DestState.DONE, DestState.ABORTED):
            return []
        if old in (DestState.RESTORING, DestState.RESTORED):
            # the source may have passed the point of no return: keep the copy, the source resolves the doubt
            return [Aborted(reason, DestCleanup.KEEP_IN_DOUBT)]
        return [Aborted(reason, DestCleanup.DISCARD)]

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
            if self.state is DestState.IDLE:
                if m.type is not MsgType.HELLO:
                    raise ProtocolError(f"expected HELLO, got {m.type.name}")
                try:
                    self.session = check_id(m.body["session"], "HELLO.session")
                except ValidationError as exc:
                    raise ProtocolError(str(exc)) from None
            elif m.body.get("session") != self.session:
                raise ProtocolError(f"{m.type.name} for another session")
            return self._handle(m)
        except (ProtocolError, ManifestError) as exc:
            return self.abort(f"protocol error from source: {exc}")

    def _handle(self, m: Message) -> list[DestEvent]:
        if m.type is MsgType.ROUND and any((self.state, i) in DEST_TRANSITIONS
                                           for i in (DestInput.GOT_ROUND, DestInput.GOT_FINAL_ROUND)):
            return self._on_round(m)
        inp = {MsgType.HELLO: DestInput.GOT_HELLO, MsgType.FROZEN: DestInput.GOT_FROZEN,
               MsgType.RESTORE: DestInput.GOT_RESTORE,
               MsgType.COMMIT: DestInput.GOT_COMMIT, MsgType.ABORT: DestInput.GOT_ABORT}.get(m.type)
        if inp is None or (self.state, inp) not in DEST_TRANSITIONS:
            raise ProtocolError(f"unexpected {m.type.name} in state {self.state.value}")
        if inp is DestInput.GOT_ABORT:
            old = self._advance(inp)
            cleanup = DestCleanup.KILL_RESTORED if old in (DestState.RESTORING, DestState.RESTORED) else DestCleanup.DISCARD
            return [Aborted(f"source aborted: {m.body['reason']}", cleanup)]
        if inp is DestInput.GOT_HELLO:
            self._advance(inp)
            return [HelloReceived(self.session, m.body["service"], m.body["src_host"], m.body["strategy"],
                                  m.body["src_addr"], m.body["token"])]
        if inp is DestInput.GOT_RESTORE:
            return self._on_restore(m)
        if inp is DestInput.GOT_FROZEN:
            rules = _string_rules(m)
            self._advance(inp)
            return [SourceFrozen(rules)]
        self._advance(inp)  # COMMIT
        self._send(MsgType.DONE)
        return [Committed(self.session)]

    def _on_round(self, m: Message) -> list[DestEvent]:
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
        self._advance(DestInput.GOT_FINAL_ROUND if manifest.final else DestInput.GOT_ROUND)
        self.manifest = manifest
        return [RoundAnnounced(manifest, tuple(rules))]

    def _on_restore(self, m: Message) -> list[DestEvent]:
        assert self.manifest is not None  # RESTORE is only listed once the final round was announced
        expected = self.manifest.round_index
        if m.body["round"] != expected:
            raise ProtocolError(f"RESTORE of round {m.body['round']}, expected {expected}")
        ev = RestoreRequested(expected, _string_rules(m))
        if self._advance(DestInput.GOT_RESTORE) is DestState.RECEIVING_FINAL:
            self._queued_restore = ev  # round_verified returns it
            return []
        return [ev]
