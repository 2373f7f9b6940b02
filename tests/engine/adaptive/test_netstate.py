from __future__ import annotations

import dataclasses
import socket
import struct
import threading

import pytest

from edgemigrate.engine.adaptive.netstate import (
    TCP_ESTABLISHED,
    Ewma,
    NetworkMonitor,
    TcpInfo,
    parse_tcp_info,
    read_tcp_info,
)


def _raw_tcp_info(**fields: int) -> bytes:
    buf = bytearray(232)
    layout = {
        "rtt_us": (68, "I"),
        "snd_ssthresh": (76, "I"),
        "snd_cwnd": (80, "I"),
        "total_retrans": (100, "I"),
        "segs_out": (136, "I"),
        "delivery_rate_bytes_per_s": (160, "Q"),
        "bytes_acked": (120, "Q"),
        "state": (0, "B"),
        "rwnd_limited_us": (176, "Q"),
        "snd_wnd": (228, "I"),
    }
    for k, v in fields.items():
        off, fmt = layout[k]
        struct.pack_into("<" + fmt, buf, off, v)
    return bytes(buf)


def test_parse_offsets() -> None:
    raw = bytearray(
        _raw_tcp_info(
            state=1,
            rtt_us=12345,
            total_retrans=7,
            segs_out=1000,
            delivery_rate_bytes_per_s=5_000_000,
            bytes_acked=1 << 40,
            snd_ssthresh=0x7FFFFFFF,
            snd_cwnd=10,
            rwnd_limited_us=3_000_000,
            snd_wnd=65535,
        )
    )
    raw[7] = 1  # delivery_rate_app_limited bit
    info = parse_tcp_info(bytes(raw))
    assert (info.state, info.rtt_us, info.total_retrans, info.segs_out) == (1, 12345, 7, 1000)
    assert info.delivery_rate_bytes_per_s == 5_000_000 and info.bytes_acked == 1 << 40
    assert info.delivery_rate_app_limited
    assert info.snd_ssthresh == 0x7FFFFFFF and info.snd_cwnd == 10 and info.in_slow_start
    assert not dataclasses.replace(info, snd_ssthresh=8).in_slow_start
    assert info.rwnd_limited_us == 3_000_000 and info.snd_wnd == 65535
    short = parse_tcp_info(bytes(raw[:104]))  # an old kernel: later fields read as 0
    assert short.rtt_us == 12345 and short.segs_out == 0
    with pytest.raises(ValueError):
        parse_tcp_info(bytes(50))


def test_real_loopback_socket() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    got = bytearray()

    def drain() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 16):
                got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    cli = socket.create_connection(("127.0.0.1", port))
    payload = b"x" * (4 << 20)
    cli.sendall(payload)
    info = read_tcp_info(cli)
    cli.close()
    t.join()
    srv.close()
    assert info.state == TCP_ESTABLISHED
    assert info.snd_mss > 0 and info.rtt_us > 0
    assert info.bytes_sent >= len(payload) or info.bytes_acked > 0
    assert info.segs_out > 0
    assert len(got) == len(payload)


def _info(**kw: int) -> TcpInfo:
    base = parse_tcp_info(_raw_tcp_info(state=1))
    return dataclasses.replace(base, **kw)


def test_monitor_rtt_ratio_loss_and_bandwidth() -> None:
    mon = NetworkMonitor(bandwidth_alpha=0.5)
    s1 = mon.sample(_info(rtt_us=10_000, segs_out=100, total_retrans=0))
    assert (s1.sample_id, s1.rtt_ratio, s1.loss_rate, s1.bandwidth_bytes_per_s) == (1, 1.0, 0.0, None)
    mon.observe_send(1_000_000, 0.5)  # 2 MB/s while blocked on the link
    s2 = mon.sample(
        _info(
            rtt_us=12_000,
            segs_out=300,
            total_retrans=50,
            delivery_rate_app_limited=True,
            delivery_rate_bytes_per_s=9_999_999,
        )
    )
    assert s2.rtt_ratio == pytest.approx(1.2)
    assert s2.loss_rate == pytest.approx(50 / 200)
    assert s2.bandwidth_bytes_per_s == pytest.approx(2e6)  # app-limited kernel estimate ignored
    s3 = mon.sample(_info(rtt_us=6_000, segs_out=300, total_retrans=50, delivery_rate_bytes_per_s=4_000_000))
    assert s3.rtt_ratio == pytest.approx(0.5)
    assert s3.loss_rate == 0.0  # nothing sent in the interval
    assert s3.bandwidth_bytes_per_s == pytest.approx(3e6)  # EWMA(0.5) of 2e6 and the kernel's 4e6
    # both estimates present: the smaller wins (a user-space pacer above TCP fools the kernel's)
    mon.observe_send(3_000_000, 1.0)
    s5 = mon.sample(_info(rtt_us=6_000, segs_out=300, total_retrans=50, delivery_rate_bytes_per_s=900_000_000))
    assert s5.bandwidth_bytes_per_s == pytest.approx(0.5 * 3e6 + 0.5 * 3e6)
    s4 = mon.sample_explicit(rtt_s=0.009, loss_rate=0.4)
    assert s4.sample_id == 5 and s4.rtt_ratio == pytest.approx(1.5) and s4.bandwidth_bytes_per_s == pytest.approx(3e6)


def test_ewma() -> None:
    e = Ewma(0.25)
    assert e.value is None
    assert e.update(8.0) == 8.0
    assert e.update(0.0) == 6.0
    with pytest.raises(ValueError):
        Ewma(0.0)


def test_monitor_cpu_bound_goodput_raises_the_estimate_as_a_lower_bound() -> None:
    mon = NetworkMonitor(bandwidth_alpha=1.0)  # no smoothing: each sample is the estimate
    mon.observe_send(1_000_000, 1.0)
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(1e6)  # link-limited: 1 MB/s
    # the link got faster; a slow codec now keeps the sender busy and it makes 10 MB/s without waiting
    mon.observe_floor(10_000_000, 1.0)
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(2e6)  # pulled up, at most doubling per sample
    mon.observe_floor(10_000_000, 1.0)
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(4e6)
    mon.observe_floor(3_000_000, 1.0)  # below the estimate: says nothing
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(4e6)
    mon.observe_floor(10_000_000, 1.0)  # a link-limited measurement in the same interval wins
    mon.observe_send(500_000, 1.0)
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(5e5)


def test_a_fresh_connection_reports_slow_start() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    info = read_tcp_info(cli)
    for s in (cli, peer, srv):
        s.close()
    assert info.snd_ssthresh >= info.snd_cwnd > 0 and info.in_slow_start  # no loss yet: ssthresh "infinite"


def test_monitor_follows_a_link_that_changed_at_once() -> None:
    mon = NetworkMonitor(bandwidth_alpha=0.3)
    mon.observe_send(60_000_000, 1.0)
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(60e6)
    mon.observe_send(40_000_000, 1.0)  # within half: smoothed as usual
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(0.3 * 40e6 + 0.7 * 60e6)
    mon.observe_send(2_500_000, 1.0)  # 1000 -> 20 Mbit/s: below half the estimate, taken as is
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(2.5e6)
    mon.observe_send(3_000_000, 1.0)  # and smoothed again from there
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(0.3 * 3e6 + 0.7 * 2.5e6)
    mon.observe_send(100_000_000, 1.0)  # 20 -> 1000 Mbit/s: above twice the estimate, taken as is too
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(100e6)
    mon.observe_send(2_000_000, 1.0)  # the window-limited first sample of a round, then the link's real rate:
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(2e6)
    mon.observe_send(80_000_000, 1.0)  # one sample to follow it, not ten
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(80e6)
    mon.observe_floor(900_000_000, 1.0)  # a lower bound never replaces the estimate: capped at twice it, smoothed
    assert mon.sample().bandwidth_bytes_per_s == pytest.approx(0.3 * 160e6 + 0.7 * 80e6)


def test_kernel_delivery_rate_counts_only_when_the_link_limited_the_interval() -> None:
    # a CPU-bound sender feeding the socket in bursts: the kernel reports its output rate, not app-limited
    mon = NetworkMonitor(bandwidth_alpha=1.0)
    assert mon.sample(_info(delivery_rate_bytes_per_s=12_000_000), link_limited=False).bandwidth_bytes_per_s is None
    mon.observe_send(80_000_000, 1.0)
    assert mon.sample(_info(delivery_rate_bytes_per_s=90_000_000)).bandwidth_bytes_per_s == pytest.approx(80e6)
    # not link-limited: neither the kernel's 12 MB/s nor anything else moves the estimate
    st = mon.sample(_info(delivery_rate_bytes_per_s=12_000_000), link_limited=False)
    assert st.bandwidth_bytes_per_s == pytest.approx(80e6)


def test_floor_is_reported_until_a_bandwidth_is_measured() -> None:
    mon = NetworkMonitor(bandwidth_alpha=1.0)
    assert mon.sample().bandwidth_floor_bytes_per_s is None  # nothing known
    mon.observe_floor(2_000_000, 1.0)  # TCP ramping up: at least 2 MB/s crossed
    st = mon.sample()
    assert st.bandwidth_bytes_per_s is None and st.bandwidth_floor_bytes_per_s == pytest.approx(2e6)
    assert mon.sample().bandwidth_floor_bytes_per_s == pytest.approx(2e6)  # an interval without a bound keeps it
    mon.observe_floor(1_000_000, 1.0)  # a lower bound below the one known says nothing new
    assert mon.sample().bandwidth_floor_bytes_per_s == pytest.approx(2e6)
    mon.observe_floor(30_000_000, 1.0)
    assert mon.sample().bandwidth_floor_bytes_per_s == pytest.approx(30e6)
    mon.observe_send(25_000_000, 1.0)  # measured: the estimate takes over, the floor is gone
    st = mon.sample()
    assert st.bandwidth_bytes_per_s == pytest.approx(25e6) and st.bandwidth_floor_bytes_per_s is None
