from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemigrate.engine.codecs import CorruptDataError
from edgemigrate.engine.codecs.wkdm import (
    HEADER_SIZE_BYTES,
    PAGE_SIZE_BYTES,
    max_compressed_size,
    warm_up,
    wkdm_compress,
    wkdm_decompress,
)


def _structured_pages(rng: np.random.Generator, n_pages: int) -> bytes:
    """Pages that look like heap memory: pointers sharing high bits, small integers, zeros, repeats."""
    words = np.zeros((n_pages, 1024), dtype=np.uint32)
    bases = rng.integers(0, 1 << 22, size=(n_pages, 1), dtype=np.uint32) << 10
    kind = rng.integers(0, 4, size=(n_pages, 1024))
    words[kind == 1] = (bases + rng.integers(0, 1024, size=(n_pages, 1024), dtype=np.uint32))[kind == 1]
    words[kind == 2] = rng.integers(0, 64, size=(n_pages, 1024), dtype=np.uint32)[kind == 2]
    words[kind == 3] = rng.integers(0, 1 << 32, size=(n_pages, 1024), dtype=np.uint32)[kind == 3]
    return words.astype("<u4").tobytes()


IMPLS = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=3 * PAGE_SIZE_BYTES + 77))
def test_round_trip_arbitrary_bytes(impl: str, data: bytes) -> None:
    out = wkdm_compress(data, impl=impl)
    assert len(out) <= max_compressed_size(len(data))
    assert wkdm_decompress(out, len(data), impl=impl) == data


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_pages=st.integers(1, 40),
    vocab=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
)
def test_round_trip_structured_pages(seed: int, n_pages: int, vocab: list[int]) -> None:
    rng = np.random.default_rng(seed)
    pages = bytearray(_structured_pages(rng, n_pages))
    # overwrite a random page with words drawn from a small vocabulary (dictionary hits and collisions)
    p = int(rng.integers(0, n_pages))
    pick = np.asarray(vocab, dtype=np.uint32)[rng.integers(0, len(vocab), size=1024)]
    pages[p * PAGE_SIZE_BYTES : (p + 1) * PAGE_SIZE_BYTES] = pick.astype("<u4").tobytes()
    data = bytes(pages)
    streams = {impl: wkdm_compress(data, impl=impl) for impl in IMPLS}
    assert len(set(streams.values())) == 1  # numba and NumPy produce identical bytes
    for impl in IMPLS:
        assert wkdm_decompress(streams[impl], len(data), impl=impl) == data


@pytest.mark.parametrize("impl", IMPLS)
def test_tags_and_sizes_match_the_algorithm(impl: str) -> None:
    # page 0: all zero -> only tags; page 1: one value repeated -> 1 miss then exact hits;
    # page 2: same high bits, varying low bits -> 1 miss then partial matches.
    words = np.zeros((3, 1024), dtype=np.uint32)
    words[1] = 0xDEADBEEF
    words[2] = (0x12345 << 10) + (np.arange(1024, dtype=np.uint32) % 1024)
    data = words.astype("<u4").tobytes()
    out = wkdm_compress(data, impl=impl)
    n_index = 1023 + 1023  # exact hits of page 1 + partial hits of page 2
    n_low = 1023
    n_full = 2
    expected = HEADER_SIZE_BYTES + 3 * 256 + (n_index + 1) // 2 + (n_low + 3) // 4 * 5 + 4 * n_full
    assert len(out) == expected
    assert wkdm_decompress(out, len(data)) == data
    tags = np.frombuffer(out[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + 768], dtype=np.uint8)
    assert (tags[:256] == 0).all()  # ZERO tags
    assert tags[256] & 3 == 2 and ((tags[256] >> 2) & 3) == 3  # MISS then EXACT
    assert tags[512] & 3 == 2 and ((tags[512] >> 2) & 3) == 1  # MISS then PARTIAL


def test_zero_words_do_not_touch_the_dictionary() -> None:
    # X, 0, X: the second X must be an EXACT hit (the zero did not evict X).
    words = np.zeros(1024, dtype=np.uint32)
    words[0] = words[2] = 0xCAFEF00D
    out = wkdm_compress(words.tobytes())
    tag_byte = out[HEADER_SIZE_BYTES]
    assert [(tag_byte >> (2 * k)) & 3 for k in range(3)] == [2, 0, 3]


@pytest.mark.parametrize("impl", IMPLS)
def test_corrupt_streams_are_rejected(impl: str) -> None:
    rng = np.random.default_rng(3)
    data = _structured_pages(rng, 4)
    out = bytearray(wkdm_compress(data, impl=impl))
    with pytest.raises(CorruptDataError):
        wkdm_decompress(bytes(out[:-1]), len(data), impl=impl)
    bad_magic = bytearray(out)
    bad_magic[0:4] = b"XXXX"
    with pytest.raises(CorruptDataError):
        wkdm_decompress(bytes(bad_magic), len(data), impl=impl)
    # flip a tag so the tag counts no longer match the header
    flipped = bytearray(out)
    flipped[HEADER_SIZE_BYTES] ^= 0b01
    with pytest.raises(CorruptDataError):
        wkdm_decompress(bytes(flipped), len(data), impl=impl)
    with pytest.raises(ValueError):
        wkdm_compress(data, impl="fortran")


def test_warm_up_reports_the_implementation() -> None:
    assert warm_up() is ("numba" in IMPLS)
