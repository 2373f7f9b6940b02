"""Seeding: one root seed -> named, independent child generators.

Every random draw in a run comes from a generator obtained here, so a run is fully determined by
its seed and two runs (or two simulators in one process) never share a random stream.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


class SeedTree:
    """A root seed from which named child generators are spawned deterministically.

    ``SeedTree(7).rng("mobility")`` always yields the same stream, independent of the order in which
    other names are requested (the name is hashed into the spawn key, unlike ``SeedSequence.spawn``).
    """

    __slots__ = ("seed",)

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    def sequence(self, name: str) -> np.random.SeedSequence:
        return np.random.SeedSequence(entropy=self.seed, spawn_key=(_name_key(name),))

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng(self.sequence(name))

    def child(self, name: str) -> SeedTree:
        """A sub-tree (e.g. per episode) whose seed derives from this one and ``name``."""
        return SeedTree(int(self.sequence(name).generate_state(1, dtype=np.uint64)[0] >> 1))
