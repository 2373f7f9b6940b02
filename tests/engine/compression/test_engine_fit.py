"""The compression pipeline carries the migration engine's own round plans into its RoundReceiver."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemigrate.engine import delta
from edgemigrate.engine.compression import make_codec
from edgemigrate.engine.compression.frames import (
    FrameError,
    FrameLimits,
    decode_data_frame,
    encode_data_frame,
)
from edgemigrate.engine.compression.pipeline import PipelineConfig, receive_chunks, send_chunks
from edgemigrate.engine.compression.selectors import RuleSelector
from edgemigrate.engine.compression.transport import tcp_pair
from edgemigrate.engine.manifest import RoundReceiver, plan_round


def _image(d: Path) -> None:
    d.mkdir()
    rng = np.random.default_rng(9)
    n_pages = 300
    words = np.zeros((n_pages, 1024), dtype=np.uint32)
    words[:, :300] = rng.integers(0, 5000, size=(n_pages, 300), dtype=np.uint32)
    (d / "pages-1.img").write_bytes(words.tobytes())
    (d / "pagemap-1.img").write_bytes(
        delta.encode_pagemap(
            1, [(0x7F0000000000, 200, delta.PE_PRESENT), (0x7F1000000000, 100, delta.PE_PRESENT)]
        )
    )
    (d / "core-1.img").write_bytes(b"core" * 70_000)


def test_round_plan_through_pipeline_into_round_receiver(tmp_path: Path) -> None:
    _image(tmp_path / "src")
    plan = plan_round("svc", 1, False, tmp_path / "src", None, chunk_size_bytes=256 * 1024)
    tx, rx = tcp_pair()
    out: dict[str, Any] = {}

    def receiver() -> None:
        try:
            recv = RoundReceiver(plan.manifest, tmp_path / "dst", None)
            receive_chunks(rx, lambda hello: recv, PipelineConfig())
            out["dir"] = recv.finish()
        except BaseException as exc:
            out["error"] = exc
        finally:
            rx.close()

    th = threading.Thread(target=receiver)
    th.start()
    rep = send_chunks(plan.iter_chunks(), tx, RuleSelector(), PipelineConfig())
    tx.close()
    th.join()
    if "error" in out:
        raise out["error"]
    for p in (tmp_path / "src").iterdir():
        assert (out["dir"] / p.name).read_bytes() == p.read_bytes()
    assert rep.wire_bytes < rep.raw_bytes / 2


def test_single_frame_helpers() -> None:
    data = bytes(range(256)) * 64
    header, payload = encode_data_frame(7, 4096, data, make_codec("zstd", 5))
    h, raw = decode_data_frame(header + payload, FrameLimits())
    assert raw == data and (h.index, h.offset, h.raw_bytes) == (7, 4096, len(data))
    with pytest.raises(FrameError):
        decode_data_frame(header + payload + b"x", FrameLimits())
    with pytest.raises(FrameError):
        decode_data_frame(header + payload, FrameLimits(max_raw_bytes=1000))
