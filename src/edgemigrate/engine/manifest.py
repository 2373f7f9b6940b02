"""Per-round checkpoint manifests: what a pre-copy round sends, with per-chunk hashes.

The source describes each round as a :class:`Manifest`: every file of the CRIU image directory is
``full`` (sent whole), ``same`` (byte-identical to the previous round's file of that name, not sent) or
``pages`` (a ``pages-*.img`` sent as a delta against the previous round: a bitmap of changed pages and the
changed pages, Ngo et al. 2020, section IV-B). The wire payload of every file is cut into chunks of at most
:data:`CHUNK_SIZE_BYTES`, each with its SHA-256. The destination (:class:`RoundReceiver`) refuses any chunk
whose hash or placement is wrong, verifies whole-file hashes where the manifest carries them, rebuilds the
full image and only then lets the restore run.

A manifest comes from the network, so :meth:`Manifest.from_dict` treats it as hostile: file names must be
plain CRIU image names (no ``/``, no ``..``, nothing absolute, never a bundle ``config.json`` - mounts and
security settings always come from the destination's own bundle), and every declared size is bounded: each
file and the totals of the image and of the payload by ``limit_bytes`` (the caller's budget for this service).
The receiver never allocates what a manifest declares: each chunk is written to disk as it arrives.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import math
import mmap
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import DataFormatError, EngineError
from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES

MANIFEST_VERSION = 1
CHUNK_SIZE_BYTES = 1 << 20
# the one chunk-size limit of the data path: manifests refuse larger chunks, the agent protocol sizes its CHUNK
# messages and the destination its frame limits from it
MAX_CHUNK_SIZE_BYTES = 8 << 20
MAX_IMAGE_SIZE_BYTES = 64 << 30
MAX_FILES = 4096
MAX_ROUND = 2**32 - 1  # data chunks carry the round as a u32
# CRIU image files and runc's descriptors.json; nothing else may travel (no config.json, no paths)
_NAME_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.img|descriptors\.json)$")


class IntegrityError(EngineError):
    """A received checkpoint does not match its manifest; the restore is refused."""


class ManifestError(EngineError):
    """A manifest is malformed, names an unsafe path or declares sizes beyond the limits."""


class FileKind(enum.Enum):
    FULL = "full"
    SAME = "same"
    PAGES = "pages"


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file of the image directory as a round describes it."""

    name: str
    kind: FileKind
    size_bytes: int  # size of the rebuilt file at the destination
    payload_bytes: int  # bytes sent on the data connection for this file
    sha256: str | None  # whole-file hash; None only for pages files of a final round (see module doc)
    pagemap: str | None = None  # PAGES: the pagemap image (in this round) describing this pages file
    base: str | None = None  # PAGES: the pages file of the previous round it is a delta against


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    index: int
    file: str
    offset: int  # into the file's payload
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    service: str
    round_index: int
    final: bool
    files: tuple[FileSpec, ...]
    chunks: tuple[ChunkSpec, ...]
    version: int = MANIFEST_VERSION

    @property
    def image_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def payload_bytes(self) -> int:
        return sum(f.payload_bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "service": self.service,
            "round": self.round_index,
            "final": self.final,
            "files": [
                {
                    "name": f.name,
                    "kind": f.kind.value,
                    "size_bytes": f.size_bytes,
                    "payload_bytes": f.payload_bytes,
                    "sha256": f.sha256,
                    "pagemap": f.pagemap,
                    "base": f.base,
                }
                for f in self.files
            ],
            "chunks": [[c.index, c.file, c.offset, c.size_bytes, c.sha256] for c in self.chunks],
        }

    @classmethod
    def from_dict(cls, obj: Any, limit_bytes: int = MAX_IMAGE_SIZE_BYTES) -> Manifest:
        """Validate an untrusted decoded manifest; raise :class:`ManifestError` naming the bad key.

        The steps run in this order (so the first problem found is the one reported): the header, every file
        on its own, the files together (pagemaps, total sizes), then the chunks against the files.
        """
        if not isinstance(obj, dict):
            raise ManifestError("manifest: expected a JSON object")
        version = _get(obj, "version", int, "manifest")
        if version != MANIFEST_VERSION:
            raise ManifestError(f"manifest: version {version} unsupported (expected {MANIFEST_VERSION})")
        service = _get(obj, "service", str, "manifest")
        round_index = _get(obj, "round", int, "manifest")
        if not 1 <= round_index <= MAX_ROUND:
            raise ManifestError(f"manifest.round: {round_index} outside 1..{MAX_ROUND}")
        final = _get(obj, "final", bool, "manifest")
        files = _parse_files(_get(obj, "files", list, "manifest"), limit_bytes)
        _check_pagemaps(files)
        _check_totals(files, limit_bytes)
        chunks = _parse_chunks(_get(obj, "chunks", list, "manifest"), files)
        return cls(service, round_index, final, files, chunks, version)


def _parse_files(raw_files: list[Any], limit_bytes: int) -> tuple[FileSpec, ...]:
    """Every file entry on its own: a safe, unique name and sizes within ``limit_bytes``."""
    if len(raw_files) > MAX_FILES:
        raise ManifestError(f"manifest.files: {len(raw_files)} files exceed the limit of {MAX_FILES}")
    files: list[FileSpec] = []
    seen: set[str] = set()
    for i, rf in enumerate(raw_files):
        files.append(_parse_file(rf, f"manifest.files[{i}]", limit_bytes, seen))
    return tuple(files)


def _parse_file(rf: Any, where: str, limit_bytes: int, seen: set[str]) -> FileSpec:
    """One file entry; ``seen`` holds the names of the entries before it (and gets this one's)."""
    if not isinstance(rf, dict):
        raise ManifestError(f"{where}: expected an object")
    name = _check_name(_get(rf, "name", str, where), f"{where}.name")
    if name in seen:
        raise ManifestError(f"{where}.name: duplicate file {name!r}")
    seen.add(name)
    kind_s = _get(rf, "kind", str, where)
    try:
        kind = FileKind(kind_s)
    except ValueError:
        raise ManifestError(f"{where}.kind: {kind_s!r} is not one of full/same/pages") from None
    size = _size(_get(rf, "size_bytes", int, where), f"{where}.size_bytes", limit_bytes)
    payload = _size(_get(rf, "payload_bytes", int, where), f"{where}.payload_bytes", limit_bytes)
    digest = rf.get("sha256")
    if digest is not None and (not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ManifestError(f"{where}.sha256: expected 64 lowercase hex digits")
    pagemap = rf.get("pagemap")
    base = rf.get("base")
    if kind is FileKind.PAGES:
        _check_pages_fields(where, size, pagemap, base)
    else:
        _check_whole_file_fields(where, kind, size, payload, digest, pagemap, base)
    return FileSpec(name, kind, size, payload, digest, pagemap, base)


def _check_pages_fields(where: str, size: int, pagemap: Any, base: Any) -> None:
    """A ``pages`` file names its pagemap (and maybe its base) and holds whole pages."""
    if not isinstance(pagemap, str):
        raise ManifestError(f"{where}.pagemap: a pages file needs its pagemap")
    _check_name(pagemap, f"{where}.pagemap")
    if base is not None:
        _check_name(_expect(base, str, f"{where}.base"), f"{where}.base")
    if size % PAGE_SIZE_BYTES:
        raise ManifestError(f"{where}.size_bytes: not a multiple of the page size")


def _check_whole_file_fields(where: str, kind: FileKind, size: int, payload: int, digest: str | None,
                             pagemap: Any, base: Any) -> None:
    """A ``full`` or ``same`` file carries its hash; its payload is the whole file or nothing."""
    if digest is None:
        raise ManifestError(f"{where}.sha256: required for {kind.value} files")
    if pagemap is not None or base is not None:
        raise ManifestError(f"{where}: pagemap/base only apply to pages files")
    expected_payload = size if kind is FileKind.FULL else 0
    if payload != expected_payload:
        raise ManifestError(f"{where}.payload_bytes: must be {expected_payload} for a {kind.value} file")


def _check_pagemaps(files: tuple[FileSpec, ...]) -> None:
    """Every pages file's pagemap is a file of the manifest, and not a pages file itself."""
    kinds = {f.name: f.kind for f in files}
    for f in files:
        if f.kind is not FileKind.PAGES:
            continue
        pagemap_kind = kinds.get(f.pagemap or "")
        if pagemap_kind is None:
            raise ManifestError(f"manifest: pages file {f.name} names pagemap {f.pagemap} not in the manifest")
        if pagemap_kind is FileKind.PAGES:
            # pages files are rebuilt after every other file, from their pagemap: it cannot be one of them
            raise ManifestError(f"manifest: pages file {f.name} names another pages file as its pagemap")


def _check_totals(files: tuple[FileSpec, ...], limit_bytes: int) -> None:
    # each file is within the limit on its own; many of them together must be too
    total = sum(f.size_bytes for f in files)
    if total > limit_bytes:
        raise ManifestError(f"manifest: declared image size {total} bytes exceeds the limit {limit_bytes}")
    total_payload = sum(f.payload_bytes for f in files)
    if total_payload > limit_bytes:
        raise ManifestError(
            f"manifest: declared payload of {total_payload} bytes exceeds the limit {limit_bytes}"
        )


def _parse_chunks(raw_chunks: list[Any], files: tuple[FileSpec, ...]) -> tuple[ChunkSpec, ...]:
    """The chunks, in index order, tile every file's payload exactly: no gap, no overlap, nothing past it."""
    chunks: list[ChunkSpec] = []
    by_name = {f.name: f for f in files}
    next_offset = {f.name: 0 for f in files}
    for i, rc in enumerate(raw_chunks):
        chunk = _parse_chunk(rc, i, by_name, next_offset)
        next_offset[chunk.file] = chunk.offset + chunk.size_bytes
        if next_offset[chunk.file] > by_name[chunk.file].payload_bytes:
            raise ManifestError(f"manifest.chunks[{i}]: chunk runs past the declared payload of {chunk.file}")
        chunks.append(chunk)
    for f in files:
        if next_offset[f.name] != f.payload_bytes:
            raise ManifestError(f"manifest: chunks cover {next_offset[f.name]} of {f.payload_bytes} payload bytes of {f.name}")
    return tuple(chunks)


def _parse_chunk(rc: Any, i: int, by_name: dict[str, FileSpec], next_offset: dict[str, int]) -> ChunkSpec:
    where = f"manifest.chunks[{i}]"
    if not (isinstance(rc, list) and len(rc) == 5):
        raise ManifestError(f"{where}: expected [index, file, offset, size_bytes, sha256]")
    index, fname, offset, size, digest = rc
    if type(index) is not int or index != i:  # 1.0 == 1 and True == 1: the type matters
        raise ManifestError(f"{where}: index must be {i}")
    if not isinstance(fname, str) or fname not in by_name:
        raise ManifestError(f"{where}: unknown file {fname!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_CHUNK_SIZE_BYTES:
        raise ManifestError(f"{where}: size_bytes must be in 1..{MAX_CHUNK_SIZE_BYTES}")
    if type(offset) is not int or offset != next_offset[fname]:
        raise ManifestError(f"{where}: offset {offset} leaves a gap or overlap in {fname}")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits")
    return ChunkSpec(index, fname, offset, size, digest)


def _expect(value: Any, typ: type, where: str) -> Any:
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: expected {typ.__name__}")
    return value


def _get(obj: dict[str, Any], key: str, typ: type, where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{where}.{key}: missing")
    return _expect(obj[key], typ, f"{where}.{key}")


def _size(value: int, where: str, limit: int) -> int:
    if value < 0 or value > limit:
        raise ManifestError(f"{where}: {value} outside 0..{limit}")
    return value


def _check_name(name: str, where: str) -> str:
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise ManifestError(f"{where}: {name!r} is not a plain CRIU image file name")
    return name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 << 20):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- source


@dataclass(slots=True)
class RoundPlan:
    """A manifest plus the payload bytes of every file to send (kept until the round is acknowledged)."""

    manifest: Manifest
    payloads: dict[str, bytes] = field(default_factory=dict)
    changed_pages: int = 0
    stored_pages: int = 0
    compared_ahead_pages: int = 0  # pages whose comparison was done while the dump was written (used)

    def iter_chunks(self) -> Iterator[tuple[ChunkSpec, memoryview]]:
        views = {name: memoryview(data) for name, data in self.payloads.items()}
        for c in self.manifest.chunks:
            yield c, views[c.file][c.offset : c.offset + c.size_bytes]


def bitmap_bytes(n_pages: int) -> int:
    """Size of a pages delta's changed-page bitmap, zero-padded to a whole 4 KiB page so the changed pages
    after it keep their page alignment in the payload (a page-wise codec such as WKdm needs whole pages)."""
    return math.ceil(math.ceil(n_pages / 8) / PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES


def plan_round(
    service: str,
    round_index: int,
    final: bool,
    cur_dir: Path,
    prev_dir: Path | None,
    chunk_size_bytes: int = CHUNK_SIZE_BYTES,
    known: Mapping[str, delta.KnownPrefix] | None = None,
) -> RoundPlan:
    """Describe ``cur_dir`` as a round against ``prev_dir`` (the previous round, already at the destination).
    ``known``: pages files' prefixes compared while the dump was written (:mod:`.prefix_diff`).

    Pages files become deltas (changed pages only); other files are sent whole unless byte-identical to the
    previous round. Final rounds skip the whole-file hash of pages files to keep the frozen time short; their
    integrity rests on per-chunk hashes plus the previous round's verified file.
    """
    names = sorted(p.name for p in cur_dir.iterdir() if p.is_file())
    for n in names:
        _check_name(n, f"{cur_dir}/{n}")
    pagemap_of: dict[str, tuple[str, delta.Pagemap]] = {}
    for pm_name in delta.pagemap_files(cur_dir):
        pm = delta.read_pagemap(cur_dir / pm_name)
        pagemap_of[pm.pages_name] = (pm_name, pm)
    files: list[FileSpec] = []
    payloads: dict[str, bytes] = {}
    changed_total = 0
    stored_total = 0
    ahead = 0
    for name in names:
        path = cur_dir / name
        size = path.stat().st_size
        if name in pagemap_of:
            pm_name, pm = pagemap_of[name]
            prev_pm = prev_pages = None
            base = None
            if prev_dir is not None and (prev_dir / pm_name).exists():
                prev_pm = delta.read_pagemap(prev_dir / pm_name)
                if (prev_dir / prev_pm.pages_name).exists():
                    prev_pages = prev_dir / prev_pm.pages_name
                    base = prev_pm.pages_name
                else:
                    prev_pm = None
            changed, used = delta.changed_pages_counted(prev_pm, prev_pages, pm, path,
                                                        known.get(name) if known else None)
            ahead += used
            bitmap = np.packbits(changed).tobytes()
            pad = b"\0" * (bitmap_bytes(changed.size) - len(bitmap))  # pages stay 4 KiB-aligned (WKdm)
            payload = bitmap + pad + delta.read_changed(path, changed)
            changed_total += int(changed.sum())
            stored_total += int(changed.size)
            digest = None if final else sha256_file(path)
            files.append(FileSpec(name, FileKind.PAGES, size, len(payload), digest, pm_name, base))
            payloads[name] = payload
        else:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            prev = prev_dir / name if prev_dir is not None else None
            if prev is not None and prev.exists() and prev.stat().st_size == size and prev.read_bytes() == data:
                files.append(FileSpec(name, FileKind.SAME, size, 0, digest))
            else:
                files.append(FileSpec(name, FileKind.FULL, size, size, digest))
                payloads[name] = data
    chunks: list[ChunkSpec] = []
    for f in files:
        data = payloads.get(f.name, b"")
        for off in range(0, len(data), chunk_size_bytes):
            piece = data[off : off + chunk_size_bytes]
            chunks.append(ChunkSpec(len(chunks), f.name, off, len(piece), hashlib.sha256(piece).hexdigest()))
    manifest = Manifest(service, round_index, final, tuple(files), tuple(chunks))
    return RoundPlan(manifest, payloads, changed_total, stored_total, ahead)


# ------------------------------------------------------------------------------------------ destination


# a pages file's delta is staged under this prefix until the rebuild; manifest names start with a letter
# or digit, so a staged payload can never take the place of an image file
_STAGED_PREFIX = ".payload-"
# the next round's pages file is allocated ahead under this prefix, beside the round folders (same rule)
_SPARE_PREFIX = ".spare-"
# room for the pages a service touches between two rounds (the rest is allocated on demand)
SPARE_SLACK_BYTES = 4 << 20
# open payload files kept per receiver; chunks arrive file by file, so more would only hold descriptors
_MAX_OPEN_FILES = 16


class RoundReceiver:
    """Destination side of one round: verify chunks as they arrive, then rebuild the full image directory.

    Every verified chunk goes straight to disk at its offset (a ``full`` file is written in place, a
    ``pages`` delta to a staged payload file read back by the rebuild), so memory stays at one chunk however
    large the manifest's declared sizes are. :meth:`close` releases the open files of an aborted round.
    """

    def __init__(self, manifest: Manifest, round_dir: Path, prev_dir: Path | None) -> None:
        self.manifest = manifest
        self.round_dir = round_dir
        self.prev_dir = prev_dir
        round_dir.mkdir(parents=True, exist_ok=False)
        self._received = np.zeros(len(manifest.chunks), dtype=bool)
        self._kinds = {f.name: f.kind for f in manifest.files}
        self._fds: OrderedDict[str, int] = OrderedDict()  # least recently written first
        self._closed = False
        self.received_bytes = 0

    @property
    def complete(self) -> bool:
        return bool(self._received.all())

    def _payload_path(self, name: str) -> Path:
        if self._kinds[name] is FileKind.PAGES:
            return self.round_dir / (_STAGED_PREFIX + name)
        return self.round_dir / name

    def _fd(self, name: str) -> int:
        fd = self._fds.pop(name, None)
        if fd is None:
            if len(self._fds) >= _MAX_OPEN_FILES:
                os.close(self._fds.popitem(last=False)[1])
            flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(self._payload_path(name), flags, 0o600)
        self._fds[name] = fd
        return fd

    def _close_files(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def close(self) -> None:
        """Close every file this round holds open (idempotent). After it no chunk is accepted and
        :meth:`finish` refuses; the caller removes the round directory."""
        self._closed = True
        self._close_files()

    def accept_chunk(self, index: int, data: bytes | memoryview) -> None:
        m = self.manifest
        if self._closed:
            raise IntegrityError(f"round {m.round_index}: chunk {index} arrived after the round was closed")
        if not 0 <= index < len(m.chunks):
            raise IntegrityError(f"round {m.round_index}: chunk index {index} outside 0..{len(m.chunks) - 1}")
        spec = m.chunks[index]
        if self._received[index]:
            raise IntegrityError(f"round {m.round_index}: chunk {index} of {spec.file} received twice")
        if len(data) != spec.size_bytes:
            raise IntegrityError(
                f"round {m.round_index}: chunk {index} of {spec.file} has {len(data)} bytes, manifest says {spec.size_bytes}"
            )
        if hashlib.sha256(data).hexdigest() != spec.sha256:
            raise IntegrityError(f"round {m.round_index}: chunk {index} of {spec.file} fails its sha256 check")
        fd = self._fd(spec.file)
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):  # pwrite may write less than asked
            done += os.pwrite(fd, view[done:], spec.offset + done)
        self._received[index] = True
        self.received_bytes += spec.size_bytes

    def finish(self) -> Path:
        """Rebuild and verify the image directory; returns it. Raises :class:`IntegrityError` on mismatch."""
        m = self.manifest
        if self._closed:
            raise IntegrityError(f"round {m.round_index}: the round was closed before it finished")
        if not self.complete:
            missing = int((~self._received).sum())
            raise IntegrityError(f"round {m.round_index}: {missing} chunks never arrived")
        self._close_files()
        order = [f for f in m.files if f.kind is not FileKind.PAGES] + [
            f for f in m.files if f.kind is FileKind.PAGES
        ]
        for f in order:
            out = self.round_dir / f.name
            if f.kind is FileKind.FULL:
                if not f.payload_bytes:  # no chunk created it
                    os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
            elif f.kind is FileKind.SAME:
                src = self._prev(f.name, f"same-as-previous file {f.name}")
                os.link(src, out)
            else:
                self._rebuild_pages(f, out)
            if f.sha256 is not None and sha256_file(out) != f.sha256:
                raise IntegrityError(f"round {m.round_index}: {f.name} fails its whole-file sha256 check")
            if out.stat().st_size != f.size_bytes:
                raise IntegrityError(f"round {m.round_index}: {f.name} rebuilt to the wrong size")
        return self.round_dir

    def _spare(self, name: str) -> Path:
        return self.round_dir.parent / (_SPARE_PREFIX + name)

    def prepare_spares(self) -> None:
        """Allocate, beside this (verified) round, a file per pages file for the next round's rebuild to write
        into (:func:`delta.allocate_spare`): the next round may be the final one, rebuilt while the service is
        frozen. Peak use stays that of a rebuild (the spare becomes the next round's file); in between a
        spare holds a pages file's size."""
        for f in self.manifest.files:
            if f.kind is FileKind.PAGES:
                delta.allocate_spare(self._spare(f.name), f.size_bytes + SPARE_SLACK_BYTES)

    def _prev(self, name: str, what: str) -> Path:
        if self.prev_dir is None or not (self.prev_dir / name).exists():
            raise IntegrityError(f"round {self.manifest.round_index}: {what} is missing from the previous round")
        return self.prev_dir / name

    def _rebuild_pages(self, f: FileSpec, out: Path) -> None:
        staged = self._payload_path(f.name)
        try:
            self._rebuild_staged(f, staged, out)
        finally:
            staged.unlink(missing_ok=True)  # never part of the image, rebuilt or not

    def _rebuild_staged(self, f: FileSpec, staged: Path, out: Path) -> None:
        rnd = self.manifest.round_index
        if f.pagemap is None:  # Manifest.from_dict guarantees it; a hand-made manifest may not
            raise IntegrityError(f"round {rnd}: pages file {f.name} has no pagemap")
        try:
            pm = delta.read_pagemap(self.round_dir / f.pagemap)
        except DataFormatError as exc:
            raise IntegrityError(f"round {rnd}: {exc}") from None
        n = pm.n_stored_pages
        # the pagemap fixes the rebuilt size: check it against the (bounded) declaration before writing
        if n * PAGE_SIZE_BYTES != f.size_bytes:
            raise IntegrityError(
                f"round {rnd}: {f.pagemap} describes {n} pages, {f.name} is declared {f.size_bytes} bytes"
            )
        bitmap_len = bitmap_bytes(n)
        payload_len = staged.stat().st_size if staged.exists() else 0
        if payload_len < bitmap_len:
            raise IntegrityError(f"round {rnd}: {f.name} delta shorter than its bitmap")
        mm: mmap.mmap | None = None
        payload: memoryview = memoryview(b"")
        try:
            if payload_len:
                with staged.open("rb") as fh:
                    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                payload = memoryview(mm)
            bitmap = np.frombuffer(payload[:bitmap_len], dtype=np.uint8)
            changed = np.unpackbits(bitmap, count=n).astype(bool)
            del bitmap
            self._rebuild_from(f, f.pagemap, pm, changed, payload[bitmap_len:], out)
        finally:
            # a failed rebuild's traceback may still hold views of the mapping; it is then unmapped when
            # they are collected
            with contextlib.suppress(BufferError):
                payload.release()
                if mm is not None:
                    mm.close()

    def _rebuild_from(self, f: FileSpec, pagemap: str, pm: delta.Pagemap, changed: np.ndarray,
                      changed_data: memoryview, out: Path) -> None:
        rnd = self.manifest.round_index
        prev_pm = prev_pages = None
        pm_spec = next((g for g in self.manifest.files if g.name == pagemap), None)
        try:
            if f.base is not None:
                prev_pages = self._prev(f.base, f"base pages file {f.base}")
                if pm_spec is not None and pm_spec.kind is FileKind.SAME:
                    # identical pagemap = identical page layout: patch the previous file in place
                    delta.patch_pages(prev_pages, changed, changed_data, out)
                    return
                prev_pm = delta.read_pagemap(self._prev(pagemap, f"base pagemap {pagemap}"))
            delta.rebuild_pages(prev_pm, prev_pages, pm, changed, changed_data, out, spare=self._spare(f.name))
        except DataFormatError as exc:
            raise IntegrityError(f"round {rnd}: {exc}") from None
