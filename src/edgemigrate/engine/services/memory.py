"""Resident memory for the test services: a block of real, non-zero, mostly static pages.

The block is filled from a seeded generator, so its content is known (and checkable after a migration), and
every page is touched, so the kernel really backs it with RAM and CRIU really dumps it (zero pages are not
dumped). ``dirty(n)`` rewrites ``n`` pages (round-robin, stamped with a generation counter) to emulate a
writing workload at a chosen dirty rate.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgemigrate.core.seeding import SeedTree

PAGE_BYTES = 4096
MiB = 1 << 20


class ResidentMemory:
    def __init__(self, size_mb: float, seed: int = 0) -> None:
        if size_mb < 0:
            raise ValueError(f"resident size must be >= 0 MB, got {size_mb}")
        n_pages = int(size_mb * MiB) // PAGE_BYTES
        self.n_pages = n_pages
        rng = SeedTree(seed).rng("services/resident")
        block = rng.integers(1, 256, size=MiB, dtype=np.uint8).tobytes()  # no zero bytes
        reps, rest = divmod(n_pages * PAGE_BYTES, MiB)
        self.data = bytearray(block * reps + block[:rest])
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
