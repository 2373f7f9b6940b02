"""Fuzzing every decoder that reads peer bytes: whatever arrives, only the project's own errors come out.

Covers the agent protocol (:class:`FrameDecoder`), round manifests (:meth:`Manifest.from_dict`) and the
compression frames (``decode_chunk``, ``decode_header``, ``decode_data``, ``parse_control``), on arbitrary
input and on valid input with mutated bytes or hostile JSON values (deep nesting, huge integers, NaN,
fractions where ints belong, lone surrogates). Any other exception - ValueError, RecursionError,
TypeError, a library's own error - fails the test. Derandomized with a bounded number of examples, so it
is deterministic and quick enough for every CI run.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.engine import delta
from edgemigrate.engine.adaptive.sender import decode_chunk
from edgemigrate.engine.codecs.frames import (
    HEADER_SIZE_BYTES,
    FrameError,
    FrameHeader,
    FrameKind,
    FrameLimits,
    decode_data,
    decode_data_frame,
    decode_header,
    encode_data_frame,
    parse_control,
    raw_digest,
)
from edgemigrate.engine.codecs.registry import make_codec
from edgemigrate.engine.manifest import (
    ChunkSpec,
    FileKind,
    FileSpec,
    IntegrityError,
    Manifest,
    ManifestError,
    RoundReceiver,
)
from edgemigrate.engine.protocol.codec import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    FrameDecoder,
    Message,
    MsgType,
    ProtocolError,
    encode,
    encode_chunk,
)

OUR_ERRORS = (ProtocolError, ManifestError, FrameError, IntegrityError)
assert all(issubclass(e, EdgeMigrateError) for e in OUR_ERRORS)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@dataclass(frozen=True)
class Raw:
    """A JSON token emitted verbatim by :func:`dump` (NaN, 1e400, 5000 digits, a deep array...).

    Not a ``str`` subclass: Hypothesis replays drawn values by their exact type when it shrinks."""

    text: str


HOSTILE_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000, "-" + "9" * 4400, "18446744073709551616",
    "9223372036854775808", "-9223372036854775809", "1.0", "0.5", "-1", "1E2", "true", "null", '"\\ud800"',
    '"\\udc00x"', "[" * 3000 + "]" * 3000, '{"a":' * 3000 + "0" + "}" * 3000, "[" * 40 + "]" * 40,
    "[1,2", "{", '"unterminated', "01", "+1", ".5", "0x10", "'x'", "[1,]", '{"a":1,"a":2}',
]

hostile_token = st.sampled_from(HOSTILE_TOKENS).map(Raw)


def dump(obj: Any) -> str:
    """JSON text of ``obj``; :class:`Raw` values are inserted as they are."""
    if isinstance(obj, Raw):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dump(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dump(v) for v in obj) + "]"
    return json.dumps(obj)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | hostile_token
)
json_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
# what Manifest.from_dict sees is already decoded: no Raw tokens, but every Python value JSON can produce
decoded_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
decoded_json = st.recursive(
    decoded_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


def _must_be_ours(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OUR_ERRORS:
        return None


def _feed_in_pieces(data: bytes, cuts: list[int]) -> list[Any]:
    dec = FrameDecoder()
    out: list[Any] = []
    prev = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        out += dec.feed(data[prev:cut])
        prev = cut
    return out


def _mutate(data: bytes, draw: Any) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "extend":
            buf += draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


# ------------------------------------------------------------------------------------------- manifests

_PAGES = b"\x07" * 8192
_CORE = bytes(range(256)) * 40  # 10240 bytes, three chunks of 4096
_PAGEMAP = delta.encode_pagemap(1, [(0x400000, 2, delta.PE_PRESENT)])
_DESCRIPTORS = b"[]"
_DELTA = b"\xc0" + bytes(4095) + _PAGES  # bitmap (both pages changed, padded to a page) + the pages


def _valid_manifest() -> dict[str, Any]:
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    files = (
        FileSpec("pagemap-1.img", FileKind.SAME, len(_PAGEMAP), 0, sha(_PAGEMAP)),
        FileSpec("pages-1.img", FileKind.PAGES, 8192, 4096 + 8192, None, "pagemap-1.img", "pages-1.img"),
        FileSpec("core-1.img", FileKind.FULL, len(_CORE), len(_CORE), sha(_CORE)),
        FileSpec("descriptors.json", FileKind.SAME, len(_DESCRIPTORS), 0, sha(_DESCRIPTORS)),
    )
    chunks = (
        ChunkSpec(0, "pages-1.img", 0, len(_DELTA), sha(_DELTA)),
        ChunkSpec(1, "core-1.img", 0, 4096, sha(_CORE[:4096])),
        ChunkSpec(2, "core-1.img", 4096, 4096, sha(_CORE[4096:8192])),
        ChunkSpec(3, "core-1.img", 8192, 2048, sha(_CORE[8192:])),
    )
    d = Manifest("svc", 2, True, files, chunks).to_dict()
    assert Manifest.from_dict(json.loads(json.dumps(d))).to_dict() == d
    return d


VALID_MANIFEST = _valid_manifest()


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


MANIFEST_PATHS = _paths(VALID_MANIFEST)[1:]


@st.composite
def mutated_manifests(draw: Any, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    d = json.loads(json.dumps(VALID_MANIFEST))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(MANIFEST_PATHS))
        parent: Any = d
        try:
            for key in path[:-1]:
                parent = parent[key]
            op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if op == "replace":
                parent[path[-1]] = draw(values)
            elif op == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(values)
            else:
                parent.append(draw(values))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation changed the shape under this path
    return d


interesting_values = (
    decoded_json
    | st.sampled_from([0, -1, 1, 2**32, 2**63, 2**64 + 1, 1.0, 0.0, True, False, None, "", "x" * 300,
                       "../x.img", "pages-1.img", "pagemap-1.img", "core-1.img", "same", "full", "pages",
                       float("nan"), float("inf"), 10**400, "\ud800", [], {}])
    | st.integers(min_value=-(2**66), max_value=2**66)
)


@FUZZ
@given(decoded_json)
def test_manifest_from_arbitrary_objects(obj: Any) -> None:
    _must_be_ours(Manifest.from_dict, obj)
    if isinstance(obj, dict):  # a plausible top level around arbitrary members
        _must_be_ours(Manifest.from_dict, {**VALID_MANIFEST, **obj})


@FUZZ
@given(mutated_manifests(interesting_values), st.sampled_from([0, 100, 20000, 1 << 40]))
def test_manifest_from_mutated_valid_manifests(d: dict[str, Any], limit: int) -> None:
    m = _must_be_ours(Manifest.from_dict, d)
    _must_be_ours(Manifest.from_dict, d, limit)
    if m is not None:  # whatever got through is internally consistent
        assert m.payload_bytes == sum(c.size_bytes for c in m.chunks)
        assert m.image_bytes <= 1 << 36
        assert all(type(c.index) is int and type(c.offset) is int for c in m.chunks)


_SOURCE = {"pagemap-1.img": _PAGEMAP, "pages-1.img": bytes(8192), "core-1.img": b"old core",
           "descriptors.json": _DESCRIPTORS}


def _receive(m: Manifest) -> Path | None:
    with tempfile.TemporaryDirectory() as tmp:
        prev = Path(tmp) / "prev"
        prev.mkdir()
        for name, data in _SOURCE.items():
            (prev / name).write_bytes(data)
        payloads = {"pages-1.img": _DELTA, "core-1.img": _CORE}
        rx = RoundReceiver(m, Path(tmp) / "dst", prev)
        try:
            for c in m.chunks:
                data = payloads.get(c.file, b"")[c.offset : c.offset + c.size_bytes].ljust(c.size_bytes, b"\0")
                _must_be_ours(rx.accept_chunk, c.index, data)
            out = _must_be_ours(rx.finish)
            return out and Path(out.name)  # the directory goes with tmp
        finally:
            rx.close()


def test_receiver_harness_rebuilds_the_valid_manifest() -> None:
    assert _receive(Manifest.from_dict(VALID_MANIFEST)) == Path("dst")


@settings(FUZZ, max_examples=150)
@given(mutated_manifests(interesting_values))
def test_receiver_on_accepted_mutated_manifests(d: dict[str, Any]) -> None:
    """Whatever manifest gets through, receiving and rebuilding fails only with IntegrityError."""
    m = _must_be_ours(Manifest.from_dict, d, 1 << 20)
    if m is not None:
        _receive(m)


# -------------------------------------------------------------------------------------- agent protocol


def _frame(mtype: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    return HEADER.pack(MAGIC, version, mtype, len(payload)) + payload


VALID_FRAMES = [
    encode(MsgType.HELLO_OK, session="s1"),
    encode(MsgType.ROUND_OK, session="s1", round=1, received_bytes=123, rebuild_s=0.25),
    encode(MsgType.RESTORED, session="s1", pid=42, restore_s=1.5),
    encode(MsgType.ROUND, session="s1", manifest=VALID_MANIFEST, netfilter_rules=[]),
    encode(MsgType.RESULT, stats={"a": [1, 2.5, {"b": None}], "c": "d"}),
    encode(MsgType.ERROR, message="boom"),
    encode_chunk(1, 0, b"\x00" * 64),
]


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=4))
def test_frame_decoder_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    _must_be_ours(_feed_in_pieces, data, cuts)
    _must_be_ours(_feed_in_pieces, MAGIC + bytes([PROTOCOL_VERSION]) + data, cuts)


@FUZZ
@given(st.sampled_from([int(t) for t in MsgType]), st.binary(max_size=400))
def test_frame_decoder_on_well_framed_garbage(mtype: int, payload: bytes) -> None:
    _must_be_ours(FrameDecoder().feed, _frame(mtype, payload))


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data(), st.lists(st.integers(0, 10_000), max_size=3))
def test_frame_decoder_on_mutated_valid_frames(frame: bytes, data: st.DataObject, cuts: list[int]) -> None:
    msgs = _must_be_ours(_feed_in_pieces, _mutate(frame, data.draw), cuts)
    for m in msgs or []:
        if isinstance(m, Message) and m.type is MsgType.ROUND:
            _must_be_ours(Manifest.from_dict, m.body["manifest"])


BODIES: dict[MsgType, dict[str, Any]] = {
    MsgType.HELLO_OK: {"session": "s1"},
    MsgType.ROUND_OK: {"session": "s1", "round": 1, "received_bytes": 123, "rebuild_s": 0.25},
    MsgType.RESTORED: {"session": "s1", "pid": 42, "restore_s": 1.5},
    MsgType.ROUND: {"session": "s1", "manifest": VALID_MANIFEST, "netfilter_rules": []},
    MsgType.RESULT: {"stats": {"a": 1}},
    MsgType.PROGRESS: {"event": {"kind": "x"}},
}


@st.composite
def hostile_bodies(draw: Any) -> tuple[MsgType, str]:
    mtype = draw(st.sampled_from(sorted(BODIES)))
    body: Any = json.loads(json.dumps(BODIES[mtype]))
    paths = _paths(body)[1:]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = draw(json_like)
        except (KeyError, IndexError, TypeError):
            pass
    return mtype, dump(body)


@FUZZ
@given(hostile_bodies(), st.lists(st.integers(0, 100_000), max_size=3))
def test_frame_decoder_on_hostile_json_values(case: tuple[MsgType, str], cuts: list[int]) -> None:
    mtype, text = case
    msgs = _must_be_ours(_feed_in_pieces, _frame(int(mtype), text.encode("utf-8", "surrogatepass")), cuts)
    for m in msgs or []:
        assert isinstance(m, Message)
        # whatever is accepted re-encodes (no NaN, no lone surrogate, no int beyond 64 bits)
        json.dumps(m.body, allow_nan=False).encode("utf-8")
        if m.type is MsgType.ROUND:
            _must_be_ours(Manifest.from_dict, m.body["manifest"])


def test_decoded_messages_survive_the_mutation_harness() -> None:
    # the harness itself: unmutated frames decode to what was encoded
    for frame in VALID_FRAMES:
        assert len(FrameDecoder().feed(frame)) == 1


# --------------------------------------------------------------------------------- compression frames

_rng = np.random.default_rng(7)
_PAGE_DATA = np.concatenate([np.zeros(600, np.uint32), _rng.integers(0, 1 << 12, 1448, dtype=np.uint32)]).tobytes()
_SAMPLE = {
    "none": b"hello world" * 10,
    "lz4": b"abcabcabc" * 300,
    "zstd": b"0123456789" * 400,
    "zlib": b"zzzz" * 700 + b"tail",
    "wkdm": _PAGE_DATA + b"tail-bytes",
}
DATA_FRAMES = [
    (i, b"".join(encode_data_frame(i, 0, data, make_codec(name))))
    for i, (name, data) in enumerate(_SAMPLE.items())
]
LIMITS = FrameLimits(max_raw_bytes=1 << 20, max_control_bytes=1 << 16)


def _decode_any_frame(frame: bytes) -> None:
    header = decode_header(frame[:HEADER_SIZE_BYTES], LIMITS)
    payload = frame[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + header.payload_bytes]
    if header.kind is FrameKind.DATA:
        raw = decode_data(header, payload)
        assert len(raw) == header.raw_bytes and raw_digest(raw) == header.digest
    else:
        parse_control(header, payload)


def test_frame_fixtures_decode() -> None:
    for index, frame in DATA_FRAMES:
        assert decode_chunk(index, frame) == list(_SAMPLE.values())[index]


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 8))
def test_compression_frames_on_arbitrary_bytes(data: bytes, index: int) -> None:
    _must_be_ours(decode_chunk, index, data)
    _must_be_ours(decode_data_frame, data, LIMITS)
    _must_be_ours(_decode_any_frame, data)
    _must_be_ours(_decode_any_frame, b"EMC1" + data)


_FIELDS = {  # offset, struct format of each header field after the magic
    "kind": (4, "B"), "codec": (5, "B"), "level": (6, "b"), "flags": (7, "B"), "index": (8, "I"),
    "offset": (12, "Q"), "raw": (20, "I"), "payload": (24, "I"),
}


@st.composite
def mutated_data_frames(draw: Any) -> tuple[int, bytes]:
    index, frame = draw(st.sampled_from(DATA_FRAMES))
    buf = bytearray(frame)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from([*_FIELDS, "digest", "bytes", "bytes"]))
        if what in _FIELDS and len(buf) >= HEADER_SIZE_BYTES:
            off, fmt = _FIELDS[what]
            size = struct.calcsize(fmt)
            lo, hi = (-128, 127) if fmt == "b" else (0, 2 ** (8 * size) - 1)
            value = draw(st.integers(lo, hi) | st.sampled_from([lo, hi, 0, 1, 4, 2 ** (8 * size - 1) - 1]))
            value = min(max(value, lo), hi)
            struct.pack_into("<" + fmt, buf, off, value)
        elif what == "digest" and len(buf) >= HEADER_SIZE_BYTES:
            buf[28:44] = draw(st.binary(min_size=16, max_size=16))
        elif what == "bytes":
            buf = bytearray(_mutate(bytes(buf), draw))
    return index, bytes(buf)


@FUZZ
@given(mutated_data_frames())
def test_compression_frames_on_mutated_valid_frames(case: tuple[int, bytes]) -> None:
    index, frame = case
    raw = _must_be_ours(decode_chunk, index, frame)
    if raw is not None:  # accepted: it must be the chunk that was sent (BLAKE2b of the raw bytes)
        assert raw == list(_SAMPLE.values())[index]
    _must_be_ours(_decode_any_frame, frame)


@st.composite
def control_frames(draw: Any) -> bytes:
    body = draw(json_like)
    text = dump(body) if draw(st.booleans()) else dump({"n_chunks": body, "raw_bytes": 1})
    payload = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        payload = _mutate(payload, draw)
    kind = draw(st.sampled_from([FrameKind.HELLO, FrameKind.END]))
    digest = raw_digest(payload) if draw(st.integers(0, 9)) else draw(st.binary(min_size=16, max_size=16))
    return FrameHeader(kind, 0, 0, 0, 0, len(payload), len(payload), digest).encode() + payload


@FUZZ
@given(control_frames())
def test_compression_control_frames_with_hostile_json(frame: bytes) -> None:
    try:
        _decode_any_frame(frame)
    except FrameError:
        pass
