"""Compiled (numba) kernels for WKdm: the same algorithm and byte-identical stream as the NumPy path.

The NumPy implementation in :mod:`.wkdm` steps through the 1024 word positions of a page and handles
all pages of a batch at once; it is the reference. These kernels walk each page word by word in
machine code (``nogil=True``, so several chunks compress in parallel in a thread pool) and are used
whenever numba imports. ``tests/engine/codecs/test_wkdm.py`` checks both produce identical bytes.

Decoding trusts the record counts: :func:`edgemigrate.engine.codecs.wkdm.wkdm_decompress` checks
them against the header and the section sizes before calling :func:`decode_pages`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

_HASH_MUL = 0x9E3779B1
_LOW_MASK = 0x3FF
_HIGH_MASK = 0xFFFFFC00


@nb.njit(nogil=True, cache=True)
def _slot(w: np.uint32) -> np.int64:  # pragma: no cover - compiled
    return ((np.uint64(w >> 10) * np.uint64(_HASH_MUL)) & np.uint64(0xFFFFFFFF)) >> np.uint64(28)


@nb.njit(nogil=True, cache=True)
def encode_pages(words):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``words``: uint32[n_pages * 1024]. Returns (packed tags, packed slot nibbles, packed low10, full words,
    number of slot indices, number of low parts)."""
    n = words.size
    n_pages = n // 1024
    tags_p = np.zeros(n_pages * 256, np.uint8)
    nib = np.zeros((n + 1) // 2, np.uint8)
    lows = np.empty(n, np.uint32)
    fulls = np.empty(n, np.uint32)
    ni = 0
    nl = 0
    nf = 0
    d = np.empty(16, np.uint32)
    for p in range(n_pages):
        d[:] = 1
        base = p * 1024
        for k in range(1024):
            w = words[base + k]
            if w == 0:
                continue  # ZERO tag is 0: nothing to write
            s = _slot(w)
            e = d[s]
            if e == w:
                t = 3
            elif (e ^ w) <= _LOW_MASK:
                t = 1
                lows[nl] = w & _LOW_MASK
                nl += 1
                d[s] = w
            else:
                t = 2
                fulls[nf] = w
                nf += 1
                d[s] = w
            if t != 2:
                nib[ni >> 1] |= np.uint8(s << (4 * (ni & 1)))
                ni += 1
            tags_p[(base + k) >> 2] |= np.uint8(t << (2 * (k & 3)))
    low_p = np.zeros((nl + 3) // 4 * 5, np.uint8)
    for i in range(nl):
        bit = (i & 3) * 10
        b = (i >> 2) * 5 + (bit >> 3)
        v = np.uint32(lows[i]) << np.uint32(bit & 7)
        low_p[b] |= np.uint8(v & 0xFF)
        low_p[b + 1] |= np.uint8(v >> 8)
    return tags_p, nib[: (ni + 1) // 2].copy(), low_p, fulls[:nf].copy(), ni, nl


@nb.njit(nogil=True, cache=True)
def count_tags(tags_p):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """(EXACT + PARTIAL, PARTIAL, MISS) counts of packed 2-bit tags."""
    n_index = 0
    n_low = 0
    n_full = 0
    for i in range(tags_p.size):
        b = tags_p[i]
        for k in range(4):
            t = (b >> (2 * k)) & 3
            n_index += t & 1
            n_low += t == 1
            n_full += t == 2
    return n_index, n_low, n_full


@nb.njit(nogil=True, cache=True)
def decode_pages(tags_p, nib, low_p, fulls, n_pages, out):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Inverse of :func:`encode_pages`, writing the words into ``out`` (uint32[n_pages * 1024])."""
    d = np.empty(16, np.uint32)
    ni = 0
    nl = 0
    nf = 0
    for p in range(n_pages):
        d[:] = 1
        base = p * 1024
        for k in range(1024):
            t = (tags_p[(base + k) >> 2] >> (2 * (k & 3))) & 3
            if t == 0:
                out[base + k] = 0
            elif t == 2:
                w = fulls[nf]
                nf += 1
                d[_slot(w)] = w
                out[base + k] = w
            else:
                s = (nib[ni >> 1] >> (4 * (ni & 1))) & 15
                ni += 1
                if t == 3:
                    out[base + k] = d[s]
                else:
                    bit = (nl & 3) * 10
                    b = (nl >> 2) * 5 + (bit >> 3)
                    low = (
                        (np.uint32(low_p[b]) | (np.uint32(low_p[b + 1]) << np.uint32(8)))
                        >> np.uint32(bit & 7)
                    ) & _LOW_MASK
                    nl += 1
                    w = (d[s] & np.uint32(_HIGH_MASK)) | low
                    d[s] = w
                    out[base + k] = w


def encode(
    words: NDArray[np.uint32],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint32], int, int]:
    return encode_pages(np.ascontiguousarray(words.reshape(-1)))  # type: ignore[no-any-return]


def decode(
    tags_p: NDArray[np.uint8],
    nib: NDArray[np.uint8],
    low_p: NDArray[np.uint8],
    fulls: NDArray[np.uint32],
    n_pages: int,
    out: NDArray[np.uint32],
) -> None:
    if out.shape != (n_pages * 1024,) or out.dtype != np.uint32:
        raise ValueError("wkdm decode: output must be uint32[n_pages * 1024]")
    decode_pages(tags_p, nib, low_p, fulls, n_pages, out)


def counts(tags_p: NDArray[np.uint8]) -> tuple[int, int, int]:
    a, b, c = count_tags(tags_p)
    return int(a), int(b), int(c)
