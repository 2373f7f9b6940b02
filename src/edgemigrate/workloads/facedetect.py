"""A compute-heavy stateful service: real face detection (OpenCV Haar cascade) with a counter per user.

It stands in for the OpenFace and Yolo services of Ngo et al. 2020 (section V-A: image-processing offloading
services that, like Simple, "store and increment counter after each incoming offloading request"; their
pre-migration checkpoints were 197 MB and 585 MB, Table I). Each ``DETECT`` request runs OpenCV's bundled
``haarcascade_frontalface_alt2`` cascade on a bundled image or on a PNG/JPEG the client sends, and increments
that user's counter; the counters are the state a migration must carry. ``--resident-mb`` MB of mostly static
memory (:class:`~edgemigrate.workloads.memory.ResidentMemory`) stand in for a real model's weights and
preallocated buffers, so the checkpoint has the size of one.

Measured here (2-core VM, OpenCV 4.14, one thread, ``python -m edgemigrate.workloads.facedetect``): detection
takes 130-160 ms per request on each bundled 512 x 512 image (astronaut 139 ms, crowd 159 ms, pixelated
135 ms); an uploaded image is scaled down to at most :data:`DETECT_MAX_SIDE` pixels a side first, so a
1920 x 1080 JPEG costs about the same. Resident size is about 90 MB (interpreter, NumPy, OpenCV) plus
``--resident-mb``: 295 MB with the default 200.

One thread, on purpose: CRIU then checkpoints a fixed, known thread set. OpenCV's own pool is switched off
(``cv2.setNumThreads(1)``) and both OpenBLAS copies (NumPy's and OpenCV's) would each start a worker per core
when loaded, so the program re-executes itself once with ``OPENBLAS_NUM_THREADS=1`` before serving.

Protocol (one ASCII line each way, the first reply token of ``DETECT`` is the counter as in the counter
service)::

    DETECT user [image]  -> <user's counter after increment> <faces> [x,y,w,h ...]
                            image = a bundled image id (default "astronaut"; IMAGES lists them) or
                            b64:<base64 of a PNG or JPEG>, at most MAX_IMAGE_BYTES bytes and
                            MAX_IMAGE_PIXELS pixels (checked in its header before it is decoded)
    UPLOAD user n        -> <counter> <faces> [x,y,w,h ...] proc_s=<server-side processing time, s>
    <n raw bytes>           the line is followed by exactly n bytes of a PNG or JPEG (1 <= n <=
                            MAX_UPLOAD_BYTES, checked before anything is buffered for it; MAX_IMAGE_PIXELS as
                            above). proc_s spans decoding and detection, so that a client can split its
                            end-to-end delay into processing and transmission (Ngo et al. 2020, fig. 4)
    GET user             -> <user's counter>  (0 for an unknown user; no increment)
    USERS                -> <number of users with a counter>
    IMAGES               -> <bundled image ids, space-separated>
    DIGEST               -> <blake2b over all (user, counter) pairs in user order>
    STATS                -> {"users": .., "requests": .., "errors": .., "faces": .., "resident_bytes": ..}
    PING                 -> PONG

A bad request gets ``ERR <key>: <reason>`` (one line; the counter is not incremented) and the server goes on
serving it and every other connection; so does a line longer than the bound, which is read to its end and
dropped. A failed ``UPLOAD`` (a bad or oversized length, a payload that is not a bounded image, a connection
that ends or stalls for :data:`UPLOAD_STALL_S` before all n bytes came) is answered with its ``ERR`` line and
that connection is closed: after a bad length the server cannot tell where the next request starts, and one
rule for every upload failure keeps the client's side simple. Each counts in ``STATS``' errors. Run: ``python -m edgemigrate.workloads.facedetect --host 10.77.2.0 --port 7002 --resident-mb 200``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

import cv2
import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.workloads.lineserver import RECV_BYTES, Handler, LineServer
from edgemigrate.workloads.memory import ResidentMemory

DEFAULT_PORT = 7002
DEFAULT_RESIDENT_MB = 200.0
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
# 1.1 / 5 / 24 px: the usual settings for this cascade; a finer scale step (1.05) doubles the time and finds
# a false face on the astronaut's suit
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE_PX = 24
DETECT_MAX_SIDE = 640  # larger images are scaled down first: bounds the time per request
MAX_IMAGE_BYTES = 512 * 1024  # encoded upload (a 1080p JPEG fits)
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 1 << 21  # decoded, checked from the header before decoding (1920 x 1080 fits)
MAX_B64_CHARS = 4 * -(-MAX_IMAGE_BYTES // 3)
MAX_LINE_BYTES = MAX_B64_CHARS + 256  # "DETECT <user> b64:" + the image
MAX_CONNECTIONS = 32  # each may buffer up to MAX_LINE_BYTES, or MAX_UPLOAD_BYTES during an UPLOAD
# a raw upload: no base64 inflation, so the line bound does not limit it; 4 MiB holds any JPEG or PNG within
# MAX_IMAGE_PIXELS (an uncompressed 8-bit RGB PNG of 2 Mpx is 6 MB, but nobody uploads one of those)
MAX_UPLOAD_BYTES = 4 << 20
UPLOAD_STALL_S = 30.0  # an upload whose bytes stop coming for this long is dropped (its buffer freed)
MAX_USERS = 65536
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
DEFAULT_IMAGE = "astronaut"
ASTRONAUT_FILE = "astronaut.jpg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC) carry the image size
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union else 0.0


# Eileen Collins' face in the bundled image as this detector finds it (the tests check that it still does)
ASTRONAUT_FACE = Box(176, 66, 96, 96)


@dataclass(frozen=True, slots=True)
class FaceReply:
    """A parsed ``DETECT`` reply."""

    counter: int
    boxes: tuple[Box, ...]
    proc_s: float | None = None  # the server's processing time (UPLOAD replies only)


PROC_TOKEN = "proc_s="
MAX_PROC_S = 3600.0


def format_reply(counter: int, boxes: tuple[Box, ...], proc_s: float | None = None) -> bytes:
    parts = [str(counter), str(len(boxes)), *(f"{b.x},{b.y},{b.w},{b.h}" for b in boxes)]
    if proc_s is not None:
        parts.append(f"{PROC_TOKEN}{proc_s:.6f}")
    return " ".join(parts).encode()


def parse_proc_s(token: str) -> float:
    """The ``proc_s=<seconds>`` token of an UPLOAD reply: a finite number in [0, MAX_PROC_S]."""
    try:
        v = float(token[len(PROC_TOKEN):]) if token.startswith(PROC_TOKEN) else math.nan
    except ValueError:
        v = math.nan
    if not 0.0 <= v <= MAX_PROC_S:  # NaN fails this too
        raise ValidationError(f"reply: expected {PROC_TOKEN}<seconds in [0, {MAX_PROC_S:g}]>, got {token[:40]!r}")
    return v


def parse_reply(line: str) -> FaceReply:
    """Parse a ``DETECT`` or ``UPLOAD`` reply (for clients such as the virtual mobile user); ValidationError if
    malformed."""
    parts = line.split()
    proc_s = parse_proc_s(parts.pop()) if parts and parts[-1].startswith(PROC_TOKEN) else None
    if line.startswith("ERR") or len(parts) < 2:
        raise ValidationError(f"reply: not a DETECT reply: {line[:80]!r}")
    try:
        counter, n = int(parts[0]), int(parts[1])
        boxes = tuple(Box(*(int(v) for v in p.split(","))) for p in parts[2:])
    except (ValueError, TypeError):
        raise ValidationError(f"reply: malformed DETECT reply: {line[:80]!r}") from None
    if n != len(boxes):
        raise ValidationError(f"reply: {n} faces announced, {len(boxes)} boxes given")
    return FaceReply(counter, boxes, proc_s)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, without decoding the image."""
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValidationError("image: PNG without an IHDR header")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        raise ValidationError("image: neither PNG nor JPEG")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValidationError(f"image: JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        seg_len = int.from_bytes(data[i + 2 : i + 4], "big")
        if seg_len < 2:
            raise ValidationError(f"image: JPEG segment length {seg_len} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                break
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + seg_len
    raise ValidationError("image: JPEG without a frame header")


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """A PNG or JPEG as an 8-bit grayscale array, its size checked against the bounds before decoding."""
    if len(data) > max_bytes:
        raise ValidationError(f"image: {len(data)} bytes, at most {max_bytes}")
    w, h = image_size(data)
    if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE and w * h <= MAX_IMAGE_PIXELS):
        raise ValidationError(f"image: {w} x {h} pixels, at most {MAX_IMAGE_SIDE} a side and {MAX_IMAGE_PIXELS}")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        img = None
    if img is None:
        raise ValidationError("image: cannot be decoded")
    if img.shape != (h, w):  # a decoder that disagrees with the header we bounded
        raise ValidationError(f"image: decoded {img.shape[1]} x {img.shape[0]}, header said {w} x {h}")
    return img


class FaceDetector:
    """OpenCV's frontal-face Haar cascade, loaded once (the "model"). Another cascade (the plate detector of
    :mod:`.platedetect`) is this class with its file and its own three settings."""

    scale_factor = SCALE_FACTOR
    min_neighbors = MIN_NEIGHBORS
    min_size_px = (MIN_FACE_PX, MIN_FACE_PX)

    def __init__(self, cascade_path: str | None = None) -> None:
        path = cascade_path or os.path.join(cv2.data.haarcascades, CASCADE_FILE)
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise ValidationError(f"cascade: cannot load {path}")

    def detect(self, gray: np.ndarray) -> tuple[Box, ...]:
        """Faces in ``gray`` (8-bit, 2-D), in its own pixel coordinates, top to bottom then left to right."""
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        work = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        work = cv2.equalizeHist(work)
        found = self.cascade.detectMultiScale(work, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=self.min_size_px)
        boxes = [Box(*(round(int(v) / scale) for v in r)) for r in found]
        return tuple(sorted(boxes, key=lambda b: (b.y, b.x)))


def bundled_images() -> dict[str, np.ndarray]:
    """The test images, all derived from the one bundled photograph (public domain, see data/faces/NOTICE):
    ``astronaut`` (1 face), ``astronaut-mirror`` (1), ``crowd`` (2 x 2 half-size copies, 4 faces) and
    ``astronaut-pixelated`` (the face pixelated: 0 faces, as long to scan as the others)."""
    data = resources.files("edgemigrate").joinpath("data", "faces", ASTRONAUT_FILE).read_bytes()
    astro = decode_image(data)
    h, w = astro.shape
    half = cv2.resize(astro, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    crowd = np.block([[half, cv2.flip(half, 1)], [cv2.flip(half, 1), half]])
    pixelated = astro.copy()
    f, m = ASTRONAUT_FACE, 10
    roi = pixelated[f.y - m : f.y + f.h + m, f.x - m : f.x + f.w + m]
    coarse = cv2.resize(roi, (6, 6), interpolation=cv2.INTER_AREA)
    roi[:] = cv2.resize(coarse, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST)
    images = {"astronaut": astro, "astronaut-mirror": cv2.flip(astro, 1), "crowd": crowd,
              "astronaut-pixelated": pixelated}
    for img in images.values():
        img.flags.writeable = False
    return images


def _user(arg: str) -> str:
    if not USER_RE.fullmatch(arg):
        raise ValidationError(f"user: {arg[:80]!r} must match {USER_RE.pattern}")
    return arg


def _b64(text: str) -> bytes:
    if len(text) > MAX_B64_CHARS:
        raise ValidationError(f"image: {len(text)} base64 characters, at most {MAX_B64_CHARS}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("image: invalid base64") from None


class FaceService:
    """The request handler and the state: one counter per user."""

    default_image = DEFAULT_IMAGE  # what DETECT without an image argument runs on

    def __init__(self, detector: FaceDetector, images: dict[str, np.ndarray], resident_mb: float = 0.0,
                 seed: int = 0, max_users: int = MAX_USERS, *,
                 proc_clock: Callable[[], float] = time.perf_counter) -> None:
        self.detector = detector
        self.proc_clock = proc_clock  # times an UPLOAD's decoding + detection (its reply's proc_s)
        self.images = images
        self.memory = ResidentMemory(resident_mb, seed)
        self.max_users = max_users
        self.counters: dict[str, int] = {}
        self.requests = 0
        self.errors = 0
        self.faces = 0

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for user in sorted(self.counters):
            h.update(len(user).to_bytes(1, "little") + user.encode() + self.counters[user].to_bytes(8, "little"))
        return h.hexdigest()

    def handle(self, line: bytes) -> bytes:
        self.requests += 1
        try:
            return self._dispatch(line)
        except ValidationError as exc:
            self.errors += 1
            return b"ERR " + " ".join(str(exc).split()).encode("ascii", "replace")

    def _dispatch(self, line: bytes) -> bytes:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise ValidationError("request: not ASCII") from None
        cmd, _, rest = text.partition(" ")
        cmd = cmd.upper()
        args = rest.split(" ") if rest else []
        if cmd == "DETECT" and 1 <= len(args) <= 2:
            return self._detect(_user(args[0]), args[1] if len(args) == 2 else self.default_image)
        if cmd == "GET" and len(args) == 1:
            return str(self.counters.get(_user(args[0]), 0)).encode()
        if not args:
            if cmd == "USERS":
                return str(len(self.counters)).encode()
            if cmd == "IMAGES":
                return " ".join(self.images).encode()
            if cmd == "DIGEST":
                return self.digest().encode()
            if cmd == "STATS":
                return json.dumps({"users": len(self.counters), "requests": self.requests, "errors": self.errors,
                                   "faces": self.faces, "resident_bytes": self.memory.size_bytes}).encode()
            if cmd == "PING":
                return b"PONG"
        raise ValidationError(f"request: unknown command {cmd[:16]!r} or wrong number of arguments")

    def _detect(self, user: str, image: str) -> bytes:
        if image.startswith("b64:"):
            gray = decode_image(_b64(image[4:]))
        elif image in self.images:
            gray = self.images[image]
        else:
            raise ValidationError(f"image: unknown id {image[:40]!r}; bundled: {' '.join(self.images)}")
        return format_reply(*self._count(user, gray))

    def _count(self, user: str, gray: np.ndarray) -> tuple[int, tuple[Box, ...]]:
        if user not in self.counters and len(self.counters) >= self.max_users:
            raise ValidationError(f"user: {len(self.counters)} users already, at most {self.max_users}")
        boxes = self.detector.detect(gray)
        self.counters[user] = self.counters.get(user, 0) + 1
        self.faces += len(boxes)
        return self.counters[user], boxes

    # -- UPLOAD: the header line, then the raw image (BoundedLineServer frames it) --

    def upload_length(self, line: bytes) -> int | None:
        """The payload length an ``UPLOAD user n`` line announces; None for any other line. A bad header raises
        ValidationError (counted): a non-decimal n, n outside 1..MAX_UPLOAD_BYTES, a bad user."""
        if not line[:7].upper() == b"UPLOAD ":
            return None
        self.requests += 1
        parts = line.split(b" ")
        try:
            if len(parts) != 3:
                raise ValidationError("upload: expected 'UPLOAD <user> <bytes>'")
            _user(parts[1].decode("ascii", "replace"))
            n = parts[2]
            if not n.isdigit() or len(n) > 10 or not 1 <= int(n) <= MAX_UPLOAD_BYTES:
                raise ValidationError(f"upload: length {n[:16]!r} must be 1..{MAX_UPLOAD_BYTES} bytes")
        except ValidationError:
            self.errors += 1
            raise
        return int(n)

    def upload(self, line: bytes, payload: bytes) -> bytes:
        """The reply to an ``UPLOAD`` whose ``payload`` came in full; ValidationError (counted) if it is not a
        bounded PNG/JPEG."""
        user = line.split(b" ")[1].decode("ascii")
        t0 = self.proc_clock()
        try:
            gray = decode_image(payload, MAX_UPLOAD_BYTES)
            counter, boxes = self._count(user, gray)
        except ValidationError:
            self.errors += 1
            raise
        return format_reply(counter, boxes, max(0.0, self.proc_clock() - t0))

    def upload_failed(self, reason: str) -> None:
        """An upload the connection broke off (it ended or stalled before its n bytes): one more error."""
        del reason
        self.errors += 1


class Uploads(Protocol):
    """What :class:`BoundedLineServer` needs from a service to frame ``UPLOAD`` (:class:`FaceService` has it)."""

    def upload_length(self, line: bytes) -> int | None: ...

    def upload(self, line: bytes, payload: bytes) -> bytes: ...

    def upload_failed(self, reason: str) -> None: ...


@dataclass(slots=True)
class _Upload:
    line: bytes
    n_bytes: int
    last_s: float  # when its last bytes came (for UPLOAD_STALL_S)


class BoundedLineServer(LineServer):
    """:class:`LineServer` with its own line bound, sized for an image upload, a connection bound and, with
    ``uploads``, the framing of ``UPLOAD user n`` + n raw bytes.

    A line longer than ``max_line_bytes`` does not close the connection (as the base loop does): it is read to
    its newline without being kept and answered with one ``ERR`` line in its place, so a client's replies stay
    in request order. Buffered bytes per connection stay below ``max_line_bytes`` plus one receive, or the
    announced upload length (at most MAX_UPLOAD_BYTES, checked before any byte of it is kept) plus one
    receive. A failed upload is answered with its ``ERR`` line and the connection closed (module doc).
    """

    def __init__(self, host: str, port: int, handler: Handler, *, max_line_bytes: int = MAX_LINE_BYTES,
                 max_connections: int = MAX_CONNECTIONS, uploads: Uploads | None = None,
                 clock: Callable[[], float] = time.monotonic, stall_s: float = UPLOAD_STALL_S) -> None:
        super().__init__(host, port, handler, tick=self.expire_stalled, tick_s=1.0)
        self.max_line_bytes = max_line_bytes
        self.max_connections = max_connections
        self.uploads = uploads
        self.clock = clock
        self.stall_s = stall_s
        self._skipping: set[socket.socket] = set()
        self._pending: dict[socket.socket, _Upload] = {}

    def _accept(self) -> None:
        if len(self.buffers) < self.max_connections:
            super()._accept()
            return
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.close()

    def _close(self, conn: socket.socket) -> None:
        self._skipping.discard(conn)
        self._pending.pop(conn, None)
        super()._close(conn)

    def _fail(self, conn: socket.socket, replies: bytearray, reason: str) -> None:
        """Answer what came before, then the failed upload's ERR line, and close the connection."""
        if self.uploads is not None:
            self.uploads.upload_failed(reason)
        replies += b"ERR " + " ".join(reason.split()).encode("ascii", "replace") + b"\n"
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.settimeout(1.0)  # a client that reads nothing must not hold the loop
            conn.sendall(self.outbox.get(conn, b"") + replies)
        self._close(conn)

    def expire_stalled(self, now: float) -> None:
        """Drop the uploads whose bytes stopped coming (the tick of the base loop; ``now`` is its clock, the
        stall is measured on ``self.clock``)."""
        del now
        t = self.clock()
        for conn, up in list(self._pending.items()):
            if t - up.last_s > self.stall_s:
                self._fail(conn, bytearray(), f"upload: {len(self.buffers.get(conn, b''))} of {up.n_bytes} bytes "
                                              f"came, then nothing for {self.stall_s:g} s")

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        buf = self.buffers[conn]
        if not data:  # the client closed (or half-closed) its side
            up = self._pending.get(conn)
            if up is not None:
                self._fail(conn, bytearray(), f"upload: connection ended after {len(buf)} of {up.n_bytes} bytes")
            else:
                self._close(conn)
            return
        buf += data
        replies = bytearray()
        too_long = f"ERR request: line longer than {self.max_line_bytes} bytes\n".encode()
        while True:
            up = self._pending.get(conn)
            if up is not None:
                up.last_s = self.clock()
                if len(buf) < up.n_bytes:
                    break
                payload = bytes(buf[: up.n_bytes])
                del buf[: up.n_bytes]
                del self._pending[conn]
                assert self.uploads is not None
                try:
                    replies += self.uploads.upload(up.line, payload) + b"\n"
                except ValidationError as exc:
                    self._fail(conn, replies, str(exc))
                    return
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if conn in self._skipping or len(line) > self.max_line_bytes:
                self._skipping.discard(conn)
                replies += too_long
                continue
            try:
                n = self.uploads.upload_length(line) if self.uploads is not None else None
            except ValidationError as exc:
                self._fail(conn, replies, str(exc))
                return
            if n is None:
                replies += self.handler(line) + b"\n"
            else:
                self._pending[conn] = _Upload(line, n, self.clock())
        if conn not in self._pending:
            if len(buf) > self.max_line_bytes:
                self._skipping.add(conn)
            if conn in self._skipping:
                buf.clear()
        if replies:
            self._send(conn, replies)


def single_threaded_exec(module: str, argv: list[str]) -> None:
    """Re-execute ``module`` with OpenBLAS pinned to one thread, unless it already is (see the module doc)."""
    if os.environ.get("OPENBLAS_NUM_THREADS") == "1":
        return
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def serve(name: str, doc: str, argv: list[str] | None, default_port: int, default_resident_mb: float,
          make_service: Callable[[argparse.Namespace], FaceService]) -> int:
    """The command line and server loop of a detection service (this one and :mod:`.platedetect`)."""
    ap = argparse.ArgumentParser(prog=f"python -m edgemigrate.workloads.{name}", description=doc.split("\n")[0])
    ap.add_argument("--host", default="0.0.0.0", help="address to bind (the service IP)")
    ap.add_argument("--port", type=int, default=default_port)
    ap.add_argument("--resident-mb", type=float, default=default_resident_mb,
                    help="MB of mostly static memory standing in for model weights and buffers")
    ap.add_argument("--seed", type=int, default=0, help="seed of the resident memory's content (and images)")
    ap.add_argument("--max-users", type=int, default=MAX_USERS, help="users with a counter, at most")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    cv2.ocl.setUseOpenCL(False)
    service = make_service(args)
    server = BoundedLineServer(args.host, args.port, service.handle, uploads=service)
    print(f"{name} listening on {args.host}:{server.port} resident_bytes={service.memory.size_bytes} "
          f"threads={len(os.listdir('/proc/self/task'))}", flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve("facedetect", __doc__ or "", argv, DEFAULT_PORT, DEFAULT_RESIDENT_MB,
                 lambda a: FaceService(FaceDetector(), bundled_images(), a.resident_mb, a.seed, a.max_users))


if __name__ == "__main__":
    single_threaded_exec("edgemigrate.workloads.facedetect", sys.argv[1:])
    sys.exit(main())
