"""Real-time licence-plate recognition (OpenCV's bundled plate Haar cascade) with a counter per user.

It stands in for the alpr service of Maheshwari et al. 2018 (ShareOn, sec. III and IV-D): a real-time
recognition service whose total delay grows with the load of the node that runs it, so that a node can see
its delay cross the application threshold and migrate the container away. Each ``DETECT`` request runs
``haarcascade_russian_plate_number.xml`` (shipped with ``opencv-python-headless`` under
``cv2.data.haarcascades``) on a generated street scene or on a PNG/JPEG the client sends, and increments that
user's counter: the counters are the state a migration must carry. The processing time grows with the
node's CPU load because it is real CPU work on one thread: a loaded node gives this process a smaller share.

What differs from :mod:`edgemigrate.workloads.facedetect` (whose bounded line server, image header checks,
base64 bound and request dispatch this module reuses, not copies): the cascade and its settings, generated
images instead of a bundled photograph, and the processing time of each request, measured here (wall clock
of the detection: it includes the time the process waited for a CPU, which is what a loaded node adds) and
reported by ``STATS`` as the mean of the last :data:`TIMING_WINDOW` requests - the per-request processing
time the host agent's resource report carries (:mod:`edgemigrate.control.reports`).

Protocol: that of facedetect (``DETECT user [image]`` -> ``<counter> <plates> [x,y,w,h ...]``, ``GET``,
``USERS``, ``IMAGES``, ``DIGEST``, ``PING``), with ``STATS`` ->
``{"users", "requests", "errors", "plates", "resident_bytes", "processing_s_mean", "processing_s_last",
"timed", "cpu_s_mean"}`` (``cpu_s_mean``: the CPU time of those detections - what a request costs whatever the
load; ``processing_s_mean`` is that plus the waiting a loaded node adds). Run: ``python -m edgemigrate.workloads.platedetect --host 10.77.2.0 --port 7003``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable

import cv2
import numpy as np

from edgemigrate.workloads.facedetect import (
    MAX_USERS,
    Box,
    FaceDetector,
    FaceService,
    serve,
    single_threaded_exec,
)

DEFAULT_PORT = 7003
DEFAULT_RESIDENT_MB = 0.0
CASCADE_FILE = "haarcascade_russian_plate_number.xml"
# 1.1 / 5 / 40 x 12 px: finds the plate of every generated scene once and nothing in the plate-less one
# (checked by the tests); minNeighbors 3 finds the same plates at twice the time
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_PLATE_PX = (40, 12)
TIMING_WINDOW = 8  # STATS reports the mean processing time of this many recent requests
DEFAULT_IMAGE = "street"
# (width, height, plate box or None) of the generated scenes; "street" is the default request
SCENES: dict[str, tuple[int, int, Box | None]] = {
    "street": (640, 480, Box(240, 300, 160, 36)),
    "street-small": (320, 240, Box(100, 150, 120, 28)),
    "street-empty": (640, 480, None),
}
PLATE_TEXT = "A123BC"


def generate_scene(width: int, height: int, plate: Box | None, seed: int = 0) -> np.ndarray:
    """A grey street-like scene (blurred noise), a dark car body and, if ``plate``, a white plate with black
    characters there: an 8-bit grayscale image, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(110, 25, (height, width)).clip(0, 255).astype(np.uint8), (5, 5), 0)
    cv2.rectangle(img, (width * 15 // 64, height * 5 // 16), (width * 49 // 64, height * 5 // 6), 60, -1)
    if plate is not None:
        x, y, w, h = plate.x, plate.y, plate.w, plate.h
        cv2.rectangle(img, (x, y), (x + w, y + h), 235, -1)
        cv2.rectangle(img, (x, y), (x + w, y + h), 20, 2)
        scale = h / 36
        cv2.putText(img, PLATE_TEXT, (x + round(8 * scale), y + round(29 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, 15, max(1, round(3 * scale)))
    img.flags.writeable = False
    return img


def generated_images(seed: int = 0) -> dict[str, np.ndarray]:
    return {name: generate_scene(w, h, box, seed) for name, (w, h, box) in SCENES.items()}


class PlateDetector(FaceDetector):
    """The plate cascade, loaded once, with the plate settings; it times each detection (the wall clock of
    the cascade: the time this process waited for a CPU is in it, which is what a loaded node adds)."""

    scale_factor = SCALE_FACTOR
    min_neighbors = MIN_NEIGHBORS
    min_size_px = MIN_PLATE_PX

    def __init__(self, cascade_path: str | None = None, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        super().__init__(cascade_path or os.path.join(cv2.data.haarcascades, CASCADE_FILE))
        self.clock, self.cpu_clock = clock, cpu_clock
        self.timings: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.cpu_timings: deque[float] = deque(maxlen=TIMING_WINDOW)

    def detect(self, gray: np.ndarray) -> tuple[Box, ...]:
        t0, c0 = self.clock(), self.cpu_clock()
        boxes = super().detect(gray)
        self.timings.append(max(0.0, self.clock() - t0))
        self.cpu_timings.append(max(0.0, self.cpu_clock() - c0))
        return boxes


class PlateService(FaceService):
    """Facedetect's service (dispatch, bounds, counters, digest) with the plate detector, the generated
    scenes and the processing time in ``STATS``."""

    default_image = DEFAULT_IMAGE
    detector: PlateDetector

    def __init__(self, detector: PlateDetector, images: dict[str, np.ndarray], resident_mb: float = 0.0,
                 seed: int = 0, max_users: int = MAX_USERS) -> None:
        super().__init__(detector, images, resident_mb, seed, max_users)

    def stats(self) -> dict[str, float | int]:
        timings, cpu = self.detector.timings, self.detector.cpu_timings
        return {"users": len(self.counters), "requests": self.requests, "errors": self.errors,
                "plates": self.faces, "resident_bytes": self.memory.size_bytes,
                "processing_s_mean": sum(timings) / len(timings) if timings else 0.0,
                "processing_s_last": timings[-1] if timings else 0.0, "timed": len(timings),
                "cpu_s_mean": sum(cpu) / len(cpu) if cpu else 0.0}

    def _dispatch(self, line: bytes) -> bytes:
        if line.strip().upper() == b"STATS":
            return json.dumps(self.stats()).encode()
        return super()._dispatch(line)


def main(argv: list[str] | None = None) -> int:
    return serve("platedetect", __doc__ or "", argv, DEFAULT_PORT, DEFAULT_RESIDENT_MB,
                 lambda a: PlateService(PlateDetector(), generated_images(a.seed), a.resident_mb, a.seed, a.max_users))


if __name__ == "__main__":
    single_threaded_exec("edgemigrate.workloads.platedetect", sys.argv[1:])
    sys.exit(main())
