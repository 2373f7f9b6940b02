"""The session state machines follow their transition tables exactly, checked exhaustively.

For every state (reached through the sessions' public API along a shortest path of the table) and every
input: a listed transition leads to the listed state; an unlisted one is a :class:`ProtocolError` - raised
to a caller that misuses the session, answered with an abort when a peer's message breaks the protocol.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from edgemigrate.engine.manifest import ChunkSpec, FileKind, FileSpec, Manifest
from edgemigrate.engine.protocol.codec import MsgType, ProtocolError, encode
from edgemigrate.engine.protocol.session import (
    DEST_TRANSITIONS,
    SOURCE_TRANSITIONS,
    Aborted,
    DestInput,
    DestSession,
    DestState,
    Failed,
    SourceInput,
    SourceSession,
    SourceState,
    next_state,
)

SPEC = {"name": "counter", "kind": "counter"}


def _manifest(round_index: int, final: bool) -> Manifest:
    f = FileSpec("core-1.img", FileKind.FULL, 4, 4, "a" * 64)
    return Manifest("counter", round_index, final, (f,), (ChunkSpec(0, "core-1.img", 0, 4, "b" * 64),))


def _msg(mtype: MsgType, **body: Any) -> bytes:
    return encode(mtype, session="s1", **body)


SOURCE_STIMULI: dict[SourceInput, Callable[[SourceSession], object]] = {
    SourceInput.SEND_HELLO: lambda s: s.hello(SPEC, "edge-a", "precopy"),
    SourceInput.SEND_ROUND: lambda s: s.send_round(_manifest(s.rounds_sent + 1, False)),
    SourceInput.FREEZE: lambda s: s.mark_frozen(),
    SourceInput.ANNOUNCE_FROZEN: lambda s: s.announce_frozen([]),
    SourceInput.SEND_FINAL_ROUND: lambda s: s.send_round(_manifest(s.rounds_sent + 1, True)),
    SourceInput.SEND_RESTORE: lambda s: s.send_restore([]),
    SourceInput.LOCAL_FAILURE: lambda s: s.abort("local failure"),
    SourceInput.CONNECTION_LOST: lambda s: s.connection_lost(),
    SourceInput.PEER_RUNNING: lambda s: s.resolve_in_doubt(True),
    SourceInput.PEER_NOT_RUNNING: lambda s: s.resolve_in_doubt(False),
    SourceInput.GOT_HELLO_OK: lambda s: s.receive_data(_msg(MsgType.HELLO_OK)),
    SourceInput.GOT_ROUND_OK: lambda s: s.receive_data(
        _msg(MsgType.ROUND_OK, round=s.rounds_sent, received_bytes=4, rebuild_s=0.0)),
    SourceInput.GOT_RESTORED: lambda s: s.receive_data(_msg(MsgType.RESTORED, pid=7, restore_s=0.1)),
    SourceInput.GOT_DONE: lambda s: s.receive_data(_msg(MsgType.DONE)),
    SourceInput.GOT_ABORT: lambda s: s.receive_data(_msg(MsgType.ABORT, reason="peer failure")),
}

DEST_STIMULI: dict[DestInput, Callable[[DestSession], object]] = {
    DestInput.ACCEPT: lambda d: d.accept(),
    DestInput.VERIFIED: lambda d: d.round_verified(4, 0.0),
    DestInput.RESTORED: lambda d: d.restored(7, 0.1),
    DestInput.LOCAL_FAILURE: lambda d: d.abort("local failure"),
    DestInput.CONNECTION_LOST: lambda d: d.connection_lost(),
    DestInput.GOT_HELLO: lambda d: d.receive_data(
        _msg(MsgType.HELLO, service=SPEC, src_host="edge-a", src_addr="", strategy="precopy", token="")),
    DestInput.GOT_ROUND: lambda d: d.receive_data(
        _msg(MsgType.ROUND, manifest=_manifest(d.rounds_verified + 1, False).to_dict(), netfilter_rules=[])),
    DestInput.GOT_FROZEN: lambda d: d.receive_data(_msg(MsgType.FROZEN, netfilter_rules=[])),
    DestInput.GOT_FINAL_ROUND: lambda d: d.receive_data(
        _msg(MsgType.ROUND, manifest=_manifest(d.rounds_verified + 1, True).to_dict(), netfilter_rules=[])),
    DestInput.GOT_RESTORE: lambda d: d.receive_data(
        _msg(MsgType.RESTORE, round=d.manifest.round_index if d.manifest else 1, netfilter_rules=[])),
    DestInput.GOT_COMMIT: lambda d: d.receive_data(_msg(MsgType.COMMIT)),
    DestInput.GOT_ABORT: lambda d: d.receive_data(_msg(MsgType.ABORT, reason="peer failure")),
}

SOURCE_CALLS = {SourceInput.SEND_HELLO, SourceInput.SEND_ROUND, SourceInput.FREEZE, SourceInput.ANNOUNCE_FROZEN,
                SourceInput.SEND_FINAL_ROUND,
                SourceInput.SEND_RESTORE, SourceInput.PEER_RUNNING, SourceInput.PEER_NOT_RUNNING}
DEST_CALLS = {DestInput.ACCEPT, DestInput.VERIFIED, DestInput.RESTORED}


def _paths(table: Mapping[tuple[Any, Any], Any], start: Any) -> dict[Any, list[Any]]:
    """A shortest list of inputs from ``start`` to every reachable state."""
    paths = {start: []}
    todo = deque([start])
    while todo:
        st = todo.popleft()
        for (s, inp), nxt in table.items():
            if s is st and nxt not in paths:
                paths[nxt] = [*paths[st], inp]
                todo.append(nxt)
    return paths


SOURCE_PATHS = _paths(SOURCE_TRANSITIONS, SourceState.IDLE)
DEST_PATHS = _paths(DEST_TRANSITIONS, DestState.IDLE)


def _source_in(state: SourceState) -> SourceSession:
    s = SourceSession("s1")
    for inp in SOURCE_PATHS[state]:
        SOURCE_STIMULI[inp](s)
    assert s.state is state
    return s


def _dest_in(state: DestState) -> DestSession:
    d = DestSession("?")
    for inp in DEST_PATHS[state]:
        DEST_STIMULI[inp](d)
    assert d.state is state
    return d


def test_every_state_is_reachable_and_every_input_has_a_stimulus() -> None:
    assert set(SOURCE_PATHS) == set(SourceState) and set(DEST_PATHS) == set(DestState)
    assert set(SOURCE_STIMULI) == set(SourceInput) and set(DEST_STIMULI) == set(DestInput)


def test_failures_are_defined_in_every_state() -> None:
    for st in SourceState:
        for inp in (SourceInput.LOCAL_FAILURE, SourceInput.CONNECTION_LOST):
            assert (st, inp) in SOURCE_TRANSITIONS, (st, inp)
    for dst in DestState:
        for dinp in (DestInput.LOCAL_FAILURE, DestInput.CONNECTION_LOST):
            assert (dst, dinp) in DEST_TRANSITIONS, (dst, dinp)


def test_the_point_of_no_return_is_one_transition_and_is_never_undone() -> None:
    past = {SourceState.COMMITTED, SourceState.DONE}
    into = {(s, i) for (s, i), n in SOURCE_TRANSITIONS.items() if n in past and s not in past}
    assert into == {(SourceState.RESTORE_SENT, SourceInput.GOT_RESTORED), (SourceState.IN_DOUBT, SourceInput.PEER_RUNNING)}
    assert all(n in past for (s, _), n in SOURCE_TRANSITIONS.items() if s in past)


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(SourceState, SourceInput)),
                         ids=lambda x: x.name)
def test_source_session_follows_its_table(state: SourceState, inp: SourceInput) -> None:
    s = _source_in(state)
    listed = SOURCE_TRANSITIONS.get((state, inp))
    if listed is not None:
        SOURCE_STIMULI[inp](s)
        assert s.state is listed
        return
    with pytest.raises(ProtocolError, match=f"cannot {inp.value} in state {state.value}"):
        next_state(SOURCE_TRANSITIONS, state, inp, "source")
    if inp in SOURCE_CALLS:
        with pytest.raises(ProtocolError):
            SOURCE_STIMULI[inp](s)
        assert s.state is state
    else:  # a peer's message out of turn aborts the session
        events = SOURCE_STIMULI[inp](s)
        assert s.state is SOURCE_TRANSITIONS[(state, SourceInput.LOCAL_FAILURE)]
        assert all(isinstance(e, Failed) and "protocol error" in e.reason for e in events)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(DestState, DestInput)), ids=lambda x: x.name)
def test_destination_session_follows_its_table(state: DestState, inp: DestInput) -> None:
    d = _dest_in(state)
    listed = DEST_TRANSITIONS.get((state, inp))
    if listed is not None:
        DEST_STIMULI[inp](d)
        assert d.state is listed
        return
    with pytest.raises(ProtocolError, match=f"cannot {inp.value} in state {state.value}"):
        next_state(DEST_TRANSITIONS, state, inp, "destination")
    if inp in DEST_CALLS:
        with pytest.raises(ProtocolError):
            DEST_STIMULI[inp](d)
        assert d.state is state
    else:
        events = DEST_STIMULI[inp](d)
        assert d.state is DEST_TRANSITIONS[(state, DestInput.LOCAL_FAILURE)]
        assert all(isinstance(e, Aborted) and "protocol error" in e.reason for e in events)  # type: ignore[attr-defined]
