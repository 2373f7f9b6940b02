"""The source's compressed data path of one pre-copy round (Zhang et al. 2019, sec. III).

Each manifest chunk of a round travels as one protocol ``CHUNK`` message whose data is one
:mod:`~edgemigrate.engine.codecs.frames` DATA frame (44-byte header with codec, level, raw size and BLAKE2b of
the raw chunk, then the compressed payload). The codec/level is chosen per chunk by a
:class:`~.selectors.Selector` from the live :class:`~.netstate.NetworkState` (RTT and retransmissions from
``TCP_INFO`` of the data socket, bandwidth from goodput - and, while a write stays blocked, from the bytes TCP
acknowledged every 0.1 s) just before the chunk is compressed; chunks compressed ahead for a link that has
since slowed are compressed again.

:func:`send_round` is the source's data path: chunks are compressed on a thread pool (lz4, zstd, zlib and
the compiled WKdm release the GIL) while earlier chunks are written - checkpoint -> chunk -> parallel
compress -> send, with bounded lookahead (Zhang et al. 2019, sec. III-D, eqs. 5-8). ``serial`` mode is their
baseline (fig. 5a): it compresses every chunk of the round, one at a time, and only then sends them (the
compressed round is held in memory - a baseline for comparison, not for production). Compressing a chunk
"after the previous one was sent" is not serial: a write returns once the bytes are in the socket buffer,
so the next compression would overlap their delivery. The destination decodes a
frame with :func:`decode_chunk` (size and BLAKE2b checked), and the engine's manifest then checks the
SHA-256 of the raw chunk, exactly as without compression.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgemigrate.engine.adaptive.config import CompressionConfig, PipelineMode
from edgemigrate.engine.adaptive.netstate import NetworkMonitor, TcpInfo, read_tcp_info
from edgemigrate.engine.adaptive.selectors import Choice, ModelSelector, Selector
from edgemigrate.engine.codecs.frames import FrameError, FrameLimits, decode_data_frame, encode_data_frame
from edgemigrate.engine.codecs.registry import Codec
from edgemigrate.engine.manifest import MAX_CHUNK_SIZE_BYTES
from edgemigrate.engine.protocol.codec import encode_chunk_header

if TYPE_CHECKING:
    from edgemigrate.engine.manifest import RoundPlan
    from edgemigrate.engine.transport.streams import FramedConnection

SAMPLE_INTERVAL_S = 0.1  # a new network sample (TCP_INFO + goodput) at most this often
LOOKAHEAD_PER_WORKER = 2  # chunks compressed ahead of the socket, per compression thread
# Goodput measures the link only over intervals in which the sender mostly waited for it: otherwise the
# writes went into socket buffers (it would tell the model selector the link is fast and make it send raw)
# or the sender was the bottleneck. And not in the first RTTs of a round: the data connection sat idle
# while the source dumped, so TCP restarts from slow start and its early goodput is far below the link's.
# While TCP_INFO still reports slow start (cwnd < ssthresh) a link-limited interval only bounds the link
# from below: measured on a 1000 -> 20 Mbit/s change, treating it as the link's rate made the model selector
# pick zstd-9 in the fast phase.
LINK_LIMITED_FRACTION = 0.5
SLOW_START_RTTS = 12
MODEL_BASED_CC = frozenset({"bbr", "bbr2", "bbr3"})  # congestion controls whose ssthresh says nothing of slow start
# Unsent bytes the kernel may hold for the data socket (TCP_NOTSENT_LOWAT; bytes in flight do not count).
# Without a limit the send buffer autotunes to several times the window: at 1000 Mbit/s it took ~20 MB of
# compressed chunks at once, so when the link then dropped to 20 Mbit/s those left at the fast-phase codec and
# the selector saw no blocked write - hence no new sample - for seconds. With it a write blocks as soon as the
# link falls behind, and what is committed to a codec is the window plus this.
NOTSENT_LOWAT_BYTES = 512 << 10
FRAME_LIMITS = FrameLimits(max_raw_bytes=MAX_CHUNK_SIZE_BYTES)


@dataclass(slots=True)
class RoundWireStats:
    """What one round's data transfer did (source side)."""

    raw_bytes: int = 0
    wire_bytes: int = 0  # frame headers + compressed payloads (the protocol's 16-byte chunk framing excluded)
    chunks: int = 0
    compress_cpu_s: float = 0.0
    compress_wall_s: float = 0.0  # serial mode: the compress stage before anything is sent
    send_busy_s: float = 0.0  # time spent in write + drain (blocked on the link)
    transfer_s: float = 0.0
    choices: dict[str, int] = field(default_factory=dict)  # "codec-level" -> chunks
    recompressed: int = 0  # chunks compressed again, for a link that got slower while they waited to be sent
    samples: list[dict[str, float]] = field(default_factory=list)  # time line of the network state + level

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw_bytes": self.raw_bytes, "wire_bytes": self.wire_bytes, "chunks": self.chunks,
            "ratio": round(self.wire_bytes / self.raw_bytes, 4) if self.raw_bytes else 1.0,
            "compress_cpu_s": round(self.compress_cpu_s, 4), "compress_wall_s": round(self.compress_wall_s, 4),
            "send_busy_s": round(self.send_busy_s, 4),
            "transfer_s": round(self.transfer_s, 4), "choices": dict(self.choices),
            "recompressed": self.recompressed, "samples": self.samples,
        }


@dataclass(slots=True)
class _Pending:
    """A chunk compressed (or being compressed) ahead of the socket."""

    index: int
    offset: int
    raw_n: int
    file: str
    data: memoryview | bytes
    choice: Choice
    key: str  # "codec-level" actually used (a page codec may override the choice)
    fut: asyncio.Future[tuple[bytes, bytes, float]]


def _compress(index: int, offset: int, data: memoryview | bytes, codec: Codec,
              clock: Callable[[], float]) -> tuple[bytes, bytes, float]:
    t0 = clock()
    header, payload = encode_data_frame(index, offset, data, codec)
    return header, payload, clock() - t0


def _congestion_control(sock: socket.socket) -> str:
    """The socket's congestion control (``TCP_CONGESTION``), e.g. ``cubic`` or ``bbr``; ``""`` if unknown."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0", 1)[0].decode()
    except OSError:
        return ""


def _limit_unsent(sock: Any, n_bytes: int) -> None:
    """Writes to ``sock`` block once ``n_bytes`` are waiting unsent in the kernel (``TCP_NOTSENT_LOWAT``)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), n_bytes)
    except OSError:  # not Linux / macOS: the send buffer alone limits what is committed
        pass


def _data_socket(conn: FramedConnection) -> Any:
    sock = conn.writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


def is_link_limited(busy_s: float, interval_s: float, past_ramp: bool, info: TcpInfo | None,
                    model_cc: bool) -> bool:
    """Did the link, rather than the sender or TCP's own ramp, limit what was sent in this interval?

    Yes when the sender was blocked writing for at least :data:`LINK_LIMITED_FRACTION` of the interval, TCP
    has had :data:`SLOW_START_RTTS` round trips to ramp up, and TCP_INFO does not report slow start - which a
    loss-based congestion control signals with cwnd < ssthresh, while BBR (``model_cc``) leaves ssthresh at
    "infinite" for the whole connection. Otherwise what the interval carried only bounds the link from below.
    """
    if busy_s < LINK_LIMITED_FRACTION * interval_s or not past_ramp:
        return False
    return not (info is not None and info.in_slow_start and not model_cc)


class _RoundSender:
    """One round's send: compress chunks ahead on the pool, write them in order, sample the link meanwhile.

    Sampling works on intervals of at least :data:`SAMPLE_INTERVAL_S`: ``iv_bytes`` written and ``iv_busy``
    seconds blocked writing since ``last_sample``; ``acked_at_sample`` is TCP_INFO's ``bytes_acked`` then.
    """

    def __init__(self, round_index: int, conn: FramedConnection, cfg: CompressionConfig, selector: Selector,
                 monitor: NetworkMonitor, pool: Executor, timeout_s: float, t_origin: float | None,
                 clock: Callable[[], float]) -> None:
        self.round_index, self.conn, self.selector, self.monitor = round_index, conn, selector, monitor
        self.pool, self.timeout_s, self.clock = pool, timeout_s, clock
        self.loop = asyncio.get_running_loop()
        self.policy = cfg.policy()
        self.serial = cfg.mode is PipelineMode.SERIAL
        self.depth = LOOKAHEAD_PER_WORKER * cfg.n_workers
        self.sock = _data_socket(conn)
        if self.sock is not None:
            _limit_unsent(self.sock, NOTSENT_LOWAT_BYTES)
        # cwnd < ssthresh means slow start only for loss-based congestion control; BBR leaves ssthresh at
        # "infinite" for the whole connection, so there the ramp is only the first SLOW_START_RTTS RTTs
        self.model_cc = self.sock is not None and _congestion_control(self.sock) in MODEL_BASED_CC
        self.stats = RoundWireStats()
        self.inflight: deque[_Pending] = deque()
        self.t0 = clock()
        self.origin = self.t0 if t_origin is None else t_origin
        self.last_sample = self.t0
        self.iv_bytes, self.iv_busy = 0, 0.0
        self.acked_at_sample: int | None = None
        # TCP's ramp is timed from the round's first write, not its start: the first chunk's compression (and
        # the model's profiling) can take longer than SLOW_START_RTTS RTTs, and the window-limited first samples
        # then counted as the link's rate - a 1000 Mbit/s link read as 1.6 MB/s made the model pick zstd-9
        self.t_first_write: float | None = None

    async def run(self, plan: RoundPlan, corrupt_first: bool) -> RoundWireStats:
        try:
            for spec, view in plan.iter_chunks():
                data: memoryview | bytes = view
                if corrupt_first:
                    data = bytes([view[0] ^ 0xFF]) + bytes(view[1:])
                    corrupt_first = False
                choice = self.selector.choose(self.monitor.state)
                pending = _Pending(spec.index, spec.offset, spec.size_bytes, spec.file, data, choice, "", None)  # type: ignore[arg-type]
                self._submit(pending)
                self.inflight.append(pending)
                if self.serial:  # stage 1 of fig. 5a: compress everything (one chunk at a time) before sending
                    _header, payload, comp_s = await pending.fut
                    self.selector.observe(choice, spec.size_bytes, len(payload), comp_s)
                    self.stats.compress_wall_s += comp_s
                    continue
                while len(self.inflight) >= self.depth:
                    await self._send_next()
            while self.inflight:  # serial: stage 2, send everything
                await self._send_next()
        finally:
            for p in self.inflight:  # a failed send: let queued compressions finish, drop their results
                p.fut.cancel()
        self.stats.transfer_s = self.clock() - self.t0
        return self.stats

    # ---------------------------------------------------------------------------------------- compression

    def _submit(self, p: _Pending) -> None:
        codec = self.policy.codec_for(p.file, p.choice)
        p.key = f"{codec.name}-{codec.level}"
        p.fut = self.loop.run_in_executor(self.pool, _compress, p.index, p.offset, p.data, codec, self.clock)

    def _rechoose_lookahead(self) -> None:
        """After a new sample: chunks compressed ahead for a link that has since become slower are compressed
        again with what the model now prefers. On a 1000 -> 20 Mbit/s change the 4 lz4-1 chunks compressed ahead
        held ~0.7 s of the slow link (Redis pages: 2.37x); as zstd-9 (3.68x) they take ~0.45 s."""
        state, selector = self.monitor.state, self.selector
        if self.serial or not isinstance(selector, ModelSelector) or not self.inflight \
                or not state.bandwidth_bytes_per_s:
            return  # (without a measured bandwidth nothing is worth compressing again)
        best = selector.preferred(state)
        for p in self.inflight:
            if p.choice != best and selector.worth_recompressing(p.choice, best, state):
                new = self.policy.codec_for(p.file, best)
                if f"{new.name}-{new.level}" == p.key:  # e.g. a page image under --page-codec: nothing to redo
                    continue
                p.fut.cancel()  # not started: dropped from the pool's queue; running: its result is ignored
                p.choice = best
                self._submit(p)
                self.stats.recompressed += 1

    # -------------------------------------------------------------------------------------------- sending

    async def _send_next(self) -> None:
        """Write the oldest chunk of the lookahead, then account for it and sample the link if it is time."""
        p = self.inflight.popleft()
        header, payload, comp_s = await p.fut
        if not self.serial:  # serial mode observed every chunk when it compressed it
            self.selector.observe(p.choice, p.raw_n, len(payload), comp_s)
        frame_n = len(header) + len(payload)
        ts = self.clock()
        if self.t_first_write is None:
            self.t_first_write = self.last_sample = ts
            info0 = self._tcp_info()
            self.acked_at_sample = info0.bytes_acked if info0 is not None else None
        self.conn.writer.write(encode_chunk_header(self.round_index, p.index, frame_n) + header)
        sampled = await self._write_sampling(payload, p.choice, ts)
        now = self.clock()
        self._account(p, frame_n, comp_s, now - ts)
        if sampled:
            # the blocked part of this write was measured by the samples taken during it: the next interval
            # starts now (what the write sent after the last sample is not attributed to any interval)
            self._start_interval(now)
            return
        self.iv_bytes += frame_n
        self.iv_busy += now - ts
        if now - self.last_sample >= SAMPLE_INTERVAL_S:
            self._sample_after_write(now, p.choice)

    def _account(self, p: _Pending, frame_n: int, comp_s: float, busy_s: float) -> None:
        st = self.stats
        st.raw_bytes += p.raw_n
        st.wire_bytes += frame_n
        st.chunks += 1
        st.compress_cpu_s += comp_s
        st.send_busy_s += busy_s
        st.choices[p.key] = st.choices.get(p.key, 0) + 1

    async def _write_sampling(self, payload: bytes, choice: Choice, ts: float) -> bool:
        """Write ``payload``; while the write stays blocked, sample the link every SAMPLE_INTERVAL_S from the
        bytes it acknowledged (``TCP_INFO`` ``bytes_acked``). Returns whether such a sample was taken.

        Without these samples a link that slowed down was noticed only when a write completed - measured on a
        1000 -> 20 Mbit/s change, 0.4-0.9 s later, all of it spent sending chunks compressed for the old link.
        ``ts``: when this chunk's write began.
        """
        task = asyncio.ensure_future(asyncio.wait_for(self.conn.write(payload), self.timeout_s))
        sampled = False
        try:
            while True:
                wait_s = max(0.005, self.last_sample + SAMPLE_INTERVAL_S - self.clock())
                done, _ = await asyncio.wait({task}, timeout=wait_s)
                if done:
                    break
                sampled = self._sample_blocked_write(self.clock(), ts, choice) or sampled
        finally:
            if not task.done():
                task.cancel()
        task.result()
        return sampled

    # ------------------------------------------------------------------------------------------- sampling

    def _sample_blocked_write(self, now: float, ts: float, choice: Choice) -> bool:
        """A sample while a write (begun at ``ts``) is blocked, from what TCP got acknowledged meanwhile; returns
        whether one was taken (not before SAMPLE_INTERVAL_S, nor without TCP_INFO)."""
        if now - self.last_sample < SAMPLE_INTERVAL_S:
            return False
        info = self._tcp_info()
        if info is None or self.acked_at_sample is None:
            return False
        interval_s = now - self.last_sample
        # blocked for most of the interval since the last sample: what TCP got acknowledged meanwhile is what
        # the link carried (otherwise, as for completed writes, only a lower bound of it)
        link_limited = is_link_limited(self.iv_busy + (now - ts), interval_s, self._past_ramp(now, info), info,
                                       self.model_cc)
        acked = info.bytes_acked - self.acked_at_sample
        if link_limited and acked > 0:
            self.monitor.observe_send(acked, interval_s)
        elif acked > 0:  # TCP's ramp or a partly idle sender: the link carried at least this much
            self.monitor.observe_floor(acked, interval_s)
        self._start_interval(now)
        self._take_sample(now, info, link_limited, choice)
        return True

    def _sample_after_write(self, now: float, choice: Choice) -> None:
        """A sample at the end of an interval of completed writes, from the bytes written in it."""
        info = self._tcp_info()
        interval_s = now - self.last_sample
        past_ramp = self._past_ramp(now, info)
        link_limited = is_link_limited(self.iv_busy, interval_s, past_ramp, info, self.model_cc)
        if link_limited:
            self.monitor.observe_send(self.iv_bytes, interval_s)
        elif past_ramp:
            # TCP's window or the sender (CPU-bound, or partly) more than the link was the bottleneck: the link
            # is at least this fast. Mixed intervals count too: measured at 1000 Mbit/s, an estimate taken in the
            # last RTTs of the ramp (35 MB/s) stood for the whole fast phase because the sender was blocked
            # 10-50 % of each interval, and the model kept zstd-3 where zstd-1 sends more.
            self.monitor.observe_floor(self.iv_bytes, interval_s)
        elif info is not None and self.acked_at_sample is not None:
            # TCP is still ramping up: not the link's rate, but the link carried at least what it got
            # acknowledged (not what was written: that can sit in socket buffers), and the model's cold
            # start then hedges only over links at least that fast
            self.monitor.observe_floor(info.bytes_acked - self.acked_at_sample, interval_s)
        self._start_interval(now)
        self._take_sample(now, info, link_limited, choice)

    def _start_interval(self, now: float) -> None:
        self.iv_bytes, self.iv_busy = 0, 0.0
        self.last_sample = now

    def _take_sample(self, now: float, info: TcpInfo | None, link_limited: bool, choice: Choice) -> None:
        """Publish a new network state to the selector, record it, and revisit the lookahead."""
        if info is not None:
            self.acked_at_sample = info.bytes_acked
        st = self.monitor.sample(info, link_limited=link_limited)
        self.stats.samples.append({
            "t_s": round(now - self.origin, 4), "rtt_s": st.rtt_s or 0.0, "loss": round(st.loss_rate, 4),
            "bandwidth_bytes_per_s": round(st.bandwidth_bytes_per_s or 0.0, 1),
            "codec": choice.codec, "level": choice.level,
            # what limited TCP (cumulative ms): the peer's receive window or our send buffer; and the window
            **({"cwnd": info.snd_cwnd, "slow_start": info.in_slow_start, "snd_wnd": info.snd_wnd,
                "rwnd_limited_ms": info.rwnd_limited_us // 1000, "sndbuf_limited_ms": info.sndbuf_limited_us // 1000,
                "busy_ms": info.busy_us // 1000} if info is not None else {}),
        })
        self._rechoose_lookahead()

    def _tcp_info(self) -> TcpInfo | None:
        if self.sock is None:
            return None
        try:
            return read_tcp_info(self.sock)
        except OSError:
            return None

    def _past_ramp(self, now: float, info: TcpInfo | None) -> bool:
        """TCP has had SLOW_START_RTTS round trips to ramp up since the round's first write. The path's
        propagation RTT (``min_rtt``) times them, not the smoothed RTT: that one grows with the queue the ramp
        itself builds (20 -> 37 ms on a 20 ms link at 1000 Mbit/s), which kept 0.36 s of a 0.5 s fast phase
        unmeasured."""
        if info is not None and info.min_rtt_us > 0:
            rtt_s = info.min_rtt_us / 1e6
        elif info is not None and info.rtt_us > 0:
            rtt_s = info.rtt_us / 1e6
        else:
            rtt_s = self.monitor.state.rtt_s or 0.0
        first = now if self.t_first_write is None else self.t_first_write  # (a clock may read 0.0 at the first write)
        return now - first >= SLOW_START_RTTS * rtt_s


async def send_round(plan: RoundPlan, round_index: int, conn: FramedConnection, cfg: CompressionConfig,
                     selector: Selector, monitor: NetworkMonitor, pool: Executor, timeout_s: float,
                     corrupt_first: bool = False, t_origin: float | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> RoundWireStats:
    """Compress and send every chunk of ``plan`` on ``conn`` (see the module doc); returns its statistics.

    ``corrupt_first`` (fault injection) flips a bit of the first raw chunk *before* compression, so the
    destination's SHA-256 check - not the frame's own hash - must catch it.
    ``clock`` times everything the round measures: sample intervals, blocked writes (hence the bandwidth the
    selector sees), compressions (hence the model's CPU factor) and ``t_origin``. It must tick at the rate of
    the event loop's own clock, whose timers pace the sampling; tests pass the virtual clock of a virtual-time
    loop, so what the selector learns depends on the emulated link and not on how busy the machine is.
    """
    sender = _RoundSender(round_index, conn, cfg, selector, monitor, pool, timeout_s, t_origin, clock)
    return await sender.run(plan, corrupt_first)


def decode_chunk(index: int, frame: bytes | memoryview) -> bytes:
    """Destination: validate and decompress one chunk's DATA frame; raises ``FrameError`` on any mismatch."""
    header, raw = decode_data_frame(frame, FRAME_LIMITS)
    if header.index != index:
        raise FrameError(f"chunk {index}: its frame says chunk {header.index}")
    return raw
