"""The plate-recognition workload: real detection on generated scenes, per-user counters, timed requests,
hostile requests (bounded uploads with checked headers come from facedetect's pieces, used as they are)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.workloads.facedetect import MAX_LINE_BYTES, parse_reply
from edgemigrate.workloads.platedetect import (
    SCENES,
    TIMING_WINDOW,
    PlateDetector,
    PlateService,
    generate_scene,
    generated_images,
)
from tests.workloads.conftest import LineClient, service


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    cv2.setNumThreads(1)
    return generated_images()


class StepClock:
    """A clock that advances by a given step on every reading (so a detection "takes" exactly that step)."""

    def __init__(self, steps_s: Iterator[float]) -> None:
        self.now = 0.0
        self.steps = steps_s
        self.odd = False

    def __call__(self) -> float:
        self.odd = not self.odd
        if not self.odd:  # the second reading of a detection is the first plus its step
            self.now += next(self.steps)
        return self.now


def test_generated_scenes_hold_their_plate_and_nothing_else(images: dict[str, np.ndarray]) -> None:
    det = PlateDetector()
    for name, (w, h, box) in SCENES.items():
        found = det.detect(images[name])
        assert images[name].shape == (h, w)
        if box is None:
            assert found == ()
        else:
            assert len(found) == 1, name
            assert found[0].iou(box) > 0.3, (name, found)


def test_scenes_are_deterministic_per_seed() -> None:
    a = generate_scene(320, 240, None, seed=3)
    assert np.array_equal(a, generate_scene(320, 240, None, seed=3))
    assert not np.array_equal(a, generate_scene(320, 240, None, seed=4))


def test_counters_per_user_and_processing_time_of_recent_requests(images: dict[str, np.ndarray]) -> None:
    steps = iter([0.010, 0.020] + [0.1] * TIMING_WINDOW)
    svc = PlateService(PlateDetector(clock=StepClock(steps)), images)
    assert json.loads(svc.handle(b"STATS"))["timed"] == 0
    r1 = parse_reply(svc.handle(b"DETECT alice").decode())
    r2 = parse_reply(svc.handle(b"DETECT alice street-small").decode())
    assert (r1.counter, r2.counter, len(r1.boxes)) == (1, 2, 1)
    stats = json.loads(svc.handle(b"STATS"))
    assert stats["processing_s_mean"] == pytest.approx(0.015)
    assert stats["processing_s_last"] == pytest.approx(0.020)
    assert (stats["timed"], stats["plates"], stats["users"]) == (2, 2, 1)
    for _ in range(TIMING_WINDOW):
        svc.handle(b"DETECT bob street-empty")
    stats = json.loads(svc.handle(b"STATS"))
    assert stats["processing_s_mean"] == pytest.approx(0.1)  # only the last TIMING_WINDOW requests count
    assert svc.handle(b"GET alice") == b"2" and svc.handle(b"GET bob") == str(TIMING_WINDOW).encode()


def test_bad_requests_do_not_count_and_are_not_timed(images: dict[str, np.ndarray]) -> None:
    svc = PlateService(PlateDetector(), images)
    for bad in (b"DETECT ../x", b"DETECT alice nosuchimage", b"DETECT alice b64:!!!", b"DETECT alice b64:" +
                base64.b64encode(b"GIF89a" + b"\0" * 64), b"\xff\xfe", b"DETECT"):
        assert svc.handle(bad).startswith(b"ERR "), bad
    # a PNG whose header claims 100000 x 100000 pixels is refused before it is decoded
    ok, png = cv2.imencode(".png", images["street-small"])
    huge = bytearray(png.tobytes())
    huge[16:24] = (100000).to_bytes(4, "big") * 2
    assert svc.handle(b"DETECT alice b64:" + base64.b64encode(bytes(huge))).startswith(b"ERR image:")
    stats = json.loads(svc.handle(b"STATS"))
    assert (stats["users"], stats["timed"], stats["errors"]) == (0, 0, 7)


def test_uploaded_scene_is_detected_like_the_generated_one(images: dict[str, np.ndarray]) -> None:
    svc = PlateService(PlateDetector(), images)
    ok, jpg = cv2.imencode(".jpg", images["street"], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    reply = parse_reply(svc.handle(b"DETECT carol b64:" + base64.b64encode(jpg.tobytes())).decode())
    assert reply.counter == 1 and len(reply.boxes) == 1


def test_service_kind_builds_the_command_line() -> None:
    spec = ServiceSpec("plates", ServiceKind.PLATEDETECT, "10.1.2.0", 7003, resident_mb=8, seed=5)
    argv = spec.argv()
    assert argv[1:3] == ["-m", "edgemigrate.workloads.platedetect"]
    assert ServiceSpec.from_dict(spec.to_dict()) == spec


def test_server_keeps_serving_after_malformed_and_oversized_requests() -> None:
    with service("edgemigrate.workloads.platedetect", "--port", "0", "--seed", "1") as (proc, port):
        c = LineClient(port)
        try:
            assert c.ask("PING") == "PONG"
            assert c.ask("DETECT u1").startswith("1 1 ")
            assert c.ask("x" * (MAX_LINE_BYTES + 10)).startswith("ERR request: line longer")
            assert c.ask("DETECT u1 street-empty") == "2 0"
            stats = json.loads(c.ask("STATS"))
            assert stats["timed"] == 2 and stats["processing_s_mean"] > 0
            assert len(list(Path(f"/proc/{proc.pid}/task").iterdir())) == 1  # one thread, as facedetect: CRIU checkpoints a fixed thread set
        finally:
            c.close()
