"""Framing and message codec of the agent protocol (no sockets here; never pickle or eval).

Every frame is ``magic(2) | version(u8) | type(u8) | length(u32, big-endian) | payload``. Control messages
carry a UTF-8 JSON object, decoded strictly (:func:`edgemigrate.engine.strictjson.loads_untrusted`: finite
numbers, 64-bit integers, bounded nesting) and validated against a per-type schema; the one data message (:attr:`MsgType.CHUNK`)
carries a small binary header (round, chunk index) followed by the chunk as one compression frame
(:mod:`edgemigrate.engine.codecs.frames`: codec, level, raw size, BLAKE2b, payload). Version 2 added
the frames (version 1 sent raw chunk bytes); a peer of another version is refused with a message naming
both versions. Version 3 added migration tokens (``AUTHORIZE``; ``token`` in ``MIGRATE`` and ``HELLO``).
:class:`FrameDecoder`
is incremental: feed it whatever bytes arrived, get back whole messages.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.codecs.frames import HEADER_SIZE_BYTES as FRAME_HEADER_BYTES
from edgemigrate.engine.codecs.frames import max_payload_bytes
from edgemigrate.engine.manifest import MAX_CHUNK_SIZE_BYTES
from edgemigrate.engine.strictjson import MAX_JSON_INT, loads_untrusted

MAGIC = b"EM"
PROTOCOL_VERSION = 3
HEADER = struct.Struct("!2sBBI")
CHUNK_HEADER = struct.Struct("!II")
MAX_CONTROL_PAYLOAD_BYTES = 16 << 20  # a manifest of a 64 GiB image is ~10 MB of JSON
# a frame of an incompressible chunk of the largest size a manifest allows is larger than that chunk: every
# codec's worst case must fit
MAX_CHUNK_PAYLOAD_BYTES = CHUNK_HEADER.size + FRAME_HEADER_BYTES + max_payload_bytes(MAX_CHUNK_SIZE_BYTES)


class ProtocolError(EngineError):
    """The peer sent something the protocol does not allow (bad frame, schema, or state)."""


class MsgType(enum.IntEnum):
    # agent <-> agent, control connection
    HELLO = 1
    HELLO_OK = 2
    ROUND = 3
    ROUND_OK = 4
    RESTORE = 5
    RESTORED = 6
    COMMIT = 7
    DONE = 8
    ABORT = 9
    FROZEN = 10  # source -> destination: paused and locked for the final dump; take the address over
    # client (CLI/controller) <-> agent
    MIGRATE = 20
    PROGRESS = 21
    RESULT = 22
    STATUS = 23
    STATUS_REPLY = 24
    DEPLOY = 25
    STOP = 26
    OK = 27
    ERROR = 28
    AUTHORIZE = 29  # client -> destination agent: expect this migration (a one-time token)
    REPORT = 30  # client, the host itself or a granted neighbour -> agent: its resource report
    REPORT_REPLY = 31
    GRANT = 32  # client -> source and neighbour agents: a standing, scoped grant (control/grants.py)
    # data connection
    DATA_OPEN = 40
    CHUNK = 41


# required keys and their JSON types per control message; unknown keys are rejected
_SCHEMA: dict[MsgType, dict[str, type | tuple[type, ...]]] = {
    MsgType.HELLO: {"session": str, "service": dict, "src_host": str, "src_addr": str, "strategy": str,
                    "token": str},
    MsgType.HELLO_OK: {"session": str},
    MsgType.FROZEN: {"session": str, "netfilter_rules": list},
    MsgType.ROUND: {"session": str, "manifest": dict, "netfilter_rules": list},
    MsgType.ROUND_OK: {"session": str, "round": int, "received_bytes": int, "rebuild_s": float},
    MsgType.RESTORE: {"session": str, "round": int, "netfilter_rules": list},
    MsgType.RESTORED: {"session": str, "pid": int, "restore_s": float},
    MsgType.COMMIT: {"session": str},
    MsgType.DONE: {"session": str},
    MsgType.ABORT: {"session": str, "reason": str},
    MsgType.MIGRATE: {"service": str, "to_host": str, "to_addr": str, "strategy": str, "token": str},
    MsgType.AUTHORIZE: {"service": str, "src_host": str, "to_host": str, "token": str, "ttl_s": float},
    MsgType.REPORT: {},
    MsgType.REPORT_REPLY: {"host": str, "report": dict},
    MsgType.GRANT: {"token": str, "policy": str, "source": str, "neighbours": list, "services": list,
                    "ttl_s": float},
    MsgType.PROGRESS: {"event": dict},
    MsgType.RESULT: {"stats": dict},
    MsgType.STATUS: {},
    MsgType.STATUS_REPLY: {"host": str, "services": dict},
    MsgType.DEPLOY: {"service": dict},
    MsgType.STOP: {"service": str},
    MsgType.OK: {"detail": str},
    MsgType.ERROR: {"message": str},
    MsgType.DATA_OPEN: {"session": str},
}


# optional keys (may be absent; if present, of this type)
_OPTIONAL: dict[MsgType, dict[str, type | tuple[type, ...]]] = {
    # dirty_bytes_per_s: the service's dirty rate from its earlier migrations, for the pre-copy stop rule;
    # precopy_read: how pre-copy rounds read memory ("dump" or "live", control/source.py PrecopyRead)
    MsgType.MIGRATE: {"compression": str, "page_codec": str, "pipeline": str, "dirty_bytes_per_s": float,
                      "precopy_read": str},
    # a granted source asks admission of a migration, or reports that one it was admitted for is over
    # (control/grants.py)
    MsgType.REPORT: {"admit": dict, "release": dict},
    MsgType.REPORT_REPLY: {"admission": dict, "released": bool},
    MsgType.GRANT: {"admit_below": float},
}


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded control message: its type and validated JSON body."""

    type: MsgType
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One decoded data message."""

    round_index: int
    index: int
    data: bytes


def _check_body(mtype: MsgType, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{mtype.name}: body must be a JSON object")
    schema = _SCHEMA[mtype]
    optional = _OPTIONAL.get(mtype, {})
    for key, typ in (*schema.items(), *optional.items()):
        if key not in body:
            if key in optional:
                continue
            raise ProtocolError(f"{mtype.name}: missing key {key!r}")
        value = body[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise ProtocolError(f"{mtype.name}.{key}: expected {getattr(typ, '__name__', typ)}")
        # every top-level number is a count, an index, a pid or a duration: never negative, and it must fit
        # the 64-bit fields it ends up in (the comparison also refuses NaN and infinities)
        if typ is int or typ is float:
            if not 0 <= value <= MAX_JSON_INT:
                raise ProtocolError(f"{mtype.name}.{key}: {value} outside 0..{MAX_JSON_INT}")
    extra = set(body) - set(schema) - set(optional)
    if extra:
        raise ProtocolError(f"{mtype.name}: unknown keys {sorted(extra)}")
    return body


def encode(mtype: MsgType, **body: Any) -> bytes:
    """Encode a control message; validates the body against the schema first."""
    if mtype is MsgType.CHUNK:
        raise ProtocolError("use encode_chunk for data")
    try:
        # the peer refuses NaN and infinities: fail on this side, naming the message, not on the peer
        payload = json.dumps(_check_body(mtype, body), separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise ProtocolError(f"{mtype.name}: body is not strict JSON ({exc})") from None
    if len(payload) > MAX_CONTROL_PAYLOAD_BYTES:
        raise ProtocolError(f"{mtype.name}: payload of {len(payload)} bytes exceeds the limit")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(mtype), len(payload)) + payload


def encode_chunk_header(round_index: int, index: int, size_bytes: int) -> bytes:
    """Frame header + chunk header; the caller writes the raw bytes right after (no copy)."""
    if size_bytes + CHUNK_HEADER.size > MAX_CHUNK_PAYLOAD_BYTES:
        raise ProtocolError(f"chunk of {size_bytes} bytes exceeds the limit")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(MsgType.CHUNK), CHUNK_HEADER.size + size_bytes) + (
        CHUNK_HEADER.pack(round_index, index)
    )


def encode_chunk(round_index: int, index: int, data: bytes | memoryview) -> bytes:
    return encode_chunk_header(round_index, index, len(data)) + bytes(data)


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete messages so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message | Chunk]:
        self._buf += data
        out: list[Message | Chunk] = []
        while len(self._buf) >= HEADER.size:
            magic, version, raw_type, length = HEADER.unpack_from(self._buf, 0)
            if magic != MAGIC:
                raise ProtocolError(f"bad frame magic {bytes(magic)!r}")
            if version != PROTOCOL_VERSION:
                raise ProtocolError(f"peer speaks protocol version {version}, this agent speaks {PROTOCOL_VERSION}"
                                    " (run the same edgemigrate release on every host)")
            try:
                mtype = MsgType(raw_type)
            except ValueError:
                raise ProtocolError(f"unknown message type {raw_type}") from None
            limit = MAX_CHUNK_PAYLOAD_BYTES if mtype is MsgType.CHUNK else MAX_CONTROL_PAYLOAD_BYTES
            if length > limit:
                raise ProtocolError(f"{mtype.name}: declared length {length} exceeds the limit {limit}")
            if len(self._buf) < HEADER.size + length:
                break
            if mtype is MsgType.CHUNK and length >= CHUNK_HEADER.size:  # one copy of the raw bytes, not two
                round_index, index = CHUNK_HEADER.unpack_from(self._buf, HEADER.size)
                data = bytes(memoryview(self._buf)[HEADER.size + CHUNK_HEADER.size : HEADER.size + length])
                del self._buf[: HEADER.size + length]
                out.append(Chunk(round_index, index, data))
                continue
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            out.append(_decode_payload(mtype, payload))
        return out


def _decode_payload(mtype: MsgType, payload: bytes) -> Message | Chunk:
    if mtype is MsgType.CHUNK:
        if len(payload) < CHUNK_HEADER.size:
            raise ProtocolError("CHUNK: shorter than its header")
        round_index, index = CHUNK_HEADER.unpack_from(payload, 0)
        return Chunk(round_index, index, payload[CHUNK_HEADER.size :])
    body = loads_untrusted(payload, ProtocolError, mtype.name)
    return Message(mtype, _check_body(mtype, body))
