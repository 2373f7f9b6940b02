"""Resident memory for the test services: a block of real, non-zero, mostly static pages.

The block is filled from a seeded generator, so its content is known (and checkable after a migration), and every
page is different (no page or block repeats, so deduplicating or long-window compressors gain nothing a real heap
would not give them): a ``random_fraction`` of each page is random bytes, the rest a short page-specific pattern,
so general-purpose codecs compress it about 1 / random_fraction times - about what real process memory gives
(measured on a 322 MiB Python heap: lz4 3.1x, zstd 5.6x). Every page is touched, so the kernel really backs it
with RAM and CRIU really dumps it (zero pages are not dumped). ``dirty(n)`` rewrites ``n`` pages (round-robin,
stamped with a generation counter) to emulate a writing workload at a chosen dirty rate.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgemigrate.core.seeding import SeedTree

PAGE_BYTES = 4096
MiB = 1 << 20


class ResidentMemory:
    def __init__(self, size_mb: float, seed: int = 0, random_fraction: float = 1 / 3) -> None:
        if size_mb < 0:
            raise ValueError(f"resident size must be >= 0 MB, got {size_mb}")
        if not 0.0 < random_fraction <= 1.0:
            raise ValueError(f"random_fraction must be in (0, 1], got {random_fraction}")
        n_pages = int(size_mb * MiB) // PAGE_BYTES
        self.n_pages = n_pages
        rng = SeedTree(seed).rng("services/resident")
        pages = np.empty((n_pages, PAGE_BYTES), dtype=np.uint8)
        n_rand = max(16, int(PAGE_BYTES * random_fraction))
        pages[:, :n_rand] = rng.integers(1, 256, size=(n_pages, n_rand), dtype=np.uint8)  # no zero bytes
        pattern = (np.arange(n_pages, dtype=np.uint64)[:, None] * 2654435761 >> np.arange(0, 64, 8, dtype=np.uint64))
        pattern = (pattern & 0xFF).astype(np.uint8) | 1  # 8 page-specific non-zero bytes, repeated
        reps = -(-(PAGE_BYTES - n_rand) // 8)
        pages[:, n_rand:] = np.tile(pattern, (1, reps))[:, : PAGE_BYTES - n_rand]
        self.data = bytearray(pages.tobytes())
        self.generation = 0
        self.cursor = 0
        self.pages_dirtied = 0

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def dirty(self, n_pages: int) -> None:
        """Rewrite ``n_pages`` pages (the first 16 bytes of each: enough to change the page's content)."""
        if self.n_pages == 0:
            return
        for _ in range(n_pages):
            off = self.cursor * PAGE_BYTES
            self.generation += 1
            self.data[off : off + 16] = self.generation.to_bytes(16, "little")
            self.cursor = (self.cursor + 1) % self.n_pages
            self.pages_dirtied += 1

    def digest(self) -> str:
        return hashlib.blake2b(self.data, digest_size=16).hexdigest()
