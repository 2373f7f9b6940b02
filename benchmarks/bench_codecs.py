"""Codec ratio and single-core speed on a realistic memory-page image: one JSON line per codec/level.

    .venv/bin/python benchmarks/bench_codecs.py [--size-mb 128] [--image pages.img] [--codecs lz4:1,zstd:3,wkdm:0]
                                                [--out results.jsonl]

Without ``--image`` the page image is made here (:func:`edgemigrate.engine.codecs.pageimage.make_page_image`):
a Python process holding ``--size-mb`` of real heap data (dicts, strings, JSON, NumPy arrays) is dumped
with ``criu dump --leave-running`` when CRIU is available (root), else its resident private pages are
read from ``/proc/<pid>/mem``. Each line:

    {"bench": "codecs", "codec": "lz4", "level": 1, "ratio": 2.4, "compress_megabytes_per_s": 350.0,
     "decompress_megabytes_per_s": 470.0, "image_bytes": ..., "image_method": "criu", "threads": 1}

``ratio`` is input/output (bigger is better); MB/s is 10^6 bytes of input per second of one thread,
best of ``--repeats`` runs. Every run checks the round trip is exact.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edgemigrate.engine.codecs import make_codec
from edgemigrate.engine.codecs.pageimage import make_page_image

DEFAULT_CODECS = (
    "none:0,lz4:1,lz4:3,lz4:6,lz4:9,lz4:12,zstd:1,zstd:3,zstd:6,zstd:9,zstd:19,zlib:1,zlib:6,wkdm:0"
)


def measure(name: str, level: int, data: bytes, repeats: int) -> dict[str, float]:
    codec = make_codec(name, level)
    warm = data[: 1 << 16]
    codec.decompress(codec.compress(warm), len(warm))  # JIT compile / load caches outside the timing
    best_c = best_d = float("inf")
    out = b""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = codec.compress(data)
        best_c = min(best_c, time.perf_counter() - t0)
        t0 = time.perf_counter()
        back = codec.decompress(out, len(data))
        best_d = min(best_d, time.perf_counter() - t0)
        if back != data:
            raise SystemExit(f"{name}-{level}: round trip is not exact")
        del back
    return {
        "ratio": round(len(data) / len(out), 3),
        "compress_megabytes_per_s": round(len(data) / best_c / 1e6, 1),
        "decompress_megabytes_per_s": round(len(data) / best_d / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--image", type=Path, default=None, help="an existing raw page image (e.g. a CRIU pages-1.img)"
    )
    ap.add_argument("--size-mb", type=float, default=128.0, help="heap size of the process to dump")
    ap.add_argument("--no-criu", action="store_true", help="read /proc/<pid>/mem even if CRIU is available")
    ap.add_argument("--codecs", default=DEFAULT_CODECS, help="comma-separated name:level list")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=argparse.FileType("a"), default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
        if args.image is not None:
            path, method = args.image, "file"
        else:
            path = Path(tmp) / "pages.img"
            method = make_page_image(path, int(args.size_mb * 1e6), prefer_criu=not args.no_criu)
        data = path.read_bytes()
    for item in args.codecs.split(","):
        name, _, level = item.partition(":")
        row = {"bench": "codecs", "codec": name, "level": int(level or 0)}
        row.update(measure(name, int(level or 0), data, args.repeats))
        row.update({"image_bytes": len(data), "image_method": method, "threads": 1})
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            args.out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
