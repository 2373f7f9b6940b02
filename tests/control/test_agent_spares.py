"""After a verified pre-copy round the destination allocates the next round's pages file; a session that ended
while that allocation ran leaves no folder behind (its cleanup may have listed the folder before the spare
appeared)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgemigrate.control.agent import Agent
from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT
from edgemigrate.engine.manifest import Manifest, RoundReceiver, plan_round


def _verified_round(src: Path, session_dir: Path) -> RoundReceiver:
    src.mkdir(parents=True)
    pages = np.arange(16 * PAGE_SIZE_BYTES // 8, dtype=np.uint64)
    (src / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x400000, 16, PE_PRESENT)]))
    (src / "pages-1.img").write_bytes(pages.tobytes())
    plan = plan_round("svc", 1, False, src, None)
    rx = RoundReceiver(Manifest.from_dict(json.loads(json.dumps(plan.manifest.to_dict()))),
                       session_dir / "round-1", None)
    for spec, data in plan.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    rx.finish()
    return rx


def test_spare_is_allocated_beside_the_rounds(tmp_path: Path, bare_agent: Callable[[], Agent]) -> None:
    agent = bare_agent()
    session = tmp_path / "incoming/s1"
    rx = _verified_round(tmp_path / "src", session)
    agent._prepare_spares(SimpleNamespace(finished=False, dir=session), rx)  # type: ignore[arg-type]
    assert (session / ".spare-pages-1.img").stat().st_size >= 16 * PAGE_SIZE_BYTES
    assert not list(session.glob("*.part"))


def test_a_session_that_ended_meanwhile_leaves_no_spare(tmp_path: Path, bare_agent: Callable[[], Agent]) -> None:
    agent = bare_agent()
    session = tmp_path / "incoming/s1"
    rx = _verified_round(tmp_path / "src", session)
    agent._prepare_spares(SimpleNamespace(finished=True, dir=session), rx)  # type: ignore[arg-type]
    assert not session.exists()
