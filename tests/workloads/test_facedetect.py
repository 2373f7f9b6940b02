"""The face-detection workload: real detection on the bundled images, per-user counters, hostile requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import ValidationError
from edgemigrate.workloads.facedetect import (
    ASTRONAUT_FACE,
    DETECT_MAX_SIDE,
    MAX_B64_CHARS,
    MAX_IMAGE_BYTES,
    MAX_LINE_BYTES,
    Box,
    FaceDetector,
    FaceReply,
    FaceService,
    bundled_images,
    decode_image,
    format_reply,
    image_size,
    parse_reply,
)
from tests.workloads.conftest import LineClient, service


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    cv2.setNumThreads(1)
    return FaceDetector()


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return bundled_images()


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def test_bundled_images_hold_the_expected_faces(detector: FaceDetector, images: dict[str, np.ndarray]) -> None:
    assert set(images) == {"astronaut", "astronaut-mirror", "crowd", "astronaut-pixelated"}
    (face,) = detector.detect(images["astronaut"])
    assert face.iou(ASTRONAUT_FACE) > 0.6, face
    (mirrored,) = detector.detect(images["astronaut-mirror"])
    f = ASTRONAUT_FACE
    assert mirrored.iou(Box(512 - f.x - f.w, f.y, f.w, f.h)) > 0.6, mirrored
    crowd = detector.detect(images["crowd"])
    assert len(crowd) == 4
    quadrants = {(b.x + b.w // 2 >= 256, b.y + b.h // 2 >= 256) for b in crowd}
    assert len(quadrants) == 4  # one face in each copy
    assert detector.detect(images["astronaut-pixelated"]) == ()
    with pytest.raises(ValueError):  # the library's images are shared and read-only
        images["astronaut"][0, 0] = 1


def test_uploaded_images_are_decoded_and_large_ones_scaled_back(detector: FaceDetector,
                                                               images: dict[str, np.ndarray]) -> None:
    astro = images["astronaut"]
    png = _encode(astro, ".png")
    assert image_size(png) == (512, 512)
    assert np.array_equal(decode_image(png), astro)  # PNG is lossless
    big = cv2.resize(astro, (1280, 1024), interpolation=cv2.INTER_LINEAR)  # detected at DETECT_MAX_SIDE
    assert max(big.shape) > DETECT_MAX_SIDE
    jpg = _encode(big, ".jpg")
    assert image_size(jpg) == (1280, 1024)
    (face,) = detector.detect(decode_image(jpg))
    f = ASTRONAUT_FACE
    expected = Box(round(f.x * 2.5), round(f.y * 2), round(f.w * 2.5), round(f.h * 2))  # in the big image
    assert face.iou(expected) > 0.5, face


def _png_header(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + w.to_bytes(4, "big") + h.to_bytes(4, "big")


def _jpeg_header(w: int, h: int) -> bytes:
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + bytes(9)
    sof = b"\xff\xc0" + (11).to_bytes(2, "big") + b"\x08" + h.to_bytes(2, "big") + w.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    return b"\xff\xd8" + app0 + b"\xff\xff" + sof  # with a fill byte before the frame marker


def test_image_headers_are_checked_before_decoding() -> None:
    assert image_size(_png_header(640, 480)) == (640, 480)
    assert image_size(_jpeg_header(640, 480)) == (640, 480)
    for bomb in (_png_header(100_000, 100_000), _jpeg_header(60_000, 60_000), _png_header(4097, 10),
                 _jpeg_header(0, 480)):
        with pytest.raises(ValidationError, match="^image: .* pixels, at most"):
            decode_image(bomb + bytes(64))
    bad = {b"GIF89a" + bytes(32): "neither PNG nor JPEG", b"\x89PNG\r\n\x1a\n" + bytes(4): "IHDR",
           b"\xff\xd8\xff\xda" + bytes(8): "without a frame header", b"\xff\xd8\x00\x00" + bytes(8): "marker expected",
           b"\xff\xd8\xff\xe0\x00\x01" + bytes(8): "segment length", _jpeg_header(64, 64)[:-6]: "without a frame"}
    for data, reason in bad.items():
        with pytest.raises(ValidationError, match=reason):
            decode_image(data)
    with pytest.raises(ValidationError, match="cannot be decoded"):  # a sane header over garbage
        decode_image(_png_header(64, 64) + bytes(200))
    with pytest.raises(ValidationError, match=f"at most {MAX_IMAGE_BYTES}"):
        decode_image(bytes(MAX_IMAGE_BYTES + 1))


def test_counters_are_per_user_and_errors_do_not_count(detector: FaceDetector,
                                                       images: dict[str, np.ndarray]) -> None:
    svc = FaceService(detector, images, max_users=2)
    a1 = parse_reply(svc.handle(b"DETECT alice").decode())
    assert a1.counter == 1 and len(a1.boxes) == 1 and a1.boxes[0].iou(ASTRONAUT_FACE) > 0.6
    assert parse_reply(svc.handle(b"DETECT bob crowd").decode()).counter == 1
    assert parse_reply(svc.handle(b"detect alice astronaut-pixelated").decode()) == FaceReply(2, ())
    png = base64.b64encode(_encode(images["astronaut-mirror"], ".png")).decode()
    assert parse_reply(svc.handle(f"DETECT alice b64:{png}".encode()).decode()).counter == 3
    errors = {b"DETECT alice nope": b"ERR image: unknown id 'nope'",
              b"DETECT alice b64:!!!!": b"ERR image: invalid base64",
              b"DETECT alice b64:" + base64.b64encode(b"not an image"): b"ERR image: neither PNG nor JPEG",
              b"DETECT al/ice": b"ERR user: 'al/ice' must match",
              b"DETECT carol": b"ERR user: 2 users already, at most 2",
              b"DETECT": b"ERR request: unknown command 'DETECT' or wrong number",
              b"DETECT alice crowd extra": b"ERR request: unknown command",
              b"GET": b"ERR request:", b"PING x": b"ERR request:", b"\xff\xfe": b"ERR request: not ASCII",
              b"": b"ERR request: unknown command ''"}
    for line, reply in errors.items():
        got = svc.handle(line)
        assert got.startswith(reply) and b"\n" not in got, (line, got)
    assert svc.handle(b"GET alice") == b"3" and svc.handle(b"GET bob") == b"1" and svc.handle(b"GET carol") == b"0"
    assert svc.handle(b"USERS") == b"2" and svc.handle(b"PING") == b"PONG"
    assert svc.handle(b"IMAGES").decode().split() == list(images)
    stats = json.loads(svc.handle(b"STATS"))
    assert stats["users"] == 2 and stats["errors"] == len(errors) and stats["faces"] == 1 + 4 + 0 + 1
    replay = FaceService(detector, images)
    for line in (b"DETECT bob astronaut-pixelated", *[b"DETECT alice astronaut-pixelated"] * 3):
        replay.handle(line)
    assert replay.digest() == svc.digest()
    replay.handle(b"DETECT bob astronaut-pixelated")
    assert replay.digest() != svc.digest()


def test_corrupted_uploads_get_an_error_line_or_a_reply(detector: FaceDetector,
                                                          images: dict[str, np.ndarray]) -> None:
    """Seeded byte flips and truncations of a valid JPEG and PNG: the decoders never take the service down."""
    svc = FaceService(detector, images)
    small = cv2.resize(images["astronaut"], (64, 64), interpolation=cv2.INTER_AREA)
    valid = [_encode(small, ".jpg"), _encode(small, ".png")]
    rng = np.random.default_rng(7)
    served = 0
    for i in range(300):
        data = bytearray(valid[i % 2])
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        reply = svc.handle(b"DETECT mallory b64:" + base64.b64encode(bytes(data))).decode()
        assert "\n" not in reply
        if reply.startswith("ERR "):
            assert reply.startswith("ERR image: "), reply
        else:
            served += 1
            assert parse_reply(reply).counter == served
    assert 0 < served < 300 and svc.handle(b"GET mallory") == str(served).encode()


def test_reply_format_round_trips_and_rejects_garbage() -> None:
    boxes = (Box(1, 2, 30, 30), Box(100, 2, 31, 31))
    assert format_reply(7, boxes) == b"7 2 1,2,30,30 100,2,31,31"
    assert parse_reply(format_reply(7, boxes).decode()) == FaceReply(7, boxes)
    assert parse_reply("3 0") == FaceReply(3, ())
    for bad in ("ERR image: x", "7", "7 2 1,2,30,30", "x 0", "7 1 1,2,3", ""):
        with pytest.raises(ValidationError, match="^reply: "):
            parse_reply(bad)


def test_service_kind_builds_the_command_line() -> None:
    spec = ServiceSpec("faces", ServiceKind.FACEDETECT, "10.77.2.0", 7002, resident_mb=200, seed=3)
    argv = spec.argv()
    assert argv[1:3] == ["-m", "edgemigrate.workloads.facedetect"]
    assert float(argv[argv.index("--resident-mb") + 1]) == 200 and argv[argv.index("--seed") + 1] == "3"
    assert ServiceSpec.from_dict(spec.to_dict()) == spec


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key}")


def test_server_keeps_serving_after_malformed_and_oversized_requests() -> None:
    with service("edgemigrate.workloads.facedetect", "--port", "0", "--resident-mb", "16", "--seed", "2") as (p, port):
        assert _status(p.pid, "Threads") == 1  # OpenBLAS pinned, OpenCV's pool off: one thread to checkpoint
        assert _status(p.pid, "VmRSS") * 1024 >= 16 << 20
        a, b = LineClient(port), LineClient(port)
        assert parse_reply(a.ask("DETECT alice")).counter == 1
        a.sock.sendall(b"Z" * (MAX_LINE_BYTES + 100_000) + b"\n")  # over the line bound: read and dropped
        assert a.rfile.readline() == f"ERR request: line longer than {MAX_LINE_BYTES} bytes\n".encode()
        b64 = "A" * (MAX_B64_CHARS + 4)  # under the line bound, over the image bound
        assert a.ask(f"DETECT alice b64:{b64}").startswith(f"ERR image: {len(b64)} base64 characters")
        assert a.ask("DETECT alice b64:" + base64.b64encode(_png_header(50_000, 50_000)).decode()).startswith(
            "ERR image: 50000 x 50000 pixels")
        assert a.ask("HELLO?").startswith("ERR request: unknown command")
        assert parse_reply(b.ask("DETECT bob crowd")).counter == 1  # the other connection was never disturbed
        a.sock.sendall(b"DETECT alice\nGET alice\nPING\n")  # pipelined, answered in order
        assert [a.rfile.readline().decode().split()[0] for _ in range(3)] == ["2", "2", "PONG"]
        jpg = Path(__file__).resolve().parents[2] / "src/edgemigrate/data/faces/astronaut.jpg"
        up = parse_reply(b.ask("DETECT bob b64:" + base64.b64encode(jpg.read_bytes()).decode()))
        assert up.counter == 2 and len(up.boxes) == 1 and up.boxes[0].iou(ASTRONAUT_FACE) > 0.6
        assert a.ask("USERS") == "2"
        a.close()
        b.close()
