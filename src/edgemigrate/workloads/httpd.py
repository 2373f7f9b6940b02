"""The ``web`` service: Debian's lighttpd serving one seeded, text-like static page (Zhang et al. 2019,
section VI-C).

Zhang et al. 2019 measure throughput and queries per second while migrating "the apache service ... started in
the Docker container", loaded by ``ab -c 100 -n 50000`` fetching a 512 KB static page. We run a real web
server from Debian, **lighttpd** (``apt-get install lighttpd``, listed in ``scripts/install-system-deps``),
rather than a Python server of our own: it is one single-threaded process with an ``epoll`` loop and
``sendfile``, which CRIU checkpoints together with ~100 established keep-alive connections
(``--tcp-established``), and it serves 512 KB pages at well over a Gbit/s on one core, so the load generator -
not the server - sets the pace and the server leaves the CPU to the migration. (Apache itself forks/threads
per connection and needs a writable ``/var``; nginx runs a master and worker processes; both are heavier to
checkpoint.)

This module is the container's entry point (``python -m edgemigrate.workloads.httpd``): it writes the page
``index.html`` of exactly ``--page-bytes`` bytes and a minimal ``lighttpd.conf`` into ``--workdir`` (the
container's private ``/tmp`` tmpfs, which CRIU dumps and restores with the process) and ``exec``\\ s
``lighttpd -D`` in its place, so the container's process *is* lighttpd. The page is HTML paragraphs of
pseudo-words drawn from a seeded, Zipf-weighted vocabulary: text-like, so compression matters (lz4 ~2-3x),
and reproducible from ``(page_bytes, seed)`` (:func:`make_page`), so a client can check every byte it got.

Run by hand: ``python -m edgemigrate.workloads.httpd --host 127.0.0.1 --port 8080 --workdir /tmp/web``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgemigrate.core.errors import EngineError
from edgemigrate.core.seeding import SeedTree

LIGHTTPD = "/usr/sbin/lighttpd"
DEFAULT_PAGE_BYTES = 512 * 1024  # Zhang et al. 2019, section VI-C: "a static page that is 512Kb"
MAX_PAGE_BYTES = 64 * 1024 * 1024
PAGE_PATH = "/index.html"
VOCABULARY_WORDS = 4000
_HEAD = b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>edgemigrate web page</title></head><body>\n"
_TAIL = b"\n</body></html>\n"
_SYLLABLES = ("ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "ga", "ve", "shi", "an", "or", "el", "um",
              "tra", "con", "ex", "ion", "ber", "mil", "dos", "ur", "qui", "fa", "zen", "bo", "li", "ta")


def lighttpd_skip_reason() -> str | None:
    """Why the web service cannot run here (None if it can)."""
    if not os.path.exists(LIGHTTPD):
        return f"{LIGHTTPD} not installed (apt-get install lighttpd; scripts/install-system-deps)"
    return None


def make_page(size_bytes: int = DEFAULT_PAGE_BYTES, seed: int = 0) -> bytes:
    """The HTML page of exactly ``size_bytes`` ASCII bytes for ``seed``; the same arguments give the same bytes."""
    if not len(_HEAD) + len(_TAIL) <= size_bytes <= MAX_PAGE_BYTES:
        raise EngineError(f"page size {size_bytes} outside {len(_HEAD) + len(_TAIL)}..{MAX_PAGE_BYTES} bytes")
    rng = SeedTree(seed).rng("web/page")
    n_syl = rng.integers(1, 4, size=VOCABULARY_WORDS)
    syl = rng.integers(0, len(_SYLLABLES), size=(VOCABULARY_WORDS, 3))
    vocab = ["".join(_SYLLABLES[s] for s in syl[i, : n_syl[i]]) for i in range(VOCABULARY_WORDS)]
    weights = 1.0 / np.arange(1, VOCABULARY_WORDS + 1)  # Zipf's law, as in natural text
    weights /= weights.sum()
    body_bytes = size_bytes - len(_HEAD) - len(_TAIL)
    parts: list[str] = []
    n = 0
    while n < body_bytes:
        words = rng.choice(VOCABULARY_WORDS, size=int(rng.integers(40, 120)), p=weights)
        para = "<p>" + " ".join(vocab[w] for w in words).capitalize() + ".</p>\n"
        parts.append(para)
        n += len(para)
    body = "".join(parts).encode("ascii")[:body_bytes]
    return _HEAD + body + _TAIL


def lighttpd_config(host: str, port: int, docroot: Path) -> str:
    """A minimal lighttpd configuration: one static document root, long keep-alive, no inotify.

    Timeouts are generous because lighttpd's clock keeps running while the container is frozen for a
    migration: a connection idle across the frozen window must not be closed right after the restore.
    """
    return "\n".join([
        f'server.document-root = "{docroot}"',
        f'server.bind = "{host}"',
        f"server.port = {port}",
        'index-file.names = ( "index.html" )',
        'mimetype.assign = ( ".html" => "text/html" )',
        'server.stat-cache-engine = "disable"',  # no inotify descriptor to checkpoint
        "server.max-connections = 480",  # the container's RLIMIT_NOFILE is 1024; lighttpd needs 2 fds each
        "server.max-keep-alive-requests = 100000",
        "server.max-keep-alive-idle = 120",
        "server.max-read-idle = 120",
        "server.max-write-idle = 360",
        'server.tag = "lighttpd (edgemigrate web)"',
        "",
    ])


def prepare(workdir: Path, host: str, port: int, page_bytes: int, seed: int) -> Path:
    """Write ``workdir/www/index.html`` and ``workdir/lighttpd.conf``; returns the configuration's path."""
    www = workdir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_bytes(make_page(page_bytes, seed))
    conf = workdir / "lighttpd.conf"
    conf.write_text(lighttpd_config(host, port, www))
    return conf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.workloads.httpd",
                                 description="Serve a seeded static page with lighttpd (exec'd in place).")
    ap.add_argument("--host", default="0.0.0.0", help="address to bind (the service IP)")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--page-bytes", type=int, default=DEFAULT_PAGE_BYTES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/web"))
    ap.add_argument("--binary", default=LIGHTTPD)
    args = ap.parse_args(argv)
    binary = shutil.which(args.binary) or args.binary
    if not os.path.exists(binary):
        print(f"httpd: {args.binary} not found (apt-get install lighttpd)", file=sys.stderr)
        return 2
    try:
        conf = prepare(args.workdir, args.host, args.port, args.page_bytes, args.seed)
    except EngineError as exc:
        print(f"httpd: {exc}", file=sys.stderr)
        return 2
    print(f"httpd: lighttpd on {args.host}:{args.port} page_bytes={args.page_bytes} seed={args.seed}", flush=True)
    os.execv(binary, [binary, "-D", "-f", str(conf)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
