"""Readers for real GPS trace formats (see ``shared/data/traces/FORMATS.md``) -> :class:`RawTraces`.

- :func:`read_cabspotting`: San Francisco cabspotting (CRAWDAD epfl/mobility, doi:10.15783/C7J010), one file
  ``new_<cab>.txt`` per cab, lines ``lat lon occupancy unix_time`` NEWEST FIRST, optional ``_cabs.txt`` index;
  any of these files may be gzipped (``new_<cab>.txt.gz``, ``_cabs.txt.gz``), as the set is often kept.
- :func:`read_roma`: Rome taxis (CRAWDAD roma/taxi, doi:10.15783/C7QC7M), one big file of
  ``ID;YYYY-MM-DD HH:MM:SS[.ffffff]+01;POINT(LAT LON)`` lines sorted by time. Streamed in fixed 4 MiB chunks:
  memory is bounded by the fixes KEPT (taxi-id and time-window cut), never by the file size. Because the file
  is sorted by time, reading stops once a line is more than :data:`ROMA_SORT_SLACK_S` past ``end``
  (``stop_after_end=False`` reads to the end, e.g. to hash the whole file).
- :func:`read_csv`: a generic ``id,t,lat,lon`` CSV (header required, extra columns ignored, ``t`` in UNIX
  seconds or ISO-8601).

A malformed line raises :class:`DataFormatError` ``path:line: reason``; with ``lenient=True`` it is skipped
and counted (``RawTraces.skipped_lines``, first reasons in ``RawTraces.skip_reasons``). Times are UNIX
seconds (UTC). ``progress`` callbacks receive the number of bytes just consumed (for a progress bar).
"""

from __future__ import annotations

import calendar
import csv
import gzip
import hashlib
import io
import re
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.core.registry import suggest
from edgemigrate.mobility.traces import MAX_REASONS_KEPT, RawTraces, TimeLike, check_window, parse_time

Progress = Callable[[int], None]

CHUNK_BYTES = 4 << 20
"""Read size of the streaming readers; with the kept fixes this bounds the memory of a read."""

ROMA_SORT_SLACK_S = 600.0
"""The Rome file is sorted by time; a reader stops this long after ``end`` (guards against slight disorder)."""


class _Faults:
    """Raise on the first malformed line, or count and remember a few when lenient."""

    __slots__ = ("lenient", "path", "count", "reasons")

    def __init__(self, path: Path, lenient: bool) -> None:
        self.path, self.lenient = path, lenient
        self.count = 0
        self.reasons: list[str] = []

    def bad(self, line_no: int | None, reason: str, path: Path | None = None) -> None:
        err = DataFormatError(path or self.path, line_no, reason)
        if not self.lenient:
            raise err
        self.count += 1
        if len(self.reasons) < MAX_REASONS_KEPT:
            self.reasons.append(str(err))


def _iter_lines(fh: BinaryIO, hasher: hashlib._Hash, progress: Progress | None) -> Iterator[bytes]:
    """Yield lines (without ``\\n``) of a binary stream read in :data:`CHUNK_BYTES` chunks, hashing every byte."""
    tail = b""
    while True:
        chunk = fh.read(CHUNK_BYTES)
        if not chunk:
            break
        hasher.update(chunk)
        if progress is not None:
            progress(len(chunk))
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def _check_latlon(lat: float, lon: float) -> str | None:
    if not (-90.0 <= lat <= 90.0):
        return f"latitude {lat} outside [-90, 90]"
    if not (-180.0 <= lon <= 180.0):
        return f"longitude {lon} outside [-180, 180]"
    return None


def _normalise_ids(ids: Iterable[str | int] | None, what: str) -> set[str] | None:
    if ids is None:
        return None
    if isinstance(ids, (str, int)):
        ids = [ids]
    out = {str(i).strip() for i in ids}
    out.discard("")
    if not out:
        raise ValidationError(f"{what}: empty id list")
    return out


class _CountingReader:
    """A binary file that reports the bytes read from it (the compressed bytes, under a gzip reader)."""

    def __init__(self, fh: BinaryIO, progress: Progress) -> None:
        self._fh, self._progress = fh, progress

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._progress(len(data))
        return data


GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
"""What reading a damaged or truncated gzip file raises."""


@contextmanager
def _open_binary(path: Path, progress: Progress | None) -> Iterator[tuple[BinaryIO, Progress | None]]:
    """Open ``path`` for reading, decompressing a ``.gz`` file; yields the stream and the progress callback
    for :func:`_iter_lines` (None for gzip: there progress counts the compressed bytes, as the file sizes do)."""
    with path.open("rb") as fh:
        if path.name.endswith(".gz"):
            source = _CountingReader(fh, progress) if progress is not None else fh
            with gzip.GzipFile(fileobj=source, mode="rb") as gz:  # type: ignore[arg-type]
                yield gz, None  # type: ignore[misc]
        else:
            yield fh, progress


# --------------------------------------------------------------------------------------------- cabspotting

_CAB_ENTRY = re.compile(r'<cab\s+id="([^"]+)"')

CAB_FILE_SUFFIXES = (".txt", ".txt.gz")


def cabspotting_files(folder: str | Path) -> dict[str, Path]:
    """Cab id -> its file in a cabspotting folder: ``new_<cab>.txt``, else ``new_<cab>.txt.gz`` (a folder may
    hold either or both; both copies hold the same fixes, and the plain one is cheaper to read)."""
    files: dict[str, Path] = {}
    for suffix in reversed(CAB_FILE_SUFFIXES):
        for p in Path(folder).glob(f"new_*{suffix}"):
            if p.is_file():
                files[p.name[4:-len(suffix)]] = p
    return files


def _read_cab_index(path: Path, faults: _Faults) -> list[str]:
    try:
        with _open_binary(path, None) as (fh, _):
            text = fh.read().decode("utf-8", errors="replace")
    except GZIP_ERRORS as exc:
        raise DataFormatError(path, None, f"not a readable gzip file ({exc})") from None
    cabs: list[str] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _CAB_ENTRY.search(line)
        if m is None:
            faults.bad(line_no, f"expected <cab id=\"...\" updates=\"...\"/>, got {line.strip()[:60]!r}", path)
            continue
        cabs.append(m.group(1))
    return cabs


Track = tuple[array, array, array]
"""One id's fixes as read: UNIX seconds, latitudes, longitudes (``array('d')``: 8 bytes per value)."""


def _time_window(start: TimeLike, end: TimeLike) -> tuple[float | None, float | None]:
    start_s, end_s = parse_time(start, what="start"), parse_time(end, what="end")
    check_window(start_s, end_s)
    return start_s, end_s


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    return path


def _require_ids(path: Path, label: str, wanted: set[str] | None, found: Iterable[str], known: set[str],
                 where: str = "") -> None:
    """Raise naming the wanted ids without a kept fix (and the closest of the ``known`` ids)."""
    if wanted is None:
        return
    missing = sorted(wanted - set(found))
    if missing:
        listed = ", ".join(missing[:5])
        raise ValidationError(f"{path}: {label} {listed} have no fix{where}{suggest(missing[0], known)}")


def _raw_traces(tracks: Mapping[str, Track], source: Path, sha256: str, reader: str, options: dict[str, Any],
                faults: _Faults, lines_read: int) -> RawTraces:
    return RawTraces.from_lists(
        tracks,
        source=str(source),
        sha256=sha256,
        reader=reader,
        options=options,
        skipped_lines=faults.count,
        skip_reasons=tuple(faults.reasons),
        lines_read=lines_read,
    )


def read_cabspotting(
    folder: str | Path,
    *,
    cab_ids: Iterable[str] | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    lenient: bool = False,
    progress: Progress | None = None,
) -> RawTraces:
    """Read a cabspotting folder (``new_<cab>.txt`` files, optional ``_cabs.txt``) into :class:`RawTraces`.

    ``cab_ids`` selects cabs (unknown ones are an error with a suggestion); ``start``/``end`` keep fixes with
    ``start <= t < end``. Cabs are listed from ``_cabs.txt`` when present (a listed cab without its file is a
    malformed index line), else from the ``new_*.txt`` files, in sorted order. Every file may be gzipped
    (``new_<cab>.txt.gz``, ``_cabs.txt.gz``; see :func:`cabspotting_files`). ``sha256`` hashes the names and
    the (decompressed) contents of the files read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, None, "not a directory (expected the cabspotting folder with new_<cab>.txt files)")
    start_s, end_s = _time_window(start, end)
    faults = _Faults(folder, lenient)
    files = cabspotting_files(folder)
    cabs, wanted = _select_cabs(folder, files, cab_ids, faults)
    folder_hash = hashlib.sha256()
    tracks: dict[str, Track] = {}
    lines_read = 0
    for cab in cabs:
        path = files[cab]
        tracks[cab], file_sha256, n_lines = _read_cab_file(path, start_s, end_s, faults, progress)
        lines_read += n_lines
        folder_hash.update(f"{path.name}\0{file_sha256}\n".encode())
    options = {"cab_ids": sorted(wanted) if wanted else None, "start_s": start_s, "end_s": end_s, "lenient": lenient}
    return _raw_traces(tracks, folder, folder_hash.hexdigest(), "cabspotting", options, faults, lines_read)


def _select_cabs(folder: Path, files: dict[str, Path], cab_ids: Iterable[str] | None,
                 faults: _Faults) -> tuple[list[str], set[str] | None]:
    """The cabs to read, in the index's order (or sorted), cut to ``cab_ids``; and the wanted ids."""
    index = next((p for p in (folder / "_cabs.txt", folder / "_cabs.txt.gz") if p.is_file()), None)
    if index is not None:
        cabs = []
        for cab in _read_cab_index(index, faults):
            if cab in files:
                cabs.append(cab)
            else:
                faults.bad(None, f"cab '{cab}' is listed but new_{cab}.txt is missing (and no new_{cab}.txt.gz)", index)
    else:
        cabs = sorted(files)
    if not cabs:
        raise DataFormatError(folder, None, "no cab files (new_<cab>.txt or new_<cab>.txt.gz) found")
    wanted = _normalise_ids(cab_ids, "cab_ids")
    if wanted is not None:
        unknown = sorted(wanted - set(cabs))
        if unknown:
            raise ValidationError(f"{folder}: unknown cab '{unknown[0]}'{suggest(unknown[0], cabs)}")
        cabs = [c for c in cabs if c in wanted]
    return cabs, wanted


def _read_cab_file(path: Path, start_s: float | None, end_s: float | None, faults: _Faults,
                   progress: Progress | None) -> tuple[Track, str, int]:
    """One cab's fixes in the window, the sha256 of its (decompressed) bytes, and its line count."""
    t_arr, lat_arr, lon_arr = array("d"), array("d"), array("d")
    file_hash = hashlib.sha256()
    line_no = 0
    try:
        with _open_binary(path, progress) as (fh, line_progress):
            for line_no, raw in enumerate(_iter_lines(fh, file_hash, line_progress), 1):
                parts = raw.split()
                if not parts:
                    continue
                if len(parts) != 4:
                    faults.bad(line_no, f"expected 4 fields 'lat lon occupancy unix_time', got {len(parts)}", path)
                    continue
                try:
                    lat, lon, t = float(parts[0]), float(parts[1]), float(int(parts[3]))
                    occupancy = int(parts[2])
                except ValueError:
                    faults.bad(line_no, f"non-numeric field in {raw.decode(errors='replace').strip()[:60]!r}", path)
                    continue
                if occupancy not in (0, 1):
                    faults.bad(line_no, f"occupancy must be 0 or 1, got {occupancy}", path)
                    continue
                problem = _check_latlon(lat, lon)
                if problem:
                    faults.bad(line_no, problem, path)
                    continue
                if (start_s is not None and t < start_s) or (end_s is not None and t >= end_s):
                    continue
                t_arr.append(t)
                lat_arr.append(lat)
                lon_arr.append(lon)
    except GZIP_ERRORS as exc:
        # a damaged or cut-off download; lenient keeps the fixes read before the damage
        after = f" after line {line_no}" if line_no else ""
        faults.bad(None, f"not a readable gzip file{after} ({exc})", path)
    return (t_arr, lat_arr, lon_arr), file_hash.hexdigest(), line_no


# --------------------------------------------------------------------------------------------------- roma

_ROMA_LINE = re.compile(
    rb"^\s*([^;\s]+);(\d{4}-\d\d-\d\d[ T]\d\d:\d\d):(\d\d)(\.\d{1,9})?([+-]\d\d(?::?\d\d)?);"
    rb"POINT\(\s*([^\s()]+)\s+([^\s()]+)\s*\)\s*$"
)


def _minute_epoch(minute: bytes, tz: bytes) -> float | str:
    """UNIX seconds of ``YYYY-MM-DD HH:MM`` at UTC offset ``+HH[[:]MM]``, or the reason it is invalid."""
    year, month, day = int(minute[0:4]), int(minute[5:7]), int(minute[8:10])
    hour, mins = int(minute[11:13]), int(minute[14:16])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return f"invalid date {minute[:10].decode()!r}"
    if hour > 23 or mins > 59:
        return f"invalid time of day {minute[11:].decode()}"
    offset = int(tz[1:3]) * 3600 + (int(tz[-2:]) * 60 if len(tz) > 3 else 0)
    if tz[:1] == b"-":
        offset = -offset
    return float(calendar.timegm((year, month, day, hour, mins, 0)) - offset)


def _roma_reason(raw: bytes) -> str:
    text = raw.decode(errors="replace").strip()
    fields = text.split(";")
    if len(fields) != 3:
        return f"expected 3 ';'-separated fields 'ID;TIME;POINT(LAT LON)', got {len(fields)}"
    if not fields[2].startswith("POINT("):
        return f"third field must be POINT(LAT LON), got {fields[2][:40]!r}"
    if not re.match(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:?\d\d)?$", fields[1]):
        return f"time must be YYYY-MM-DD HH:MM:SS[.ffffff]+HH, got {fields[1][:40]!r}"
    return f"malformed line {text[:80]!r}"


def read_roma(
    path: str | Path,
    *,
    taxi_ids: Iterable[str | int] | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    lenient: bool = False,
    stop_after_end: bool = True,
    progress: Progress | None = None,
) -> RawTraces:
    """Stream the Rome taxi file (or its ``.gz``) into :class:`RawTraces`, keeping ``taxi_ids`` within
    ``start <= t < end``.

    Every line read is validated (id, time incl. its UTC offset, POINT with LATITUDE first). Memory holds
    one 4 MiB chunk plus the kept fixes (3 float64 per fix). ``sha256`` covers the bytes read; the options
    record ``bytes_read`` and ``complete`` (False when reading stopped after ``end``).
    """
    path = _existing_file(path)
    start_s, end_s = _time_window(start, end)
    wanted = _normalise_ids(taxi_ids, "taxi_ids")
    stop_s = end_s + ROMA_SORT_SLACK_S if (end_s is not None and stop_after_end) else None
    faults = _Faults(path, lenient)
    try:
        scan = _scan_roma(path, wanted, start_s, end_s, stop_s, faults, progress)
    except GZIP_ERRORS as exc:
        raise DataFormatError(path, None, f"not a readable gzip file ({exc})") from None
    named = {k.decode(errors="replace"): v for k, v in scan.tracks.items()}
    in_window = " in the time window" if start_s is not None or end_s is not None else ""
    known = {i.decode(errors="replace") for i in scan.other_ids} | set(named)
    _require_ids(path, "taxi id(s)", wanted, named, known, in_window)
    ordered = dict(sorted(named.items(), key=lambda kv: (len(kv[0]), kv[0])))  # numeric ids in numeric order
    options = {"taxi_ids": sorted(wanted) if wanted else None, "start_s": start_s, "end_s": end_s,
               "lenient": lenient, "bytes_read": scan.bytes_read, "complete": scan.complete}
    return _raw_traces(ordered, path, scan.sha256, "roma", options, faults, scan.lines_read)


@dataclass(frozen=True, slots=True)
class _RomaScan:
    """What one pass over the Rome file found."""

    tracks: dict[bytes, Track]  # kept fixes per taxi id, in order of first kept fix
    other_ids: set[bytes]  # ids seen but not wanted (for the suggestion when a wanted id has no fix)
    sha256: str
    bytes_read: int
    lines_read: int
    complete: bool  # False when reading stopped past ``end`` (the file is sorted by time)


def _scan_roma(path: Path, wanted: set[str] | None, start_s: float | None, end_s: float | None,
               stop_s: float | None, faults: _Faults, progress: Progress | None) -> _RomaScan:
    """Validate every line and keep the wanted fixes in the window. One loop with the per-line work inline
    (locals, no calls on the common path): this loop is what the read speed of a 1.3 GB file is made of."""
    wanted_b = {w.encode() for w in wanted} if wanted is not None else None
    tracks: dict[bytes, Track] = {}
    minute_cache: dict[bytes, float | str] = {}
    last_minute = last_tz = b""
    last_base, minute_ok, minute_reason = 0.0, False, ""
    seen: set[bytes] = set()
    hasher = hashlib.sha256()
    bytes_read = 0
    complete = True
    line_no = 0

    def count(n: int) -> None:
        nonlocal bytes_read
        bytes_read += n
        if progress is not None:
            progress(n)

    match = _ROMA_LINE.match
    with _open_binary(path, count) as (fh, line_progress):
        for raw in _iter_lines(fh, hasher, line_progress):
            line_no += 1
            m = match(raw)
            if m is None:
                if raw.strip():
                    faults.bad(line_no, _roma_reason(raw))
                continue
            ident, minute, ss, frac, tz, a, b = m.groups()
            if minute != last_minute or tz != last_tz:  # the file is time-sorted: about one miss per minute
                base = minute_cache.get(minute + tz)
                if base is None:
                    base = minute_cache[minute + tz] = _minute_epoch(minute, tz)
                last_minute, last_tz = minute, tz
                minute_ok = not isinstance(base, str)
                if minute_ok:
                    last_base = float(base)
                    if stop_s is not None and last_base > stop_s:
                        complete = False
                        break
                else:
                    minute_reason = str(base)
            if not minute_ok:
                faults.bad(line_no, minute_reason)
                continue
            if ss > b"60":
                faults.bad(line_no, f"invalid seconds {ss.decode()}")
                continue
            if wanted_b is not None and ident not in wanted_b:
                seen.add(ident)
                continue
            t = last_base + int(ss) + float(frac) if frac else last_base + int(ss)
            if (start_s is not None and t < start_s) or (end_s is not None and t >= end_s):
                continue
            try:
                lat, lon = float(a), float(b)
            except ValueError:
                faults.bad(line_no, f"non-numeric coordinate in POINT({a.decode(errors='replace')} "
                                    f"{b.decode(errors='replace')})")
                continue
            problem = _check_latlon(lat, lon)
            if problem:
                faults.bad(line_no, problem + " (POINT holds LATITUDE first)")
                continue
            track = tracks.get(ident)
            if track is None:
                track = tracks[ident] = (array("d"), array("d"), array("d"))
            track[0].append(t)
            track[1].append(lat)
            track[2].append(lon)
    return _RomaScan(tracks, seen, hasher.hexdigest(), bytes_read, line_no, complete)


# ---------------------------------------------------------------------------------------------------- csv

CSV_COLUMNS = ("id", "t", "lat", "lon")


def read_csv(
    path: str | Path,
    *,
    ids: Iterable[str] | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    lenient: bool = False,
    progress: Progress | None = None,
) -> RawTraces:
    """Read a generic ``id,t,lat,lon`` CSV (header required, any column order, extra columns ignored).

    ``t`` is UNIX seconds or ISO-8601 (no offset = UTC). Rows may come in any order.
    """
    path = _existing_file(path)
    start_s, end_s = _time_window(start, end)
    wanted = _normalise_ids(ids, "ids")
    faults = _Faults(path, lenient)
    hasher = hashlib.sha256()
    tracks: dict[str, Track] = {}
    seen: set[str] = set()
    with path.open("rb") as fb:
        lines = _HashingLines(io.TextIOWrapper(fb, encoding="utf-8-sig", newline=""), hasher, progress)
        reader = csv.reader(lines)
        pos = _csv_header(path, next(reader, None))
        line_no = _scan_csv(reader, lines, pos, wanted, start_s, end_s, faults, tracks, seen)
    _require_ids(path, "id(s)", wanted, tracks, seen | set(tracks))
    options = {"ids": sorted(wanted) if wanted else None, "start_s": start_s, "end_s": end_s, "lenient": lenient}
    return _raw_traces(tracks, path, hasher.hexdigest(), "csv", options, faults, line_no)


def _csv_header(path: Path, header: list[str] | None) -> list[int]:
    """The positions of ``id``, ``t``, ``lat``, ``lon`` in the header row (any order, any case)."""
    if header is None:
        raise DataFormatError(path, 1, "empty file (expected header id,t,lat,lon)")
    cols = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise DataFormatError(path, 1, f"header lacks column(s) {', '.join(missing)} (expected id,t,lat,lon)")
    return [cols.index(c) for c in CSV_COLUMNS]


def _scan_csv(reader: Iterator[list[str]], lines: _HashingLines, pos: list[int], wanted: set[str] | None,
              start_s: float | None, end_s: float | None, faults: _Faults, tracks: dict[str, Track],
              seen: set[str]) -> int:
    """Validate the rows after the header, add the wanted fixes in the window to ``tracks`` and the other ids
    to ``seen``; returns the physical line number of the last row (1 when there is none)."""
    width = max(pos) + 1
    line_no = 1
    for row in reader:
        line_no = lines.line_no
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) < width:
            faults.bad(line_no, f"expected at least {width} fields, got {len(row)}")
            continue
        ident, t_text, lat_text, lon_text = (row[i].strip() for i in pos)
        if not ident:
            faults.bad(line_no, "empty id")
            continue
        try:
            t = _csv_time(t_text)
            lat, lon = float(lat_text), float(lon_text)
        except (ValidationError, ValueError) as exc:
            faults.bad(line_no, str(exc) if isinstance(exc, ValidationError) else f"non-numeric lat/lon ({exc})")
            continue
        problem = _check_latlon(lat, lon)
        if problem:
            faults.bad(line_no, problem)
            continue
        if wanted is not None and ident not in wanted:
            seen.add(ident)
            continue
        if (start_s is not None and t < start_s) or (end_s is not None and t >= end_s):
            continue
        track = tracks.get(ident)
        if track is None:
            track = tracks[ident] = (array("d"), array("d"), array("d"))
        track[0].append(t)
        track[1].append(lat)
        track[2].append(lon)
    return line_no


def _csv_time(text: str) -> float:
    t = parse_time(text, what="t")
    if t is None:  # pragma: no cover - parse_time only returns None for None
        raise ValidationError("t: empty")
    return t


class _HashingLines:
    """Iterate text lines while hashing their UTF-8 bytes and tracking the physical line number."""

    def __init__(self, text: io.TextIOWrapper, hasher: hashlib._Hash, progress: Progress | None) -> None:
        self._text, self._hasher, self._progress = text, hasher, progress
        self.line_no = 0

    def __iter__(self) -> _HashingLines:
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.line_no += 1
        data = line.encode("utf-8")
        self._hasher.update(data)
        if self._progress is not None:
            self._progress(len(data))
        return line
