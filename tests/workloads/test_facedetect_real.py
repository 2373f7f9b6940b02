"""The face-detection service in a real runc container on a namespace host, moved by a real pre-copy migration.

Root + CRIU (CI runs it): the agents start the ``facedetect`` kind inside their container (OpenCV imported from
the bind-mounted interpreter), a client in the client namespace keeps sending requests while the container is
checkpointed and restored on another host; the per-user counters continue and faces are still found.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.workloads.facedetect import ASTRONAUT_FACE, parse_reply
from tests.waiting import wait_until

pytestmark = [pytest.mark.criu, pytest.mark.netns]

PORT = 7002
# a checkpoint of model size (Ngo et al. 2020, Table I: OpenFace's pre-migration checkpoint was 197 MB), kept
# at the low end so the test stays within CI's budget on the 100 Mbit/s edge-to-edge link
RESIDENT_MB = 200


class Client:
    """A line client whose socket lives in the client namespace (created inside ``in_netns``)."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.create_connection((ip, port), timeout=60)
        self.rfile = self.sock.makefile("rb")

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        reply = self.rfile.readline().decode()
        if not reply:
            raise ConnectionError("service closed the connection")
        return reply.rstrip("\n")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def _connect_when_up(ip: str, port: int, limit_s: float = 60.0) -> Client:
    """Connect once the service listens (it loads OpenCV and fills its memory first); a guard, not a timing."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            c = Client(ip, port)
            if c.ask("PING") == "PONG":
                return c
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _threads(bed, host: str, name: str) -> int:
    """Threads of the container's init process, read from the host's /proc."""
    out = subprocess.run(["runc", "--root", str(bed.agents[host].state_dir / "runc"), "state", name],
                         capture_output=True, text=True, check=True).stdout
    pid = json.loads(out)["pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


class Streamer(threading.Thread):
    """One user sending DETECT requests back to back on one connection, recording every counter."""

    def __init__(self, ip: str, port: int, user: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(ip, port)
        self.user = user
        self.counters: list[int] = []
        self.face_counts: list[int] = []
        self.error: str | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                r = parse_reply(self.client.ask(f"DETECT {self.user} crowd"))
                self.counters.append(r.counter)
                self.face_counts.append(len(r.boxes))
        except Exception as exc:  # reported and asserted on below
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.client.close()


@pytest.fixture
def clean(realbed):  # noqa: F811
    yield realbed
    realbed.stop_all("faces")


def test_precopy_migration_keeps_per_user_counters_and_detection(clean) -> None:
    from edgemigrate.control.netns import in_netns

    bed = clean
    spec = ServiceSpec("faces", ServiceKind.FACEDETECT, bed.tb.service_ip(0), PORT, RESIDENT_MB)
    bed.deploy("edge1", spec)
    with in_netns(bed.tb.netns_path("client1")):
        c = _connect_when_up(spec.ip, spec.port)
        for i in range(1, 4):
            r = parse_reply(c.ask("DETECT alice"))
            assert r.counter == i and len(r.boxes) == 1 and r.boxes[0].iou(ASTRONAUT_FACE) > 0.6, r
        assert parse_reply(c.ask("DETECT bob astronaut-pixelated")).boxes == ()
        stats = json.loads(c.ask("STATS"))
        streamer = Streamer(spec.ip, spec.port, "carol")  # started here: its socket is in the client namespace
        streamer.start()
    assert stats["resident_bytes"] == RESIDENT_MB << 20
    assert _threads(bed, "edge1", "faces") == 1
    wait_until(lambda: len(streamer.counters) >= 3 or not streamer.is_alive(), "three answered requests",
               poll_s=0.05)
    moved = bed.migrate("faces", "edge2", "precopy")
    n_before = len(streamer.counters)
    wait_until(lambda: len(streamer.counters) >= n_before + 3 or not streamer.is_alive(),
               "three requests answered by the restored copy", poll_s=0.05)
    streamer.stop_event.set()
    streamer.join(60)
    assert moved["ok"] and moved["to"] == "edge2", moved
    assert moved["full_checkpoint_bytes"] >= RESIDENT_MB << 20  # the model-sized memory really moved
    # requests dirty little of it (OpenCV's per-call buffers, the counters): pre-copy's frozen round stays small
    assert moved["final_round_bytes"] <= 0.05 * moved["full_checkpoint_bytes"], moved["final_round_bytes"]
    assert bed.where_running("faces") == ["edge2"]
    assert _threads(bed, "edge2", "faces") == 1
    assert streamer.error is None, streamer.error
    assert streamer.counters == list(range(1, len(streamer.counters) + 1))  # no request lost or repeated
    assert len(streamer.counters) >= n_before + 3 and set(streamer.face_counts) == {4}
    with in_netns(bed.tb.netns_path("client1")):
        r = parse_reply(c.ask("DETECT alice"))  # the connection opened before the move still works
        assert r.counter == 4 and len(r.boxes) == 1 and r.boxes[0].iou(ASTRONAUT_FACE) > 0.6, r
        assert c.ask("GET bob") == "1" and c.ask("USERS") == "3"
        assert c.ask("GET carol") == str(len(streamer.counters))
        c.close()
