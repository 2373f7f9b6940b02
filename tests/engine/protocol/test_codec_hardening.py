"""Hostile control messages: every decode failure is a ProtocolError, and values later code would choke on
(NaN, huge or fractional numbers, deep nesting, duplicate keys, lone surrogates) never get through."""

from __future__ import annotations

import json

import pytest

from edgemigrate.engine.protocol.codec import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    FrameDecoder,
    Message,
    MsgType,
    ProtocolError,
    encode,
)
from edgemigrate.engine.strictjson import MAX_JSON_DEPTH


def _frame(mtype: MsgType, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(mtype), len(payload)) + payload


def _decode(mtype: MsgType, payload: bytes) -> list:
    return FrameDecoder().feed(_frame(mtype, payload))


def test_deeply_nested_json_is_a_protocol_error() -> None:
    # deep enough for the C JSON scanner to hit the interpreter's recursion limit
    deep = b'{"event":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(ProtocolError, match="PROGRESS"):
        _decode(MsgType.PROGRESS, deep)


def test_nesting_beyond_the_depth_limit_is_refused() -> None:
    n = MAX_JSON_DEPTH + 1
    body = b'{"event":' + b'{"a":' * n + b"0" + b"}" * n + b"}"
    with pytest.raises(ProtocolError, match="nested"):
        _decode(MsgType.PROGRESS, body)
    ok = MAX_JSON_DEPTH - 2
    body = b'{"event":' + b'{"a":' * ok + b"0" + b"}" * ok + b"}"
    (msg,) = _decode(MsgType.PROGRESS, body)
    assert isinstance(msg, Message)


@pytest.mark.parametrize("digits", [5000, 30, 20])
def test_huge_integers_are_a_protocol_error(digits: int) -> None:
    # 5000 digits exceed Python's int string limit (ValueError); 20-30 digits exceed int64
    payload = b'{"session":"s","round":1,"received_bytes":' + b"9" * digits + b',"rebuild_s":0.1}'
    with pytest.raises(ProtocolError, match="integer"):
        _decode(MsgType.ROUND_OK, payload)
    nested = b'{"stats":{"x":[' + b"9" * digits + b"]}}"
    with pytest.raises(ProtocolError, match="integer"):
        _decode(MsgType.RESULT, nested)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_refused(literal: bytes) -> None:
    with pytest.raises(ProtocolError, match="finite|not JSON"):
        _decode(MsgType.RESULT, b'{"stats":{"t":' + literal + b"}}")
    with pytest.raises(ProtocolError):
        _decode(MsgType.ROUND_OK, b'{"session":"s","round":1,"received_bytes":0,"rebuild_s":' + literal + b"}")


def test_floats_where_ints_are_expected_are_refused() -> None:
    with pytest.raises(ProtocolError, match="round: expected int"):
        _decode(MsgType.ROUND_OK, b'{"session":"s","round":1.0,"received_bytes":0,"rebuild_s":0.1}')


@pytest.mark.parametrize(
    ("key", "value"),
    [("round", -1), ("received_bytes", 2**63), ("received_bytes", -5), ("rebuild_s", -0.5)],
)
def test_top_level_numbers_are_bounded(key: str, value: float) -> None:
    body = {"session": "s", "round": 1, "received_bytes": 0, "rebuild_s": 0.1, key: value}
    payload = json.dumps(body).encode()
    with pytest.raises(ProtocolError, match=f"{key}|64-bit range"):
        _decode(MsgType.ROUND_OK, payload)
    with pytest.raises(ProtocolError, match=key):  # our own side refuses to send it too
        encode(MsgType.ROUND_OK, **body)


def test_in_range_numbers_pass() -> None:
    body = {"session": "s", "round": 3, "received_bytes": 2**63 - 1, "rebuild_s": 7}
    (msg,) = _decode(MsgType.ROUND_OK, json.dumps(body).encode())
    assert msg.body == body
    (msg,) = _decode(MsgType.RESULT, b'{"stats":{"a":-9223372036854775808,"b":-1.5e300}}')
    assert msg.body["stats"] == {"a": -(2**63), "b": -1.5e300}


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ProtocolError, match="duplicate key"):
        _decode(MsgType.HELLO_OK, b'{"session":"a","session":"b"}')


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ProtocolError, match="surrogate|UTF-8"):
        _decode(MsgType.HELLO_OK, b'{"session":"\\ud800"}')
    with pytest.raises(ProtocolError, match="surrogate|UTF-8"):
        _decode(MsgType.RESULT, b'{"stats":{"\\udfff":1}}')
    (msg,) = _decode(MsgType.HELLO_OK, b'{"session":"\\ud83d\\ude00"}')  # a valid pair is fine
    assert msg.body["session"] == "\U0001f600"


def test_non_utf8_and_bom_are_refused() -> None:
    with pytest.raises(ProtocolError):
        _decode(MsgType.HELLO_OK, '{"session":"a"}'.encode("utf-16"))
    with pytest.raises(ProtocolError):
        _decode(MsgType.HELLO_OK, b'\xef\xbb\xbf{"session":"a"}')


_MIGRATE = {"service": "kv", "to_host": "edge2", "to_addr": "10.0.0.2:7443", "strategy": "precopy", "token": "t"}


@pytest.mark.parametrize("value", [b"-1", b'"fast"', b"true", b"NaN", b"1e400", b"[1]", b"18446744073709551616"])
def test_a_migrate_requests_dirty_rate_is_a_finite_number_at_least_0(value: bytes) -> None:
    """The controller's dirty-rate hint steers the source's stop rule: a peer's bad one never gets there."""
    payload = json.dumps(_MIGRATE).encode()[:-1] + b',"dirty_bytes_per_s":' + value + b"}"
    with pytest.raises(ProtocolError):
        _decode(MsgType.MIGRATE, payload)


def test_a_migrate_request_with_or_without_a_dirty_rate_passes() -> None:
    (msg,) = _decode(MsgType.MIGRATE, json.dumps(_MIGRATE | {"dirty_bytes_per_s": 20_000}).encode())
    assert msg.body["dirty_bytes_per_s"] == 20_000
    (msg,) = _decode(MsgType.MIGRATE, json.dumps(_MIGRATE).encode())
    assert "dirty_bytes_per_s" not in msg.body


@pytest.mark.parametrize("value", [b"1", b"null", b"true", b'["live"]', b'{"a":1}'])
def test_a_migrate_requests_precopy_read_is_a_string(value: bytes) -> None:
    """How the source reads memory in pre-copy rounds: a peer's non-string never reaches the agent (which
    refuses any string but dump or live with one line, tests/control/test_migration_real.py)."""
    payload = json.dumps(_MIGRATE).encode()[:-1] + b',"precopy_read":' + value + b"}"
    with pytest.raises(ProtocolError):
        _decode(MsgType.MIGRATE, payload)
    (msg,) = _decode(MsgType.MIGRATE, json.dumps(_MIGRATE | {"precopy_read": "live"}).encode())
    assert msg.body["precopy_read"] == "live"
