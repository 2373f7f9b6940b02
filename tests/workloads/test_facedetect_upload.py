"""UPLOAD: a raw, length-prefixed image per request, its bounds and its failures (each one sent here)."""

from __future__ import annotations

import json
import selectors
import socket
from pathlib import Path

import cv2
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.workloads.facedetect import (
    ASTRONAUT_FACE,
    MAX_UPLOAD_BYTES,
    BoundedLineServer,
    FaceDetector,
    FaceService,
    format_reply,
    parse_proc_s,
    parse_reply,
)
from edgemigrate.workloads.lineserver import RECV_BYTES
from tests.workloads.conftest import LineClient, service

JPG = (Path(__file__).resolve().parents[2] / "src/edgemigrate/data/faces/astronaut.jpg").read_bytes()


def _upload(c: LineClient, user: str, data: bytes, n: int | None = None) -> str:
    c.sock.sendall(f"UPLOAD {user} {len(data) if n is None else n}\n".encode() + data)
    return c.rfile.readline().decode().rstrip("\n")


def _closed(c: LineClient) -> bool:
    return c.rfile.readline() == b""


def test_upload_reply_carries_the_processing_time_and_round_trips() -> None:
    assert parse_reply(format_reply(3, (ASTRONAUT_FACE,), 0.1234567).decode()).proc_s == pytest.approx(0.123457)
    assert parse_reply("3 0").proc_s is None  # DETECT's reply keeps its form
    for bad in ("proc_s=", "proc_s=-1", "proc_s=nan", "proc_s=inf", "proc_s=1e9", "proc_s=x"):
        with pytest.raises(ValidationError):
            parse_proc_s(bad)
        with pytest.raises(ValidationError):
            parse_reply(f"3 0 {bad}")


def test_uploads_are_framed_and_every_bad_one_closes_its_connection_only() -> None:
    with service("edgemigrate.workloads.facedetect", "--port", "0", "--resident-mb", "0") as (_, port):
        a = LineClient(port)
        up = parse_reply(_upload(a, "alice", JPG))
        assert up.counter == 1 and len(up.boxes) == 1 and up.boxes[0].iou(ASTRONAUT_FACE) > 0.6
        assert up.proc_s is not None and up.proc_s > 0
        # pipelined: an upload, a line request, another upload - answered in order on one connection
        a.sock.sendall(f"UPLOAD alice {len(JPG)}\n".encode() + JPG + b"GET alice\n" +
                       f"UPLOAD alice {len(JPG)}\n".encode() + JPG)
        assert [a.rfile.readline().split()[0] for _ in range(3)] == [b"2", b"2", b"3"]
        assert a.ask("DETECT alice").split()[0] == "4"  # the old request form still works
        bad_lengths = {"x12": "length", "0": "length", str(MAX_UPLOAD_BYTES + 1): "length",
                       "99999999999999999999": "length"}
        for n, what in bad_lengths.items():
            c = LineClient(port)
            c.sock.sendall(f"UPLOAD alice {n}\n".encode())
            assert c.rfile.readline().decode().startswith(f"ERR upload: {what}")
            assert _closed(c)
            c.close()
        for line in (b"UPLOAD ../etc 10\n", b"UPLOAD alice\n", b"UPLOAD alice 1 2\n"):
            c = LineClient(port)
            c.sock.sendall(line)
            assert c.rfile.readline().startswith(b"ERR ") and _closed(c)
            c.close()
        c = LineClient(port)  # a payload that is not an image
        assert _upload(c, "alice", b"\x00" * 5000).startswith("ERR image: neither PNG nor JPEG")
        assert _closed(c)
        c.close()
        c = LineClient(port)  # a short payload: the client ends before its n bytes
        c.sock.sendall(f"UPLOAD alice {len(JPG)}\n".encode() + JPG[:1000])
        c.sock.shutdown(socket.SHUT_WR)
        assert c.rfile.readline().decode().startswith(f"ERR upload: connection ended after 1000 of {len(JPG)}")
        assert _closed(c)
        c.close()
        c = LineClient(port)  # a truncated JPEG whose length is honest: decoded or refused, never a crash
        reply = _upload(c, "alice", JPG[: len(JPG) // 2])
        assert reply.startswith("ERR image") or parse_reply(reply).counter == 5
        c.close()
        assert a.ask("GET alice") in ("4", "5")  # the first connection saw none of it
        stats = json.loads(a.ask("STATS"))
        assert stats["errors"] >= len(bad_lengths) + 3 + 1 + 1
        a.close()


def _pump(server: BoundedLineServer, rounds: int = 20) -> None:
    """The server loop's body, run here in the test's thread (serve_forever installs signal handlers)."""
    for _ in range(rounds):
        for key, events in server.sel.select(0.05):
            if key.data is None:
                server._accept()
                continue
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            if events & selectors.EVENT_WRITE and conn in server.outbox:
                server._send(conn, b"")
            if events & selectors.EVENT_READ and conn in server.buffers:
                server._serve(conn)


def test_a_stalled_upload_is_dropped_and_an_announced_length_bounds_the_buffer() -> None:
    cv2.setNumThreads(1)
    svc = FaceService(FaceDetector(), {})
    now = [100.0]
    server = BoundedLineServer("127.0.0.1", 0, svc.handle, uploads=svc, clock=lambda: now[0], stall_s=30.0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
            c.sendall(f"UPLOAD bob {len(JPG)}\n".encode() + JPG[:2000])
            _pump(server)
            conn = next(iter(server.buffers))
            assert len(server.buffers[conn]) == 2000 and svc.errors == 0
            now[0] += 29.0
            server.expire_stalled(now[0])
            assert conn in server.buffers  # not yet stalled
            now[0] += 2.0
            server.expire_stalled(now[0])
            assert not server.buffers  # dropped, its buffer freed
            f = c.makefile("rb")
            assert f.readline().startswith(b"ERR upload: 2000 of") and f.readline() == b""
            assert svc.errors == 1 and svc.counters == {}
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
            # a big announced length: the buffer only ever holds what came, never the announced size up front
            c.sendall(f"UPLOAD bob {MAX_UPLOAD_BYTES}\n".encode() + b"\xff\xd8" * 40_000)
            _pump(server)
            conn = next(iter(server.buffers))
            assert len(server.buffers[conn]) <= 80_000 + RECV_BYTES
            c.shutdown(socket.SHUT_WR)
            _pump(server)
            assert not server.buffers and svc.errors == 2
    finally:
        for conn in list(server.buffers):
            server._close(conn)
        server.listener.close()
