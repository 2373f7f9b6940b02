"""Network state for the adaptive selectors: RTT and loss from ``TCP_INFO``, bandwidth from goodput.

Zhang et al. 2019 (eq. 1) judge the network by ``State(RTT, packetLoss)``; the model-based selector also needs
the current bandwidth. All three come from the live transfer socket:

* :func:`read_tcp_info` calls ``getsockopt(IPPROTO_TCP, TCP_INFO)`` and :func:`parse_tcp_info` decodes
  ``struct tcp_info`` of ``linux/tcp.h`` with :mod:`struct`. Offsets (bytes, native little-endian on
  x86-64/arm64; the struct has no padding because every field is naturally aligned)::

      0  u8  tcpi_state              7  u8 bit 0: tcpi_delivery_rate_app_limited
      8  u32 tcpi_rto (us)          16  u32 tcpi_snd_mss          24 u32 tcpi_unacked
     32  u32 tcpi_lost              36  u32 tcpi_retrans          68 u32 tcpi_rtt (us, smoothed)
     72  u32 tcpi_rttvar (us)       76  u32 tcpi_snd_ssthresh     80  u32 tcpi_snd_cwnd (segments)
    100  u32 tcpi_total_retrans    104  u64 tcpi_pacing_rate (B/s)  120 u64 tcpi_bytes_acked
    136  u32 tcpi_segs_out         140  u32 tcpi_segs_in          148 u32 tcpi_min_rtt (us)
    160  u64 tcpi_delivery_rate (B/s)  168 u64 tcpi_busy_time (us)  176 u64 tcpi_rwnd_limited (us)
    184  u64 tcpi_sndbuf_limited (us)  200 u64 tcpi_bytes_sent     208 u64 tcpi_bytes_retrans
    228  u32 tcpi_snd_wnd (bytes, the peer's advertised window)

  Fields after offset 104 appeared in later kernels (4.1-4.19); if the kernel returns a shorter struct
  they read as 0.
* :class:`NetworkMonitor` turns successive samples into a :class:`NetworkState`: the RTT ratio to the
  previous sample (Zhang et al. 2019, sec. III-C: thresholds are "85 % and 105 % of the previous RTT"), the loss
  rate over the interval (retransmitted / sent segments), and an EWMA of the bandwidth - except that a measured
  sample below half or above twice the estimate replaces it: a link that changed must be followed at once, not
  over 5-10 samples.
* Bandwidth: bytes sent divided by the time the sender spent *inside* send calls (blocked on the link),
  not by wall time, so a CPU-bound compressor does not make the link look slow - which would push the
  model selector towards even heavier compression. The kernel's delivery rate (when not
  application-limited, and only in intervals the caller found link-limited: see ``sample()``) is a second
  estimate; the smaller of the two is used, because each can only err high: the send-time estimate when
  the socket buffer absorbs a burst, the kernel's when the rate is limited above TCP (a user-space pacer,
  a slow receiver).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TCP_INFO_MIN_BYTES = 104
TCP_INFO_READ_BYTES = 232
_FIELDS: dict[str, tuple[int, str]] = {
    "state": (0, "B"),
    "app_limited_byte": (7, "B"),
    "rto_us": (8, "I"),
    "snd_mss": (16, "I"),
    "unacked": (24, "I"),
    "lost": (32, "I"),
    "retrans": (36, "I"),
    "rtt_us": (68, "I"),
    "rttvar_us": (72, "I"),
    "snd_ssthresh": (76, "I"),
    "snd_cwnd": (80, "I"),
    "total_retrans": (100, "I"),
    "pacing_rate_bytes_per_s": (104, "Q"),
    "bytes_acked": (120, "Q"),
    "segs_out": (136, "I"),
    "segs_in": (140, "I"),
    "min_rtt_us": (148, "I"),
    "delivery_rate_bytes_per_s": (160, "Q"),
    "busy_us": (168, "Q"),
    "rwnd_limited_us": (176, "Q"),
    "sndbuf_limited_us": (184, "Q"),
    "bytes_sent": (200, "Q"),
    "bytes_retrans": (208, "Q"),
    "snd_wnd": (228, "I"),
}
TCP_ESTABLISHED = 1
DROP_FRACTION = 0.5  # a link-limited goodput sample below this share of the estimate replaces it (see sample())
RISE_FACTOR = 2.0  # ... and so does one above this multiple of it


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The ``struct tcp_info`` fields the selectors use (see the module doc for offsets)."""

    state: int
    delivery_rate_app_limited: bool
    rto_us: int
    snd_mss: int
    unacked: int
    lost: int
    retrans: int
    rtt_us: int
    rttvar_us: int
    snd_ssthresh: int  # 0x7fffffff (TCP_INFINITE_SSTHRESH) until the first loss or HyStart exit
    snd_cwnd: int
    total_retrans: int
    pacing_rate_bytes_per_s: int
    bytes_acked: int
    segs_out: int
    segs_in: int
    min_rtt_us: int
    delivery_rate_bytes_per_s: int
    busy_us: int  # time with data in flight, of which the peer's receive window / our send buffer limited:
    rwnd_limited_us: int
    sndbuf_limited_us: int
    bytes_sent: int
    bytes_retrans: int
    snd_wnd: int

    @property
    def in_slow_start(self) -> bool:
        """The congestion window is still growing exponentially: goodput is bounded by the window, not the link."""
        return 0 < self.snd_cwnd < self.snd_ssthresh


def parse_tcp_info(raw: bytes) -> TcpInfo:
    """Decode a ``TCP_INFO`` buffer; fields past its end (older kernels) are 0."""
    if len(raw) < TCP_INFO_MIN_BYTES:
        raise ValueError(f"TCP_INFO buffer of {len(raw)} bytes is shorter than {TCP_INFO_MIN_BYTES}")
    vals: dict[str, int] = {}
    for name, (off, fmt) in _FIELDS.items():
        size = struct.calcsize(fmt)
        vals[name] = struct.unpack_from("<" + fmt, raw, off)[0] if off + size <= len(raw) else 0
    app_limited = bool(vals.pop("app_limited_byte") & 1)
    return TcpInfo(delivery_rate_app_limited=app_limited, **vals)


def read_tcp_info(sock: socket.socket) -> TcpInfo:
    """``TCP_INFO`` of a connected TCP socket."""
    return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_READ_BYTES))


class Ewma:
    """Exponentially weighted moving average; ``value`` is ``None`` until the first update."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EWMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.alpha * x + (1.0 - self.alpha) * self.value
        return self.value


@dataclass(frozen=True, slots=True)
class NetworkState:
    """What the selectors see. ``sample_id`` grows by one per new measurement (0: nothing measured yet)."""

    sample_id: int
    rtt_s: float | None
    rtt_ratio: float  # this RTT / previous RTT (1.0 until two RTT samples exist)
    loss_rate: float  # retransmitted / sent segments in the last interval, 0..1
    bandwidth_bytes_per_s: float | None  # EWMA of the link's goodput; None until measured
    # While no bandwidth is measured: the link is at least this fast (the highest goodput of an interval it did
    # not limit - TCP's ramp, a CPU-bound sender). None once a bandwidth is measured, or before any bound.
    bandwidth_floor_bytes_per_s: float | None = None


INITIAL_STATE = NetworkState(0, None, 1.0, 0.0, None)


class NetworkMonitor:
    """Accumulates send-side observations and ``TCP_INFO`` samples into :class:`NetworkState`.

    Not thread-safe: owned by the sending thread, which publishes the resulting immutable states.
    """

    def __init__(self, bandwidth_alpha: float = 0.3) -> None:
        self._bw = Ewma(bandwidth_alpha)
        self._state = INITIAL_STATE
        self._prev_info: TcpInfo | None = None
        self._sent_bytes = 0
        self._busy_s = 0.0
        self._floor_bytes_per_s: float | None = None
        self._floor_max_bytes_per_s: float | None = None  # highest floor since the last measured sample

    @property
    def state(self) -> NetworkState:
        return self._state

    def observe_send(self, n_bytes: int, busy_s: float) -> None:
        """Record ``n_bytes`` handed to the link in a send call that took ``busy_s`` seconds."""
        self._sent_bytes += n_bytes
        self._busy_s += busy_s

    def observe_floor(self, n_bytes: int, interval_s: float) -> None:
        """Record goodput the sender achieved while the link was not what mainly limited it: the sender spent
        less than half the interval blocked on it (CPU-bound, or partly), or TCP was still in slow start
        (``TcpInfo.in_slow_start``: the window limited it).

        It is no measure of the link, but a lower bound of it: if the estimate is below, the link got
        faster (e.g. the rate went up while a slow, strong codec kept the sender busy) and the estimate is
        pulled up to it. Without this, a selector that became CPU-bound would never see a faster link.
        """
        if interval_s > 0 and n_bytes > 0:
            self._floor_bytes_per_s = max(self._floor_bytes_per_s or 0.0, n_bytes / interval_s)

    def sample(self, info: TcpInfo | None = None, link_limited: bool = True) -> NetworkState:
        """Close the current interval and return the new state (``info``: a fresh ``TCP_INFO``, if any).

        ``link_limited=False``: the caller knows the link did not limit this interval (TCP was still ramping
        up, or the sender was CPU-bound), so the kernel's delivery rate measured the sender, not the link, and
        is ignored - the kernel flags application-limited rates only when the socket ran empty, and a strong
        codec feeding it in bursts made a 1000 Mbit/s link read as its own 12 MB/s output, which kept it chosen.
        """
        s = self._state
        estimates = []
        if (link_limited and info is not None and info.delivery_rate_bytes_per_s > 0
                and not info.delivery_rate_app_limited):
            estimates.append(float(info.delivery_rate_bytes_per_s))
        if self._busy_s > 0 and self._sent_bytes > 0:
            estimates.append(self._sent_bytes / self._busy_s)
        bw_sample = min(estimates) if estimates else None
        measured = bw_sample is not None  # the link limited the sender: a measure of the link, not a bound
        cur = self._bw.value
        bound = self._floor_bytes_per_s
        if bw_sample is None and bound is not None and cur is not None and bound > cur:
            # at most doubling per sample: a burst into empty socket buffers must not fake a fast link
            bw_sample = min(bound, RISE_FACTOR * cur)
        if measured:
            self._floor_max_bytes_per_s = None
        elif self._floor_bytes_per_s is not None:
            self._floor_max_bytes_per_s = max(self._floor_max_bytes_per_s or 0.0, self._floor_bytes_per_s)
        self._floor_bytes_per_s = None
        if measured and cur is not None and not DROP_FRACTION * cur <= bw_sample <= RISE_FACTOR * cur:
            # the sender waited on the link and got less than half (or more than twice) the estimate: the link
            # changed (a rate change, a handover, competing traffic), or the estimate came from slow-start
            # lower bounds. Averaging would take many samples to follow it, all the while choosing codecs for a
            # link that no longer exists - measured on a 1000 -> 20 Mbit/s change, the first, window-limited
            # sample of the round made the model pick zstd-9 for the first 0.1 s of the fast phase - so the
            # estimate restarts from the sample. Lower bounds (the floor above) only ever double it.
            self._bw.value = None
        bandwidth = self._bw.update(bw_sample) if bw_sample is not None else self._bw.value
        self._sent_bytes, self._busy_s = 0, 0.0
        rtt_s, ratio, loss = s.rtt_s, 1.0, s.loss_rate
        if info is not None and info.rtt_us > 0:
            rtt_s = info.rtt_us / 1e6
            ratio = rtt_s / s.rtt_s if s.rtt_s else 1.0
            prev = self._prev_info
            if prev is not None:
                d_out = (info.segs_out - prev.segs_out) & 0xFFFFFFFF
                d_retx = max(0, info.total_retrans - prev.total_retrans)
                loss = min(1.0, d_retx / d_out) if d_out > 0 else 0.0
            self._prev_info = info
        floor = self._floor_max_bytes_per_s if bandwidth is None else None
        self._state = NetworkState(s.sample_id + 1, rtt_s, ratio, loss, bandwidth, floor)
        return self._state

    def sample_explicit(
        self, rtt_s: float | None, loss_rate: float, bandwidth_bytes_per_s: float | None = None
    ) -> NetworkState:
        """A sample from another source (protocol pings, a testbed, a replayed trace)."""
        s = self._state
        ratio = rtt_s / s.rtt_s if (rtt_s and s.rtt_s) else 1.0
        bw = self._bw.update(bandwidth_bytes_per_s) if bandwidth_bytes_per_s is not None else self._bw.value
        self._state = NetworkState(s.sample_id + 1, rtt_s if rtt_s else s.rtt_s, ratio, loss_rate, bw)
        return self._state
