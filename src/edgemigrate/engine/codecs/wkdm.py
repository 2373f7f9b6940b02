"""WKdm: the Wilson-Kaplan direct-mapped memory-page compressor, vectorised over many pages.

Zhang et al. 2019 (sec. V-B) compress the CRIU memory pages (``pages-*.img``) with WKdm [Wilson, Kaplan &
Smaragdakis, "The Case for Compressed Caching in Virtual Memory Systems", USENIX 1999] and everything
else with lz4. This is WKdm written from that algorithm:

* a page is 1024 little-endian 32-bit words; each page has its own 16-entry direct-mapped dictionary of
  recently seen words, preloaded with the value 1 (as the reference implementation does);
* a word's dictionary slot is a hash of its high 22 bits, so a word and every word sharing its high bits
  map to the same slot;
* each word gets a 2-bit tag: ``ZERO`` (word is 0; dictionary untouched), ``EXACT`` (slot holds the word:
  emit the 4-bit slot index), ``PARTIAL`` (slot holds a word with the same high 22 bits: emit the slot
  index and the low 10 bits, store the word in the slot) or ``MISS`` (emit the full 32-bit word, store it).

Stream layout (all little-endian; counts are also derivable from the tags and are cross-checked)::

    header  "WKDM" | u8 version=1 | u8 0 | u16 tail_bytes | u32 n_pages | u32 n_index | u32 n_low | u32 n_full
    tags    n_pages * 256 bytes: four 2-bit tags per byte, word k of a page in bits 2*(k%4)
    index   ceil(n_index/2) bytes: 4-bit slot indices of EXACT/PARTIAL words, two per byte, low nibble first
    low     ceil(n_low/4)*5 bytes: 10-bit low parts of PARTIAL words, four per 5 bytes (40 bits)
    full    n_full * 4 bytes: the MISS words
    tail    the last ``len(data) % 4096`` input bytes, stored raw

Records appear in page order then word order. Because every page's dictionary is independent, the
sequential dependency runs only along the 1024 words of a page: the encoder and decoder step through the
word positions once and process *all pages of a batch at once* with NumPy vector operations (a gather
and a scatter per step), and derive tags and packed sections with whole-array operations. The zero
words of a page are pointed at a 17th scratch slot so the inner step needs no branch.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.engine.codecs.registry import CodecSpec, CorruptDataError, register_codec

PAGE_SIZE_BYTES = 4096
WORDS_PER_PAGE = PAGE_SIZE_BYTES // 4
DICT_SLOTS = 16
_SCRATCH = DICT_SLOTS  # 17th slot per page, written by zero words, never read for a result
_DICT_PRELOAD = 1
LOW_BITS = 10
_HIGH_MASK = np.uint32(0xFFFFFFFF ^ ((1 << LOW_BITS) - 1))
_LOW_MASK = np.uint32((1 << LOW_BITS) - 1)
_HASH_MUL = np.uint32(0x9E3779B1)  # Fibonacci hashing of the 22 high bits -> 4-bit slot

TAG_ZERO, TAG_PARTIAL, TAG_MISS, TAG_EXACT = 0, 1, 2, 3

_MAGIC = b"WKDM"
_VERSION = 1
_HEADER = struct.Struct("<4sBBHIIII")
HEADER_SIZE_BYTES = _HEADER.size
_BATCH_PAGES = 2048


def _slot_of(words: NDArray[np.uint32]) -> NDArray[np.uint8]:
    """Dictionary slot (0..15) of each word: a multiplicative hash of its high 22 bits."""
    return ((words >> np.uint32(LOW_BITS)) * _HASH_MUL >> np.uint32(28)).astype(np.uint8)


def _transpose(a: NDArray[Any]) -> NDArray[Any]:
    """C-contiguous transpose of a 2-D array, copied in slabs of 64 rows (about 4x faster than
    ``np.ascontiguousarray(a.T)`` on 8 MiB arrays, which strides through memory cache-unfriendly)."""
    rows, cols = a.shape
    out = np.empty((cols, rows), dtype=a.dtype)
    for r in range(0, rows, 64):
        out[:, r : r + 64] = a[r : r + 64].T
    return out


_KEEP_BY_TAG = np.array([0, 0xFFFFFFFF ^ ((1 << LOW_BITS) - 1), 0, 0xFFFFFFFF], dtype=np.uint32)


def max_compressed_size(raw_size_bytes: int) -> int:
    """Worst-case output size (every word a MISS): used to bound what a receiver accepts."""
    n_pages, tail = divmod(raw_size_bytes, PAGE_SIZE_BYTES)
    return HEADER_SIZE_BYTES + n_pages * (PAGE_SIZE_BYTES // 16 + PAGE_SIZE_BYTES) + tail


def _encode_batch(
    words: NDArray[np.uint32],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint16], NDArray[np.uint32]]:
    """Encode ``words`` of shape (n, 1024). Returns (tags (n,1024), slot indices, low parts, full words)."""
    n = words.shape[0]
    wt = _transpose(words)  # (1024, n): one row per word position, pages along the row
    nonzero = (wt != 0).view(np.uint8)
    slot = _slot_of(wt)  # slot_of(0) == 0, so adding 16 sends exactly the zero words to the scratch slot
    ix = (slot + ((np.uint8(1) - nonzero) << np.uint8(4))).astype(np.intp)
    ix *= n
    ix += np.arange(n, dtype=np.intp)  # flat index into dictf[(slot, page)]
    dictf = np.full((DICT_SLOTS + 1) * n, _DICT_PRELOAD, dtype=np.uint32)
    seen = np.empty_like(wt)
    for j in range(WORDS_PER_PAGE):  # the one sequential dimension: word position within a page
        ixj = ix[j]
        np.take(dictf, ixj, out=seen[j])
        dictf[ixj] = wt[j]
    # tag = MISS(2) + 1 if the whole word matched (EXACT 3) - 1 if only the high 22 bits did (PARTIAL 1);
    # times 0 for zero words (ZERO 0).
    x = seen ^ wt
    tags_t = (x == 0).view(np.uint8) << np.uint8(1)
    tags_t += np.uint8(TAG_MISS)
    tags_t -= (x <= _LOW_MASK).view(np.uint8)
    tags_t *= nonzero
    tags = _transpose(tags_t)  # back to page-major
    has_index = (tags & np.uint8(1)).view(bool)  # EXACT (3) and PARTIAL (1) are the odd tags
    slots = _transpose(slot)[has_index]
    lows = (words[tags == TAG_PARTIAL] & _LOW_MASK).astype(np.uint16)
    fulls = words[tags == TAG_MISS]
    return tags, slots, lows, fulls


def _pack_tags(tags: NDArray[np.uint8]) -> NDArray[np.uint8]:
    t = tags.reshape(-1, 4)
    return (t[:, 0] | (t[:, 1] << 2) | (t[:, 2] << 4) | (t[:, 3] << 6)).astype(np.uint8)


def _unpack_tags(packed: NDArray[np.uint8]) -> NDArray[np.uint8]:
    out = np.empty((packed.size, 4), dtype=np.uint8)
    for k in range(4):
        out[:, k] = (packed >> (2 * k)) & 3
    return out.reshape(-1)


def _pack_nibbles(vals: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if vals.size % 2:
        vals = np.concatenate([vals, np.zeros(1, np.uint8)])
    return (vals[0::2] | (vals[1::2] << 4)).astype(np.uint8)


def _unpack_nibbles(packed: NDArray[np.uint8], count: int) -> NDArray[np.uint8]:
    out = np.empty(packed.size * 2, dtype=np.uint8)
    out[0::2] = packed & 15
    out[1::2] = packed >> 4
    return out[:count]


def _pack_low10(vals: NDArray[np.uint16]) -> NDArray[np.uint8]:
    pad = (-vals.size) % 4
    v = np.concatenate([vals, np.zeros(pad, np.uint16)]).astype(np.uint64).reshape(-1, 4)
    x = v[:, 0] | (v[:, 1] << np.uint64(10)) | (v[:, 2] << np.uint64(20)) | (v[:, 3] << np.uint64(30))
    return np.ascontiguousarray(x.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :5]).reshape(-1)


def _unpack_low10(packed: NDArray[np.uint8], count: int) -> NDArray[np.uint32]:
    b = np.zeros((packed.size // 5, 8), dtype=np.uint8)
    b[:, :5] = packed.reshape(-1, 5)
    x = b.reshape(-1).view("<u8")
    out = np.empty((x.size, 4), dtype=np.uint32)
    for k in range(4):
        out[:, k] = (x >> np.uint64(10 * k)) & np.uint64(0x3FF)
    return out.reshape(-1)[:count]


def _jit() -> Any:
    """The compiled kernels (:mod:`.wkdm_jit`) or ``None`` if numba is not installed."""
    global _JIT
    with _JIT_LOCK:  # worker threads may ask at the same moment; import (and numba start-up) happens once
        if _JIT is None:
            try:
                from edgemigrate.engine.codecs import wkdm_jit

                _JIT = wkdm_jit
            except ImportError:  # numba missing: the NumPy path below is complete on its own
                _JIT = False
    return _JIT or None


_JIT: Any = None
_JIT_LOCK = threading.Lock()


def warm_up() -> bool:
    """Import numba and load (or compile) the WKdm kernels now, not on the first chunk of a migration.

    Takes about a second on a fresh process (numba start-up plus the on-disk kernel cache; the first run
    after an install compiles for a few seconds). Agents call it at start-up. Returns whether the
    compiled kernels are in use.
    """
    page = np.arange(WORDS_PER_PAGE, dtype="<u4").tobytes()
    if wkdm_decompress(wkdm_compress(page), len(page)) != page:
        raise RuntimeError("wkdm self-test failed")
    return _jit() is not None


def wkdm_compress(data: bytes | bytearray | memoryview, impl: str = "auto") -> bytes:
    """Compress ``data`` page by page (4096-byte pages; a trailing partial page is stored raw).

    ``impl``: ``"numba"`` (compiled, releases the GIL), ``"numpy"`` (vectorised over pages), or
    ``"auto"`` (numba when installed). Both produce identical bytes.
    """
    buf = memoryview(data).cast("B")
    n_pages, tail = divmod(len(buf), PAGE_SIZE_BYTES)
    all_words = np.frombuffer(buf, dtype="<u4", count=n_pages * WORDS_PER_PAGE).reshape(
        n_pages, WORDS_PER_PAGE
    )
    jit = _choose(impl)
    if jit is not None:
        tags_p, nib, low_p, fulls, n_index, n_low = jit.encode(all_words)
        header = _HEADER.pack(_MAGIC, _VERSION, 0, tail, n_pages, n_index, n_low, fulls.size)
        tail_bytes = bytes(buf[n_pages * PAGE_SIZE_BYTES :])
        return b"".join(
            [
                header,
                tags_p.tobytes(),
                nib.tobytes(),
                low_p.tobytes(),
                fulls.astype("<u4").tobytes(),
                tail_bytes,
            ]
        )
    tag_parts, slot_parts, low_parts, full_parts = [], [], [], []
    for start in range(0, n_pages, _BATCH_PAGES):
        tags, slots, lows, fulls = _encode_batch(all_words[start : start + _BATCH_PAGES])
        tag_parts.append(_pack_tags(tags.reshape(-1)))
        slot_parts.append(slots)
        low_parts.append(lows)
        full_parts.append(fulls)
    slots_all = np.concatenate(slot_parts) if slot_parts else np.zeros(0, np.uint8)
    lows_all = np.concatenate(low_parts) if low_parts else np.zeros(0, np.uint16)
    fulls_all = np.concatenate(full_parts) if full_parts else np.zeros(0, np.uint32)
    header = _HEADER.pack(_MAGIC, _VERSION, 0, tail, n_pages, slots_all.size, lows_all.size, fulls_all.size)
    return b"".join(
        [
            header,
            *(p.tobytes() for p in tag_parts),
            _pack_nibbles(slots_all).tobytes(),
            _pack_low10(lows_all).tobytes(),
            fulls_all.astype("<u4").tobytes(),
            bytes(buf[n_pages * PAGE_SIZE_BYTES :]),
        ]
    )


def _choose(impl: str) -> Any:
    if impl == "numpy":
        return None
    jit = _jit()
    if impl == "numba" and jit is None:
        raise ModuleNotFoundError("wkdm impl='numba' needs numba installed")
    if impl not in ("auto", "numba"):
        raise ValueError(f"wkdm impl must be 'auto', 'numba' or 'numpy', got {impl!r}")
    return jit


def _tag_lut(pred: Any) -> NDArray[np.int64]:
    """For each packed tag byte 0..255: how many of its four 2-bit tags satisfy ``pred``."""
    tags = (np.arange(256)[:, None] >> (2 * np.arange(4))[None, :]) & 3
    return pred(tags).sum(axis=1).astype(np.int64)


_TAG_IS_INDEX = _tag_lut(lambda t: (t == TAG_EXACT) | (t == TAG_PARTIAL))
_TAG_IS_PARTIAL = _tag_lut(lambda t: t == TAG_PARTIAL)
_TAG_IS_MISS = _tag_lut(lambda t: t == TAG_MISS)


@dataclass(frozen=True, slots=True)
class _Layout:
    n_pages: int
    tail_bytes: int
    n_index: int
    n_low: int
    n_full: int

    @property
    def raw_size_bytes(self) -> int:
        return self.n_pages * PAGE_SIZE_BYTES + self.tail_bytes

    def section_sizes(self) -> tuple[int, int, int, int, int]:
        return (
            self.n_pages * (WORDS_PER_PAGE // 4),
            (self.n_index + 1) // 2,
            (self.n_low + 3) // 4 * 5,
            self.n_full * 4,
            self.tail_bytes,
        )


def _parse_header(buf: memoryview, raw_size_bytes: int) -> _Layout:
    if len(buf) < HEADER_SIZE_BYTES:
        raise CorruptDataError(f"wkdm: {len(buf)} bytes is shorter than the {HEADER_SIZE_BYTES}-byte header")
    magic, version, _, tail, n_pages, n_index, n_low, n_full = _HEADER.unpack_from(buf)
    if magic != _MAGIC or version != _VERSION:
        raise CorruptDataError(f"wkdm: bad magic/version {magic!r}/{version}")
    lay = _Layout(n_pages, tail, n_index, n_low, n_full)
    if tail >= PAGE_SIZE_BYTES or lay.raw_size_bytes != raw_size_bytes:
        raise CorruptDataError(
            f"wkdm: header describes {lay.raw_size_bytes} raw bytes, frame declared {raw_size_bytes}"
        )
    words = n_pages * WORDS_PER_PAGE
    if n_index > words or n_low > n_index or n_full > words - n_index:
        raise CorruptDataError("wkdm: record counts exceed the number of words")
    expected = HEADER_SIZE_BYTES + sum(lay.section_sizes())
    if len(buf) != expected:
        raise CorruptDataError(f"wkdm: payload is {len(buf)} bytes, its header implies {expected}")
    return lay


def _decode_batch(
    tags: NDArray[np.uint8], slots: NDArray[np.uint8], lows: NDArray[np.uint32], fulls: NDArray[np.uint32]
) -> NDArray[np.uint32]:
    """Inverse of :func:`_encode_batch` for ``tags`` of shape (n, 1024); returns words (n, 1024)."""
    n = tags.shape[0]
    has_index = (tags == TAG_EXACT) | (tags == TAG_PARTIAL)
    is_partial = tags == TAG_PARTIAL
    is_miss = tags == TAG_MISS
    slot = np.full(tags.shape, _SCRATCH, dtype=np.uint8)
    slot[has_index] = slots
    slot[is_miss] = _slot_of(fulls)
    add = np.zeros(tags.shape, dtype=np.uint32)  # bits that come from the stream
    add[is_partial] = lows
    add[is_miss] = fulls
    tags_t = _transpose(tags)
    keep_t = _KEEP_BY_TAG[tags_t]  # bits of the dictionary word that survive, by tag
    add_t = _transpose(add)
    ix = _transpose(slot).astype(np.intp)
    ix *= n
    ix += np.arange(n, dtype=np.intp)
    dictf = np.full((DICT_SLOTS + 1) * n, _DICT_PRELOAD, dtype=np.uint32)
    out_t = np.empty((WORDS_PER_PAGE, n), dtype=np.uint32)
    for j in range(WORDS_PER_PAGE):
        ixj, oj = ix[j], out_t[j]
        np.take(dictf, ixj, out=oj)
        np.bitwise_and(oj, keep_t[j], out=oj)
        np.bitwise_or(oj, add_t[j], out=oj)
        dictf[ixj] = oj
    return _transpose(out_t)


def wkdm_decompress(data: bytes | bytearray | memoryview, raw_size_bytes: int, impl: str = "auto") -> bytes:
    """Exact inverse of :func:`wkdm_compress`; rejects any payload inconsistent with its header.

    The record counts implied by the tags are checked against the header (whose counts fixed the
    section sizes) before any record is read, so neither implementation can read out of bounds.
    """
    buf = memoryview(data).cast("B")
    lay = _parse_header(buf, raw_size_bytes)
    sizes = lay.section_sizes()
    offs = np.cumsum((HEADER_SIZE_BYTES, *sizes))
    sec = [np.frombuffer(buf[offs[i] : offs[i + 1]], dtype=np.uint8) for i in range(len(sizes))]
    jit = _choose(impl)
    if jit is not None:
        counts = jit.counts(sec[0])
    else:
        hist = np.bincount(sec[0], minlength=256)
        counts = (int(hist @ _TAG_IS_INDEX), int(hist @ _TAG_IS_PARTIAL), int(hist @ _TAG_IS_MISS))
    if counts != (lay.n_index, lay.n_low, lay.n_full):
        raise CorruptDataError("wkdm: tag counts disagree with the header")
    fulls_all = sec[3].view("<u4").astype(np.uint32)
    if jit is not None:
        raw = bytearray(lay.raw_size_bytes)  # one output buffer: the kernel writes the pages straight into it
        n_page_bytes = lay.n_pages * PAGE_SIZE_BYTES
        jit.decode(
            sec[0], sec[1], sec[2], fulls_all, lay.n_pages, np.frombuffer(raw, np.uint32, n_page_bytes // 4)
        )
        raw[n_page_bytes:] = sec[4].tobytes()
        return bytes(raw)
    tags_all = _unpack_tags(sec[0]).reshape(lay.n_pages, WORDS_PER_PAGE)
    n_idx_pp = ((tags_all == TAG_EXACT) | (tags_all == TAG_PARTIAL)).sum(axis=1)
    n_low_pp = (tags_all == TAG_PARTIAL).sum(axis=1)
    n_full_pp = (tags_all == TAG_MISS).sum(axis=1)
    slots_all = _unpack_nibbles(sec[1], lay.n_index)
    lows_all = _unpack_low10(sec[2], lay.n_low)
    ci, cl, cf = (np.concatenate([[0], np.cumsum(c)]) for c in (n_idx_pp, n_low_pp, n_full_pp))
    parts = []
    for s in range(0, lay.n_pages, _BATCH_PAGES):
        e = min(s + _BATCH_PAGES, lay.n_pages)
        words = _decode_batch(
            tags_all[s:e], slots_all[ci[s] : ci[e]], lows_all[cl[s] : cl[e]], fulls_all[cf[s] : cf[e]]
        )
        parts.append(words.astype("<u4").tobytes())
    parts.append(sec[4].tobytes())
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class WkdmCodec:
    """WKdm as a :class:`~edgemigrate.engine.codecs.registry.Codec` (single level 0). Thread-safe: no state."""

    level: int = 0
    name: str = "wkdm"
    codec_id: int = 4

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return wkdm_compress(data)

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes:
        return wkdm_decompress(data, raw_size_bytes)


register_codec(CodecSpec("wkdm", 4, 0, 0, 0, lambda level: WkdmCodec(), "WKdm page compressor (Wilson et al. 1999)"))
