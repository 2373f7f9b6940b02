"""The data connection's receive buffer (``size_receive_buffer``) on real sockets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgemigrate.engine.transport.streams import DATA_RCVBUF_BYTES, size_receive_buffer


def _rcvbuf(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_accepted_connections_inherit_the_listeners_fixed_buffer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        want = 1 << 20  # without root the kernel caps it at net.core.rmem_max (208 KiB on stock kernels)
        got = size_receive_buffer(srv, want)
        if os.geteuid() == 0:
            assert got >= 2 * want  # the kernel doubles it for its bookkeeping
        else:
            assert got >= min(2 * want, 2 * _rmem_max())
        with socket.create_connection(srv.getsockname()[:2]) as c, srv.accept()[0] as peer:
            assert _rcvbuf(peer) == got  # inherited, so the SYN-ACK announced a window scale for it
            c.sendall(b"x")
            assert peer.recv(1) == b"x"


def test_zero_keeps_autotuning_and_the_default_is_large() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        before = _rcvbuf(srv)
        assert size_receive_buffer(srv, 0) == before
    assert DATA_RCVBUF_BYTES >= 8 << 20  # >= 3 x the 1 Gbit/s x 20 ms path


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")
def test_root_may_exceed_rmem_max() -> None:
    rmem_max = _rmem_max()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        assert size_receive_buffer(srv, 2 * rmem_max) >= 4 * rmem_max
