"""Unit constants. Quantities carry their unit in their name (``size_bytes``, ``rate_bps``)."""

from __future__ import annotations

KB = 1_000
MB = 1_000_000
GB = 1_000_000_000
MiB = 1 << 20
GiB = 1 << 30
BITS_PER_BYTE = 8
MBIT = 1_000_000  # bits per second in one Mbit/s
GHZ = 1_000_000_000
EARTH_RADIUS_M = 6_371_008.8


def mbit_to_bps(mbit: float) -> float:
    return mbit * MBIT


def bytes_to_bits(n_bytes: float) -> float:
    return n_bytes * BITS_PER_BYTE
