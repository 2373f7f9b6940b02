from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgemigrate.engine.codecs import make_codec
from edgemigrate.engine.codecs.pageimage import PAGE_SIZE_BYTES, make_page_image, proc_mem_pages


def test_proc_mem_pages_of_this_process_contains_live_data() -> None:
    marker = os.urandom(16).hex().encode() * 300  # a live, resident bytes object
    pages = proc_mem_pages(os.getpid())
    assert len(pages) % PAGE_SIZE_BYTES == 0 and len(pages) > 1 << 20
    assert marker[:4096] in pages


@pytest.mark.criu
@pytest.mark.skipif(os.geteuid() != 0, reason="criu dump needs root")
@pytest.mark.skipif(shutil.which("criu") is None, reason="criu not on PATH")
def test_criu_page_image_compresses_with_every_page_codec(tmp_path: Path) -> None:
    out = tmp_path / "pages.img"
    method = make_page_image(out, 20_000_000)
    assert method == "criu"
    data = out.read_bytes()
    assert len(data) % PAGE_SIZE_BYTES == 0 and len(data) > 10_000_000
    for name in ("wkdm", "lz4"):
        codec = make_codec(name)
        z = codec.compress(data)
        assert len(z) < len(data) / 1.3
        assert codec.decompress(z, len(data)) == data
