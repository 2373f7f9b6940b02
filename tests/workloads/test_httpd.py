"""The web service: the seeded page, the spec of the ``web`` kind, and real lighttpd serving exactly the page."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.workloads.httpd import DEFAULT_PAGE_BYTES, lighttpd_skip_reason, make_page


def test_page_is_exact_size_seeded_and_text_like() -> None:
    page = make_page(DEFAULT_PAGE_BYTES, seed=3)
    assert len(page) == DEFAULT_PAGE_BYTES == 512 * 1024
    assert page == make_page(DEFAULT_PAGE_BYTES, seed=3)
    assert page != make_page(DEFAULT_PAGE_BYTES, seed=4)
    assert page.startswith(b"<!DOCTYPE html>") and page.endswith(b"</body></html>\n")
    page.decode("ascii")  # printable text only
    ratio = len(page) / len(zlib.compress(page, 6))
    assert 2.0 < ratio < 10.0, ratio  # compressible like text, not a repeated block
    assert len(make_page(5000, seed=0)) == 5000


def test_page_size_out_of_range_is_refused() -> None:
    with pytest.raises(EngineError, match="page size"):
        make_page(10)


def test_web_spec_roundtrip_and_argv() -> None:
    spec = ServiceSpec("web", ServiceKind.WEB, "10.1.2.3", 8080, page_bytes=65536, seed=7)
    d = spec.to_dict()
    assert d["kind"] == "web" and d["page_bytes"] == 65536
    assert ServiceSpec.from_dict(d) == spec
    argv = spec.argv()
    assert argv[1:3] == ["-m", "edgemigrate.workloads.httpd"]
    assert argv[argv.index("--page-bytes") + 1] == "65536" and argv[argv.index("--host") + 1] == "10.1.2.3"
    assert "page_bytes" not in ServiceSpec("kv", ServiceKind.KVSTORE, "10.1.2.3", 7001).to_dict()
    with pytest.raises(ConfigError, match="page_bytes"):
        ServiceSpec("web", ServiceKind.WEB, "10.1.2.3", 8080, page_bytes=10)
    with pytest.raises(ConfigError, match="page_bytes: expected an integer"):
        ServiceSpec.from_dict({**d, "page_bytes": "big"})
    with pytest.raises(ConfigError, match="counter/kvstore/redis/web"):
        ServiceSpec.from_dict({**d, "kind": "apache"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lighttpd_serves_exactly_the_page_with_keepalive(tmp_path: Path) -> None:
    reason = lighttpd_skip_reason()
    if reason:
        pytest.skip(reason)
    port, size = _free_port(), 300_000
    proc = subprocess.Popen([sys.executable, "-m", "edgemigrate.workloads.httpd", "--host", "127.0.0.1",
                             "--port", str(port), "--page-bytes", str(size), "--seed", "5",
                             "--workdir", str(tmp_path / "web")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"httpd exited: {proc.stdout.read().decode() if proc.stdout else ''}")
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        want = make_page(size, seed=5)
        for path in ("/", "/index.html"):  # two requests on one keep-alive connection
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert int(resp.headers["Content-Length"]) == size
            assert resp.headers["Content-Type"].startswith("text/html")
            assert body == want
            assert not resp.will_close
        conn.request("GET", "/missing")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
