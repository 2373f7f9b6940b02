from __future__ import annotations

import json
import struct

import pytest

from edgemigrate.engine.manifest import ChunkSpec, FileKind, FileSpec, Manifest
from edgemigrate.engine.protocol import codec
from edgemigrate.engine.protocol.codec import MsgType, ProtocolError
from edgemigrate.engine.protocol.session import (
    Aborted,
    Committed,
    DestCleanup,
    DestSession,
    DestState,
    Failed,
    Finished,
    HelloReceived,
    PeerReady,
    Restored,
    RestoreRequested,
    RoundAnnounced,
    RoundVerified,
    SourceFrozen,
    SourceRecovery,
    SourceSession,
    SourceState,
)

SPEC = {"name": "counter", "kind": "counter"}


def _manifest(round_index: int, final: bool) -> Manifest:
    f = FileSpec("core-1.img", FileKind.FULL, 4, 4, "a" * 64)
    return Manifest("counter", round_index, final, (f,), (ChunkSpec(0, "core-1.img", 0, 4, "b" * 64),))


def _pump(src: SourceSession, dst: DestSession) -> tuple[list, list]:
    """Deliver queued bytes both ways until quiet; returns (source events, destination events)."""
    s_ev: list = []
    d_ev: list = []
    while True:
        a = src.data_to_send()
        if a:
            d_ev += dst.receive_data(a)
        b = dst.data_to_send()
        if b:
            s_ev += src.receive_data(b)
        if not a and not b:
            return s_ev, d_ev


def _to_ready(n_rounds: int = 0) -> tuple[SourceSession, DestSession]:
    src, dst = SourceSession("s1"), DestSession("?")
    src.hello(SPEC, "edge-a", "precopy")
    s_ev, d_ev = _pump(src, dst)
    assert d_ev == [HelloReceived("s1", SPEC, "edge-a", "precopy")] and s_ev == []
    dst.accept()
    s_ev, _ = _pump(src, dst)
    assert s_ev == [PeerReady("s1")] and src.state is SourceState.READY
    for r in range(1, n_rounds + 1):
        src.send_round(_manifest(r, False))
        _, d_ev = _pump(src, dst)
        assert isinstance(d_ev[0], RoundAnnounced)
        dst.round_verified(100, 0.01)
        s_ev, _ = _pump(src, dst)
        assert s_ev == [RoundVerified(r, 100, 0.01, False)]
    return src, dst


def _to_state(target: SourceState) -> tuple[SourceSession, DestSession]:
    src, dst = _to_ready(1)
    steps = [SourceState.READY, SourceState.FINAL_SENT, SourceState.FINAL_VERIFIED, SourceState.RESTORE_SENT,
             SourceState.COMMITTED, SourceState.DONE]
    for st in steps:
        if src.state is target:
            return src, dst
        if st is SourceState.READY:
            src.send_round(_manifest(2, True))
            _pump(src, dst)
        elif st is SourceState.FINAL_SENT:
            dst.round_verified(4, 0.0)
            _pump(src, dst)
        elif st is SourceState.FINAL_VERIFIED:
            src.send_restore(["-A INPUT -j DROP"])
            _pump(src, dst)
        elif st is SourceState.RESTORE_SENT:
            dst.restored(42, 0.08)
            # deliver only RESTORED to the source, keep COMMIT queued
            src.receive_data(dst.data_to_send())
        elif st is SourceState.COMMITTED:
            _pump(src, dst)
    assert src.state is target
    return src, dst


def test_full_precopy_session_reaches_done_through_point_of_no_return() -> None:
    src, dst = _to_ready(3)
    src.send_round(_manifest(4, True))
    assert src.frozen and src.state is SourceState.FINAL_SENT
    _, d_ev = _pump(src, dst)
    assert d_ev[0].manifest.final
    dst.round_verified(4, 0.0)
    s_ev, _ = _pump(src, dst)
    assert s_ev == [RoundVerified(4, 4, 0.0, True)]
    src.send_restore(["-A INPUT -s 10.0.0.1/32 -j DROP"])
    _, d_ev = _pump(src, dst)
    assert d_ev == [RestoreRequested(4, ("-A INPUT -s 10.0.0.1/32 -j DROP",))]
    assert not src.past_point_of_no_return
    dst.restored(1234, 0.05)
    s_ev, d_ev = _pump(src, dst)
    assert s_ev == [Restored(1234, 0.05), Finished("s1")]
    assert d_ev == [Committed("s1")]
    assert src.state is SourceState.DONE and dst.state is DestState.DONE and src.past_point_of_no_return


@pytest.mark.parametrize(
    ("state", "recovery", "end"),
    [
        (SourceState.READY, SourceRecovery.KEEP_RUNNING, SourceState.ABORTED),
        (SourceState.FINAL_SENT, SourceRecovery.RESUME_HERE, SourceState.ABORTED_FROZEN),
        (SourceState.FINAL_VERIFIED, SourceRecovery.RESUME_HERE, SourceState.ABORTED_FROZEN),
        (SourceState.RESTORE_SENT, SourceRecovery.ASK_DESTINATION, SourceState.IN_DOUBT),
    ],
)
def test_source_connection_loss_before_point_of_no_return_rolls_back(state, recovery, end) -> None:
    src, _ = _to_state(state)
    (ev,) = src.connection_lost()
    assert ev == Failed("control connection lost", recovery)
    assert src.state is end
    assert src.connection_lost() == []


def test_source_connection_loss_after_point_of_no_return_is_only_logged() -> None:
    src, _ = _to_state(SourceState.COMMITTED)
    (ev,) = src.connection_lost()
    assert ev.recovery is SourceRecovery.MIGRATED


@pytest.mark.parametrize("state", [SourceState.READY, SourceState.FINAL_SENT, SourceState.FINAL_VERIFIED, SourceState.RESTORE_SENT])
def test_source_local_abort_notifies_destination(state) -> None:
    src, dst = _to_state(state)
    (ev,) = src.abort("criu dump failed")
    assert isinstance(ev, Failed) and ev.recovery is {
        SourceState.READY: SourceRecovery.KEEP_RUNNING, SourceState.RESTORE_SENT: SourceRecovery.ASK_DESTINATION,
    }.get(state, SourceRecovery.RESUME_HERE)
    _, d_ev = _pump(src, dst)
    (dev,) = d_ev
    assert isinstance(dev, Aborted) and "criu dump failed" in dev.reason
    assert dev.cleanup is (DestCleanup.KILL_RESTORED if state is SourceState.RESTORE_SENT else DestCleanup.DISCARD)
    assert dst.state is DestState.ABORTED


def test_abort_after_point_of_no_return_does_not_roll_back() -> None:
    src, _ = _to_state(SourceState.COMMITTED)
    (ev,) = src.abort("late failure")
    assert ev.recovery is SourceRecovery.MIGRATED and src.state is SourceState.COMMITTED


@pytest.mark.parametrize("state", [SourceState.READY, SourceState.FINAL_SENT, SourceState.RESTORE_SENT])
def test_destination_abort_makes_source_roll_back(state) -> None:
    src, dst = _to_state(state)
    if dst.state is DestState.RESTORING:
        (dev,) = dst.abort("restore failed")
        assert dev.cleanup is DestCleanup.KILL_RESTORED
    else:
        dst.abort("chunk 3 fails its sha256 check")
    (ev,) = _pump(src, dst)[0]
    # an explicit ABORT: the destination discarded its copy, so never in doubt
    frozen = state is not SourceState.READY
    assert isinstance(ev, Failed)
    assert ev.recovery is (SourceRecovery.RESUME_HERE if frozen else SourceRecovery.KEEP_RUNNING)
    assert src.state is (SourceState.ABORTED_FROZEN if frozen else SourceState.ABORTED)


@pytest.mark.parametrize(
    ("dest_state", "cleanup"),
    [(DestState.READY, DestCleanup.DISCARD), (DestState.FINAL_VERIFIED, DestCleanup.DISCARD),
     (DestState.RESTORING, DestCleanup.KEEP_IN_DOUBT), (DestState.RESTORED, DestCleanup.KEEP_IN_DOUBT)],
)
def test_destination_connection_loss(dest_state, cleanup) -> None:
    target = {DestState.READY: SourceState.READY, DestState.FINAL_VERIFIED: SourceState.FINAL_VERIFIED,
              DestState.RESTORING: SourceState.RESTORE_SENT, DestState.RESTORED: SourceState.RESTORE_SENT}[dest_state]
    src, dst = _to_state(target)
    if dest_state is DestState.RESTORED:
        dst.restored(9, 0.1)
    assert dst.state is dest_state
    (ev,) = dst.connection_lost()
    assert ev.cleanup is cleanup


def test_in_doubt_resolution() -> None:
    src, _ = _to_state(SourceState.RESTORE_SENT)
    (ev,) = src.connection_lost()
    assert ev.recovery is SourceRecovery.ASK_DESTINATION and src.state is SourceState.IN_DOUBT
    assert src.resolve_in_doubt(True) == [Finished("s1")]
    assert src.state is SourceState.DONE and src.past_point_of_no_return
    src2, _ = _to_state(SourceState.RESTORE_SENT)
    src2.connection_lost()
    (ev2,) = src2.resolve_in_doubt(False)
    assert isinstance(ev2, Failed) and ev2.recovery is SourceRecovery.RESUME_HERE
    assert src2.state is SourceState.ABORTED_FROZEN


def test_protocol_violations_abort_cleanly() -> None:
    src, dst = _to_ready(0)
    # destination sends RESTORED before any restore was requested
    ev = src.receive_data(codec.encode(MsgType.RESTORED, session="s1", pid=1, restore_s=0.0))
    assert isinstance(ev[0], Failed) and "unexpected RESTORED" in ev[0].reason
    # wrong session id
    src2, _ = _to_ready(0)
    ev = src2.receive_data(codec.encode(MsgType.DONE, session="other"))
    assert "session 'other'" in ev[0].reason
    # garbage bytes
    src3, _ = _to_ready(0)
    ev = src3.receive_data(b"XX\x01\x01\x00\x00\x00\x00")
    assert "bad frame magic" in ev[0].reason
    # destination: first message not HELLO, then a malicious manifest
    d = DestSession("?")
    (ev_d,) = d.receive_data(codec.encode(MsgType.COMMIT, session="x"))
    assert isinstance(ev_d, Aborted) and "expected HELLO" in ev_d.reason
    src4, dst4 = _to_ready(0)
    bad = _manifest(1, False).to_dict()
    bad["files"][0]["name"] = "../../etc/passwd"
    (ev_d,) = dst4.receive_data(codec.encode(MsgType.ROUND, session="s1", manifest=bad, netfilter_rules=[]))
    assert isinstance(ev_d, Aborted) and "plain CRIU image file name" in ev_d.reason
    # round out of order
    src5, dst5 = _to_ready(0)
    (ev_d,) = dst5.receive_data(codec.encode(MsgType.ROUND, session="s1", manifest=_manifest(3, False).to_dict(), netfilter_rules=[]))
    assert "out of order" in ev_d.reason


def test_caller_misuse_raises() -> None:
    src = SourceSession("s")
    with pytest.raises(ProtocolError, match="cannot send a round"):
        src.send_round(_manifest(1, False))
    src2, _ = _to_ready(0)
    with pytest.raises(ProtocolError, match="out of order"):
        src2.send_round(_manifest(2, False))
    with pytest.raises(ProtocolError, match="cannot request the restore"):
        src2.send_restore([])


def test_codec_roundtrip_split_feeds_and_limits() -> None:
    dec = codec.FrameDecoder()
    frames = codec.encode(MsgType.OK, detail="x") + codec.encode_chunk(2, 5, b"abcdef")
    out = []
    for i in range(len(frames)):  # one byte at a time
        out += dec.feed(frames[i : i + 1])
    assert out[0] == codec.Message(MsgType.OK, {"detail": "x"})
    assert out[1] == codec.Chunk(2, 5, b"abcdef")
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        codec.FrameDecoder().feed(struct.pack("!2sBBI", b"EM", codec.PROTOCOL_VERSION, int(MsgType.ROUND), 1 << 30))
    with pytest.raises(ProtocolError, match="version 9"):
        codec.FrameDecoder().feed(struct.pack("!2sBBI", b"EM", 9, 1, 0))
    with pytest.raises(ProtocolError, match="unknown message type"):
        codec.FrameDecoder().feed(struct.pack("!2sBBI", b"EM", codec.PROTOCOL_VERSION, 200, 0))
    with pytest.raises(ProtocolError, match="unknown keys"):
        payload = json.dumps({"detail": "x", "evil": 1}).encode()
        codec.FrameDecoder().feed(struct.pack("!2sBBI", b"EM", codec.PROTOCOL_VERSION, int(MsgType.OK), len(payload)) + payload)
    with pytest.raises(ProtocolError, match="not (valid )?UTF-8"):
        codec.FrameDecoder().feed(struct.pack("!2sBBI", b"EM", codec.PROTOCOL_VERSION, int(MsgType.OK), 3) + b"\x80\x81{")
    with pytest.raises(ProtocolError, match="expected int"):
        codec.encode(MsgType.RESTORED, session="s", pid=True, restore_s=0.1)


def test_lock_rules_travel_only_with_the_final_round() -> None:
    src, dst = _to_ready(0)
    with pytest.raises(ProtocolError, match="only travel with the final round"):
        src.send_round(_manifest(1, False), ["-A INPUT -j DROP"])
    src.send_round(_manifest(1, True), ["-A INPUT -j DROP"])
    _, d_ev = _pump(src, dst)
    assert d_ev[0].netfilter_rules == ("-A INPUT -j DROP",)
    src2, dst2 = _to_ready(0)
    msg = codec.encode(MsgType.ROUND, session="s1", manifest=_manifest(1, False).to_dict(), netfilter_rules=["x"])
    (ev,) = dst2.receive_data(msg)
    assert isinstance(ev, Aborted) and "only in the final round" in ev.reason


def test_pipelined_restore_saves_a_round_trip() -> None:
    src, dst = _to_ready(1)
    src.send_round(_manifest(2, True), ["-A INPUT -j DROP"])
    src.send_restore([])  # before the final ROUND_OK
    assert src.state is SourceState.RESTORE_PIPELINED
    _, d_ev = _pump(src, dst)
    assert isinstance(d_ev[0], RoundAnnounced) and len(d_ev) == 1  # RESTORE waits for the verification
    (ev,) = dst.round_verified(4, 0.0)
    assert ev == RestoreRequested(2, ()) and dst.state is DestState.RESTORING
    dst.restored(7, 0.1)
    s_ev, d_ev = _pump(src, dst)
    assert s_ev == [RoundVerified(2, 4, 0.0, True), Restored(7, 0.1), Finished("s1")]
    assert d_ev == [Committed("s1")]


def test_freeze_announced_before_the_final_round() -> None:
    """The source tells the destination it froze (with the lock rules) before it dumps: the destination
    takes the address over while the final round is still being made; the session goes on as before."""
    src, dst = _to_ready(1)
    src.mark_frozen()
    src.announce_frozen(["-A INPUT -j DROP"])
    assert src.state is SourceState.FROZEN_ANNOUNCED and src.frozen
    _, d_ev = _pump(src, dst)
    assert d_ev == [SourceFrozen(("-A INPUT -j DROP",))] and dst.state is DestState.SOURCE_FROZEN
    src.send_round(_manifest(2, True), ["-A INPUT -j DROP"])
    src.send_restore([])
    _, d_ev = _pump(src, dst)
    assert isinstance(d_ev[0], RoundAnnounced) and dst.state is DestState.RESTORE_QUEUED
    (ev,) = dst.round_verified(4, 0.0)
    assert ev == RestoreRequested(2, ())
    dst.restored(7, 0.1)
    s_ev, d_ev = _pump(src, dst)
    assert s_ev == [RoundVerified(2, 4, 0.0, True), Restored(7, 0.1), Finished("s1")]


def test_freeze_announcement_hostile_variants_abort() -> None:
    # rules that are not strings
    _, dst = _to_ready(1)
    (ev,) = dst.receive_data(codec.encode(MsgType.FROZEN, session="s1", netfilter_rules=[1]))
    assert isinstance(ev, Aborted) and "FROZEN.netfilter_rules" in ev.reason and ev.cleanup is DestCleanup.DISCARD
    # a leave-running round after the freeze
    _, dst2 = _to_ready(1)
    dst2.receive_data(codec.encode(MsgType.FROZEN, session="s1", netfilter_rules=[]))
    (ev,) = dst2.receive_data(codec.encode(MsgType.ROUND, session="s1", manifest=_manifest(2, False).to_dict(),
                                           netfilter_rules=[]))
    assert isinstance(ev, Aborted) and "cannot receive a ROUND" in ev.reason
    # announced twice, or before HELLO was accepted
    _, dst3 = _to_ready(1)
    dst3.receive_data(codec.encode(MsgType.FROZEN, session="s1", netfilter_rules=[]))
    (ev,) = dst3.receive_data(codec.encode(MsgType.FROZEN, session="s1", netfilter_rules=[]))
    assert isinstance(ev, Aborted) and "unexpected FROZEN" in ev.reason
    d = DestSession("?")
    (ev,) = d.receive_data(codec.encode(MsgType.FROZEN, session="s1", netfilter_rules=[]))
    assert isinstance(ev, Aborted) and "expected HELLO" in ev.reason
    # the source's connection lost after the announcement: the source resumes here, the destination discards
    src4, dst4 = _to_ready(1)
    src4.mark_frozen()
    src4.announce_frozen([])
    _pump(src4, dst4)
    (f,) = src4.connection_lost()
    assert isinstance(f, Failed) and f.recovery is SourceRecovery.RESUME_HERE
    (a,) = dst4.connection_lost()
    assert isinstance(a, Aborted) and a.cleanup is DestCleanup.DISCARD


def test_restored_before_final_round_ok_is_a_protocol_error() -> None:
    src, dst = _to_ready(1)
    src.send_round(_manifest(2, True))
    src.send_restore([])
    (ev,) = src.receive_data(codec.encode(MsgType.RESTORED, session="s1", pid=1, restore_s=0.0))
    assert isinstance(ev, Failed) and ev.recovery is SourceRecovery.ASK_DESTINATION


def test_garbage_after_restored_keeps_the_restored_copy() -> None:
    # the source passes the point of no return when RESTORED arrives: whatever the destination reads next,
    # it must not kill the only running copy
    src, dst = _to_state(SourceState.RESTORE_SENT)
    dst.restored(9, 0.1)
    (ev,) = dst.receive_data(b"EM" + bytes([codec.PROTOCOL_VERSION, 99]) + b"\x00" * 4)
    assert isinstance(ev, Aborted) and ev.cleanup is DestCleanup.KEEP_IN_DOUBT


def test_rounds_beyond_the_accepted_limits_abort() -> None:
    src, dst = SourceSession("s1"), DestSession("?")
    src.hello(SPEC, "edge-a", "precopy")
    _pump(src, dst)
    dst.accept(round_limit_bytes=10, session_limit_bytes=6)
    _pump(src, dst)
    src.send_round(_manifest(1, False))  # 4 bytes: within both
    _, d_ev = _pump(src, dst)
    assert isinstance(d_ev[0], RoundAnnounced)
    dst.round_verified(4, 0.0)
    _pump(src, dst)
    src.send_round(_manifest(2, False))  # 8 bytes in the session > 6
    s_ev, d_ev = _pump(src, dst)
    assert isinstance(d_ev[0], Aborted) and "exceed its limit of 6" in d_ev[0].reason
    assert isinstance(s_ev[0], Failed)


@pytest.mark.parametrize("bad", ["/", "..", "a/../../b", "", "x\n", "a" * 4096])
def test_hello_with_a_bad_session_id_is_refused_with_a_reason(bad: str) -> None:
    dst = DestSession("?")
    (ev,) = dst.receive_data(codec.encode(MsgType.HELLO, session=bad, service=SPEC, src_host="edge-a",
                                          src_addr="", strategy="precopy", token=""))
    assert isinstance(ev, Aborted) and "not an identifier" in ev.reason
    assert dst.session == "?"
    (reply,) = codec.FrameDecoder().feed(dst.data_to_send())
    assert reply.type is MsgType.ABORT and "not an identifier" in reply.body["reason"]
