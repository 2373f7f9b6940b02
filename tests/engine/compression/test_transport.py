from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.engine.compression.directory import (
    Catalog,
    DirectorySink,
    directory_catalog,
    iter_directory_chunks,
)
from edgemigrate.engine.compression.pipeline import PipelineConfig, receive_chunks, send_chunks
from edgemigrate.engine.compression.selectors import RuleSelector
from edgemigrate.engine.compression.transport import (
    AsyncioStreamLink,
    LinkClosedError,
    MemoryLink,
    TokenBucket,
)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    th = threading.Thread(target=lp.run_forever, daemon=True)
    th.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    th.join()
    lp.close()


def test_pipeline_over_asyncio_streams(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "core-1.img").write_bytes(b"asyncio stream " * 40_000)
    (src / "pages-1.img").write_bytes(bytes(4096) * 30 + b"\x01\x02\x03\x04" * 1024 * 20)
    cat = directory_catalog(src, 64 * 1024)
    accepted: dict[str, Any] = {}
    ready = threading.Event()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted["link"] = AsyncioStreamLink(reader, writer, loop)
        ready.set()

    async def start() -> tuple[asyncio.AbstractServer, AsyncioStreamLink]:
        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return server, AsyncioStreamLink(r, w, loop)

    server, tx = asyncio.run_coroutine_threadsafe(start(), loop).result()
    assert ready.wait(5)
    rx: AsyncioStreamLink = accepted["link"]
    assert tx.tcp_info() is not None
    out: dict[str, Any] = {}

    def receiver() -> None:
        try:
            sink = [None]

            def factory(hello: dict[str, Any]) -> DirectorySink:
                sink[0] = DirectorySink(tmp_path / "dst", Catalog.from_json(hello["catalog"], 64 * 1024))
                return sink[0]

            out["rep"] = receive_chunks(rx, factory, PipelineConfig())
            sink[0].finish()  # type: ignore[attr-defined]
        except BaseException as exc:
            out["error"] = exc

    th = threading.Thread(target=receiver)
    th.start()
    send_chunks(
        iter_directory_chunks(src, cat),
        tx,
        RuleSelector(),
        PipelineConfig(),
        hello={"catalog": cat.to_json()},
    )
    tx.close()
    th.join()
    rx.close()
    server.close()
    if "error" in out:
        raise out["error"]
    for p in src.iterdir():
        assert (tmp_path / "dst" / p.name).read_bytes() == p.read_bytes()


class SteppedClock:
    """A deterministic clock that advances only when something sleeps on it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def test_token_bucket_paces_and_changes_rate() -> None:
    clock = SteppedClock()
    tb = TokenBucket(8_000_000, burst_bytes=10_000, clock=clock, sleep=clock.sleep)  # 1 MB/s
    for _ in range(20):
        tb.acquire(10_000)  # 200 kB; the first 10 kB are the initial burst
    assert clock.t == pytest.approx(0.19)
    tb.set_rate(16_000_000)  # 2 MB/s from now on
    for _ in range(10):
        tb.acquire(10_000)
    assert clock.t == pytest.approx(0.19 + 0.05)
    assert tb.rate_bps == 16_000_000
    with pytest.raises(ValidationError):
        TokenBucket(0)


def test_memory_link_truncation() -> None:
    link = MemoryLink(b"abc")
    assert link.recv_exact(2) == b"ab"
    with pytest.raises(LinkClosedError):
        link.recv_exact(2)
    assert MemoryLink().recv_exact(4) is None
