"""The compressed chunk pipeline: read -> compress (thread pool) -> send | receive -> decompress -> write.

Seed 001 (sec. IV, fig. 5) overlaps checkpointing, compression, transfer and restore, and reports the
pipelined migration 46.1 % faster than running the stages one after another. Here both ends run
either way (:class:`PipelineMode`):

* ``PIPELINED``: a reader thread pulls chunks from the source (the checkpoint/read stage), asks the
  selector for the chunk's codec and level *at that moment*, and submits the compression to a thread
  pool (lz4, zstd, zlib and hashlib release the GIL; WKdm is NumPy); the sending thread writes the
  finished frames in order. Bounded queues give back-pressure, so at most ``queue_depth + workers``
  chunks are in memory. The receiver mirrors it: the reading thread validates each header and submits
  decompression + hash check to a pool; a writer thread hands raw chunks to the sink in order.
* ``SERIAL``: each stage finishes for all chunks before the next starts (compression still uses all
  workers), as the seed's baseline (fig. 5a). The receiver follows the mode announced in HELLO.

Every stage records its busy time and its first-start/last-end span, so overlap is visible. The sending
thread samples the network (``TCP_INFO`` + send-blocked goodput) every ``sample_interval_s`` and publishes
the :class:`~edgemigrate.engine.compression.netstate.NetworkState` the selector sees next.

The transport is any :class:`~edgemigrate.engine.compression.transport.ByteLink`; the sink anything with
``accept_chunk(index, data)`` (a :class:`~edgemigrate.engine.compression.directory.DirectorySink`, or the
engine's ``RoundReceiver``).
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgemigrate.core.errors import ValidationError
from edgemigrate.engine.compression.frames import (
    HEADER_SIZE_BYTES,
    FrameError,
    FrameHeader,
    FrameKind,
    FrameLimits,
    control_frame,
    decode_data,
    decode_header,
    encode_data_frame,
    parse_control,
)
from edgemigrate.engine.compression.images import ImageCodecPolicy
from edgemigrate.engine.compression.netstate import NetworkMonitor, NetworkState
from edgemigrate.engine.compression.selectors import Choice, Selector
from edgemigrate.engine.compression.transport import ByteLink

PROTOCOL_VERSION = 1


class PipelineMode(enum.Enum):
    PIPELINED = "pipelined"
    SERIAL = "serial"


class ChunkLike(Protocol):
    """What the pipeline needs to know about a chunk (``ChunkRef`` and the engine's ``ChunkSpec`` fit)."""

    @property
    def index(self) -> int: ...

    @property
    def file(self) -> str: ...

    @property
    def offset(self) -> int: ...


class ChunkSink(Protocol):
    def accept_chunk(self, index: int, data: bytes | memoryview) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """``workers``: compression (or decompression) threads; ``queue_depth``: frames buffered between stages;
    ``sample_interval_s``: how often the sender measures the network."""

    mode: PipelineMode = PipelineMode.PIPELINED
    workers: int = 2
    queue_depth: int = 4
    sample_interval_s: float = 0.1
    policy: ImageCodecPolicy = field(default_factory=ImageCodecPolicy)
    limits: FrameLimits = field(default_factory=FrameLimits)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue_depth < 1:
            raise ValidationError(
                f"pipeline: workers and queue_depth must be >= 1, got {self.workers}, {self.queue_depth}"
            )
        if self.sample_interval_s <= 0:
            raise ValidationError(f"pipeline: sample_interval_s must be > 0, got {self.sample_interval_s}")


@dataclass(frozen=True, slots=True)
class StageTiming:
    """Busy seconds of a stage (summed over its threads) and its span relative to the transfer start."""

    name: str
    busy_s: float
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    index: int
    file: str
    codec: str
    level: int
    raw_bytes: int
    payload_bytes: int
    compress_s: float


@dataclass(frozen=True, slots=True)
class SendReport:
    mode: PipelineMode
    selector: str
    raw_bytes: int
    wire_bytes: int  # frame headers + payloads + HELLO/END
    total_s: float
    stages: tuple[StageTiming, ...]
    chunks: tuple[ChunkRecord, ...]
    states: tuple[NetworkState, ...]

    @property
    def ratio(self) -> float:
        return self.wire_bytes / self.raw_bytes if self.raw_bytes else 1.0


@dataclass(frozen=True, slots=True)
class ReceiveReport:
    mode: PipelineMode
    n_chunks: int
    raw_bytes: int
    wire_bytes: int
    total_s: float
    stages: tuple[StageTiming, ...]
    hello: dict[str, Any]


class _Stage:
    """Thread-safe accumulator of one stage's busy time and span."""

    def __init__(self, name: str, t0: float) -> None:
        self.name, self._t0 = name, t0
        self.busy = 0.0
        self.first: float | None = None
        self.last = 0.0
        self._lock = threading.Lock()

    def add(self, start: float, end: float) -> None:
        with self._lock:
            self.busy += end - start
            self.first = start if self.first is None else min(self.first, start)
            self.last = max(self.last, end)

    def timing(self) -> StageTiming:
        first = self._t0 if self.first is None else self.first
        return StageTiming(self.name, self.busy, first - self._t0, max(self.last, first) - self._t0)


_DONE = object()


class _Aborted(Exception):
    pass


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Aborted
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


# ------------------------------------------------------------------------------------------------ sender


class _Sender:
    def __init__(self, link: ByteLink, selector: Selector, config: PipelineConfig) -> None:
        self.link, self.selector, self.config = link, selector, config
        self.t0 = time.perf_counter()
        self.stages = {n: _Stage(n, self.t0) for n in ("read", "compress", "send")}
        self.monitor = NetworkMonitor()
        self.state = self.monitor.state
        self.states: list[NetworkState] = []
        self.records: list[ChunkRecord] = []
        self.sel_lock = threading.Lock()
        self.last_sample = self.t0
        self.raw_bytes = 0
        self.wire_bytes = 0

    def choose(self) -> Choice:
        with self.sel_lock:
            return self.selector.choose(self.state)

    def compress(
        self, ref: ChunkLike, data: bytes | memoryview, choice: Choice
    ) -> tuple[bytes, bytes, ChunkRecord, Choice]:
        codec = self.config.policy.codec_for(ref.file, choice)
        t1 = time.perf_counter()
        header, payload = encode_data_frame(ref.index, ref.offset, data, codec)
        t2 = time.perf_counter()
        self.stages["compress"].add(t1, t2)
        rec = ChunkRecord(ref.index, ref.file, codec.name, codec.level, len(data), len(payload), t2 - t1)
        return header, payload, rec, choice

    def send(self, parts: list[bytes]) -> None:
        t1 = time.perf_counter()
        busy = self.link.send_parts(parts)
        t2 = time.perf_counter()
        self.stages["send"].add(t1, t2)
        n = sum(len(p) for p in parts)
        self.wire_bytes += n
        self.monitor.observe_send(n, busy)
        if t2 - self.last_sample >= self.config.sample_interval_s:
            self.last_sample = t2
            self.state = self.monitor.sample(self.link.tcp_info())
            self.states.append(self.state)

    def send_chunk(self, result: tuple[bytes, bytes, ChunkRecord, Choice]) -> None:
        header, payload, rec, choice = result
        self.send([header, payload])
        self.records.append(rec)
        self.raw_bytes += rec.raw_bytes
        if rec.codec == choice.codec and rec.level == choice.level:
            with self.sel_lock:
                self.selector.observe(choice, rec.raw_bytes, rec.payload_bytes, rec.compress_s)

    def timed_items(
        self, source: Iterable[tuple[ChunkLike, bytes | memoryview]]
    ) -> Iterable[tuple[ChunkLike, bytes | memoryview]]:
        it = iter(source)
        while True:
            t1 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.stages["read"].add(t1, time.perf_counter())
            yield item

    def report(self) -> SendReport:
        return SendReport(
            self.config.mode,
            self.selector.name,
            self.raw_bytes,
            self.wire_bytes,
            time.perf_counter() - self.t0,
            tuple(s.timing() for s in self.stages.values()),
            tuple(self.records),
            tuple(self.states),
        )


def send_chunks(
    source: Iterable[tuple[ChunkLike, bytes | memoryview]],
    link: ByteLink,
    selector: Selector,
    config: PipelineConfig | None = None,
    hello: dict[str, Any] | None = None,
) -> SendReport:
    """Compress and send every chunk of ``source``; ``hello`` adds keys to the HELLO frame (e.g. a catalog).

    Does not close ``link``. Raises whatever a stage raised (the other stages are stopped first).
    """
    cfg = config or PipelineConfig()
    s = _Sender(link, selector, cfg)
    s.send(
        list(control_frame(FrameKind.HELLO, {**(hello or {}), "v": PROTOCOL_VERSION, "mode": cfg.mode.value}))
    )
    with ThreadPoolExecutor(cfg.workers, thread_name_prefix="compress") as pool:
        if cfg.mode is PipelineMode.SERIAL:
            items = list(s.timed_items(source))
            futures = [pool.submit(s.compress, ref, data, s.choose()) for ref, data in items]
            results = [f.result() for f in futures]
            del items, futures
            for r in results:
                s.send_chunk(r)
        else:
            _send_pipelined(s, source, pool)
    n = len(s.records)
    s.send(list(control_frame(FrameKind.END, {"n_chunks": n, "raw_bytes": s.raw_bytes})))
    return s.report()


def _send_pipelined(
    s: _Sender, source: Iterable[tuple[ChunkLike, bytes | memoryview]], pool: ThreadPoolExecutor
) -> None:
    q: queue.Queue[Any] = queue.Queue(maxsize=s.config.queue_depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for ref, data in s.timed_items(source):
                _put(q, pool.submit(s.compress, ref, data, s.choose()), stop)
            _put(q, _DONE, stop)
        except _Aborted:
            pass
        except BaseException as exc:  # handed to the sending thread, re-raised there
            failure.append(exc)
            try:
                _put(q, _DONE, stop)
            except _Aborted:
                pass

    th = threading.Thread(target=reader, name="pipeline-read", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            fut: Future[tuple[bytes, bytes, ChunkRecord, Choice]] = item
            s.send_chunk(fut.result())
    finally:
        stop.set()
        th.join()
    if failure:
        raise failure[0]


# ---------------------------------------------------------------------------------------------- receiver


def read_frame(link: ByteLink, limits: FrameLimits) -> tuple[FrameHeader, bytes] | None:
    """One validated frame header and its payload, or ``None`` on a clean end of stream."""
    raw = link.recv_exact(HEADER_SIZE_BYTES)
    if raw is None:
        return None
    header = decode_header(raw, limits)
    payload = link.recv_exact(header.payload_bytes) if header.payload_bytes else b""
    if payload is None:
        raise FrameError(f"frame {header.index}: stream ended before its payload")
    return header, payload


def receive_chunks(
    link: ByteLink, sink_factory: Callable[[dict[str, Any]], ChunkSink], config: PipelineConfig | None = None
) -> ReceiveReport:
    """Receive one chunk stream: HELLO, DATA..., END. ``sink_factory(hello)`` builds the sink.

    The mode is the one the sender announced. Raises :class:`FrameError` on any malformed, oversized,
    corrupt or missing frame; the sink's own errors propagate unchanged.
    """
    cfg = config or PipelineConfig()
    t0 = time.perf_counter()
    stages = {n: _Stage(n, t0) for n in ("receive", "decompress", "write")}
    first = read_frame(link, cfg.limits)
    if first is None or first[0].kind is not FrameKind.HELLO:
        raise FrameError("chunk stream: expected a HELLO frame first")
    hello = parse_control(*first)
    if hello.get("v") != PROTOCOL_VERSION:
        raise FrameError(f"HELLO: protocol version {hello.get('v')!r}, expected {PROTOCOL_VERSION}")
    try:
        mode = PipelineMode(hello.get("mode"))
    except ValueError:
        raise FrameError(f"HELLO: unknown mode {hello.get('mode')!r}") from None
    sink = sink_factory(hello)
    wire = [HEADER_SIZE_BYTES + first[0].payload_bytes]
    counts = {"chunks": 0, "raw": 0}

    def frames() -> Iterable[tuple[FrameHeader, bytes]]:
        while True:
            t1 = time.perf_counter()
            fr = read_frame(link, cfg.limits)
            stages["receive"].add(t1, time.perf_counter())
            if fr is None:
                raise FrameError("chunk stream: ended before the END frame")
            wire[0] += HEADER_SIZE_BYTES + fr[0].payload_bytes
            if fr[0].kind is FrameKind.END:
                end = parse_control(*fr)
                if end.get("n_chunks") != counts["chunks"] or end.get("raw_bytes") != counts["raw"]:
                    raise FrameError(
                        f"END: sender sent {end.get('n_chunks')} chunks / {end.get('raw_bytes')} bytes,"
                        f" received {counts['chunks']} / {counts['raw']}"
                    )
                return
            if fr[0].kind is not FrameKind.DATA:
                raise FrameError(f"chunk stream: unexpected {fr[0].kind.name} frame")
            counts["chunks"] += 1
            counts["raw"] += fr[0].raw_bytes
            yield fr

    def decode(header: FrameHeader, payload: bytes) -> tuple[int, bytes]:
        t1 = time.perf_counter()
        raw = decode_data(header, payload)
        stages["decompress"].add(t1, time.perf_counter())
        return header.index, raw

    def write(index: int, raw: bytes) -> None:
        t1 = time.perf_counter()
        sink.accept_chunk(index, raw)
        stages["write"].add(t1, time.perf_counter())

    with ThreadPoolExecutor(cfg.workers, thread_name_prefix="decompress") as pool:
        if mode is PipelineMode.SERIAL:
            got = list(frames())
            decoded = [f.result() for f in [pool.submit(decode, h, p) for h, p in got]]
            del got
            for index, raw in decoded:
                write(index, raw)
        else:
            _receive_pipelined(frames(), pool, decode, write, cfg.queue_depth)
    return ReceiveReport(
        mode,
        counts["chunks"],
        counts["raw"],
        wire[0],
        time.perf_counter() - t0,
        tuple(s.timing() for s in stages.values()),
        hello,
    )


def _receive_pipelined(
    frames: Iterable[tuple[FrameHeader, bytes]],
    pool: ThreadPoolExecutor,
    decode: Callable[[FrameHeader, bytes], tuple[int, bytes]],
    write: Callable[[int, bytes], None],
    depth: int,
) -> None:
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                write(*item.result())
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    th = threading.Thread(target=writer, name="pipeline-write", daemon=True)
    th.start()
    finished = False
    try:
        for header, payload in frames:
            _put(q, pool.submit(decode, header, payload), stop)
        _put(q, _DONE, stop)
        finished = True
    except _Aborted:
        finished = True  # the writer failed; its error is raised below
    finally:
        if not finished:  # the reading side failed: stop the writer without waiting for queued chunks
            stop.set()
            while th.is_alive():
                try:
                    while True:
                        q.get_nowait()
                except queue.Empty:
                    pass
                try:
                    q.put_nowait(_DONE)
                except queue.Full:
                    pass
                th.join(0.05)
        th.join()
    if failure:
        raise failure[0]
