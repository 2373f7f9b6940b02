"""Chunking a checkpoint image directory, and writing one back from received chunks.

:func:`directory_catalog` cuts every file of a directory into chunks (4 KiB-aligned, so WKdm sees whole
pages of ``pages-*.img``); :func:`iter_directory_chunks` reads them lazily (the pipeline's read stage);
:class:`DirectorySink` is the destination: it validates the catalog it was sent (plain file names only,
bounded sizes, chunks tiling every file exactly) and writes each verified chunk at its offset.

With the migration engine's own round manifests (:mod:`edgemigrate.engine.manifest`) the pipeline is fed
``RoundPlan.iter_chunks()`` instead and delivers into a ``RoundReceiver``, which has the same
``accept_chunk(index, data)`` method as :class:`DirectorySink`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import EngineError, ValidationError

DEFAULT_CHUNK_BYTES = 1 << 20
MAX_FILE_BYTES = 64 << 30
MAX_FILES = 4096
# used with fullmatch: re.match with "$" would also accept the name followed by a newline
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class CatalogError(EngineError):
    """A received catalog is malformed or unsafe, or a chunk does not fit it."""


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where a chunk belongs: ``file`` at ``offset``, ``size_bytes`` long; ``index`` is its wire id."""

    index: int
    file: str
    offset: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Catalog:
    files: tuple[tuple[str, int], ...]  # (name, size_bytes)
    chunks: tuple[ChunkRef, ...]

    @property
    def raw_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [[n, s] for n, s in self.files],
            "chunks": [[c.index, c.file, c.offset, c.size_bytes] for c in self.chunks],
        }

    @classmethod
    def from_json(cls, obj: Any, max_chunk_bytes: int) -> Catalog:
        """Validate an untrusted catalog (from the HELLO frame)."""
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("files"), list)
            or not isinstance(obj.get("chunks"), list)
        ):
            raise CatalogError("catalog: expected {'files': [...], 'chunks': [...]}")
        if len(obj["files"]) > MAX_FILES:
            raise CatalogError(f"catalog: {len(obj['files'])} files exceeds {MAX_FILES}")
        files: dict[str, int] = {}
        for i, f in enumerate(obj["files"]):
            if not (isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and type(f[1]) is int):
                raise CatalogError(f"catalog.files[{i}]: expected [name, size]")
            name, size = f
            if not _NAME_RE.fullmatch(name) or name in files:
                raise CatalogError(f"catalog.files[{i}]: unsafe or duplicate file name {name!r}")
            if not 0 <= size <= MAX_FILE_BYTES:
                raise CatalogError(f"catalog.files[{i}]: size {size} outside 0..{MAX_FILE_BYTES}")
            files[name] = size
        chunks = []
        next_off = dict.fromkeys(files, 0)
        for i, c in enumerate(obj["chunks"]):
            if not (
                isinstance(c, list)
                and len(c) == 4
                and isinstance(c[1], str)
                and all(type(c[k]) is int for k in (0, 2, 3))
            ):
                raise CatalogError(f"catalog.chunks[{i}]: expected [index, file, offset, size]")
            ref = ChunkRef(*c)
            if ref.index != i:
                raise CatalogError(f"catalog.chunks[{i}]: index {ref.index}, expected {i}")
            if ref.file not in files:
                raise CatalogError(f"catalog.chunks[{i}]: unknown file {ref.file!r}")
            if ref.offset != next_off[ref.file] or not 0 < ref.size_bytes <= max_chunk_bytes:
                raise CatalogError(
                    f"catalog.chunks[{i}]: chunks of {ref.file} must tile it in order, each 1..{max_chunk_bytes} bytes"
                )
            next_off[ref.file] += ref.size_bytes
            chunks.append(ref)
        for name, size in files.items():
            if next_off[name] != size:
                raise CatalogError(f"catalog: chunks of {name} cover {next_off[name]} of {size} bytes")
        return cls(tuple(files.items()), tuple(chunks))


def directory_catalog(directory: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Catalog:
    """Catalog of the regular files directly in ``directory`` (sorted by name)."""
    if chunk_bytes <= 0 or chunk_bytes % 4096:
        raise ValidationError(f"chunk_bytes must be a positive multiple of 4096, got {chunk_bytes}")
    if not directory.is_dir():
        raise ValidationError(f"{directory}: not a directory")
    files, chunks = [], []
    for p in sorted(directory.iterdir()):
        if not p.is_file():
            continue
        if not _NAME_RE.fullmatch(p.name):
            raise ValidationError(f"{p}: file name not allowed in a checkpoint directory")
        size = p.stat().st_size
        files.append((p.name, size))
        for off in range(0, size, chunk_bytes):
            chunks.append(ChunkRef(len(chunks), p.name, off, min(chunk_bytes, size - off)))
    return Catalog(tuple(files), tuple(chunks))


def iter_directory_chunks(directory: Path, catalog: Catalog) -> Iterator[tuple[ChunkRef, bytes]]:
    """Read each chunk of ``catalog`` from ``directory`` when it is asked for."""
    handle: Any = None
    current = None
    try:
        for ref in catalog.chunks:
            if ref.file != current:
                if handle is not None:
                    handle.close()
                handle = open(directory / ref.file, "rb")  # noqa: SIM115 - closed in finally / on switch
                current = ref.file
            data = os.pread(handle.fileno(), ref.size_bytes, ref.offset)
            if len(data) != ref.size_bytes:
                raise EngineError(
                    f"{directory / ref.file}: changed while being read (short read at {ref.offset})"
                )
            yield ref, data
    finally:
        if handle is not None:
            handle.close()


class DirectorySink:
    """Writes verified chunks into ``out_dir`` at the places the catalog gives. Not thread-safe."""

    def __init__(self, out_dir: Path, catalog: Catalog) -> None:
        self.out_dir = out_dir
        self.catalog = catalog
        out_dir.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}
        for name, size in catalog.files:
            fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(fd, size)
            self._fds[name] = fd
        self._seen = bytearray(len(catalog.chunks))
        self.received_bytes = 0

    def accept_chunk(self, index: int, data: bytes | memoryview) -> None:
        if not 0 <= index < len(self.catalog.chunks):
            raise CatalogError(f"chunk {index}: outside the catalog (0..{len(self.catalog.chunks) - 1})")
        ref = self.catalog.chunks[index]
        if self._seen[index]:
            raise CatalogError(f"chunk {index}: received twice")
        if len(data) != ref.size_bytes:
            raise CatalogError(f"chunk {index}: {len(data)} bytes, catalog says {ref.size_bytes}")
        os.pwrite(self._fds[ref.file], data, ref.offset)
        self._seen[index] = 1
        self.received_bytes += len(data)

    def finish(self) -> Path:
        """Close the files; raise :class:`CatalogError` if any chunk is missing."""
        self.close()
        missing = len(self._seen) - sum(self._seen)
        if missing:
            raise CatalogError(f"{missing} chunks never arrived")
        return self.out_dir

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
