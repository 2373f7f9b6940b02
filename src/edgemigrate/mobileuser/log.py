"""The mobile user's request log (one JSON object per line) and the counter-continuity check.

Every offloading request is logged: ``seq`` (the MU's own count), ``send_s``/``recv_s`` (the MU's clock;
``recv_s`` is null when no reply came), ``server`` (the host that held the service when the reply arrived),
``bs`` (the serving base station at send time), ``reply`` (the counter the service returned), ``error`` and
``proc_s`` (the server's processing time when its reply carries one - facedetect's UPLOAD - else null; the rest
of the delay, ``recv_s - send_s - proc_s``, is transmission, propagation and queueing: Ngo et al. 2020, fig. 4).

Ngo et al. 2020, sec. V-A check the service's counter "before and after migration to ensure consistent state".
We check every reply: the Simple counter service increments once per request, so consecutive answered
replies must rise by exactly one - or by up to one more per request in between that got no reply (the server
may have counted it before the reply was lost). A counter that goes backwards or repeats means state was lost
or a request was answered twice; a larger jump means state came from somewhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from edgemigrate.core.errors import DataFormatError
from edgemigrate.core.ids import check_id

MAX_LINE_BYTES = 4096  # a record is ~200 bytes; anything longer is not ours
MAX_ERROR_CHARS = 200
_FIELDS = ("seq", "send_s", "recv_s", "server", "bs", "reply", "error", "proc_s")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    seq: int
    send_s: float
    recv_s: float | None
    server: str | None
    bs: str | None
    reply: int | None
    error: str | None = None
    proc_s: float | None = None

    @property
    def answered(self) -> bool:
        return self.reply is not None

    @property
    def delay_s(self) -> float | None:
        return None if self.recv_s is None else self.recv_s - self.send_s

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)


def _num(raw: dict, key: str, where: str, *, optional: bool) -> float | None:
    v = raw.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise DataFormatError(where, None, f"'{key}' must be a non-negative number, got {v!r:.80}")
    return float(v)


def _opt_id(raw: dict, key: str, where: str) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    try:
        return check_id(v, f"'{key}'")
    except ValueError as exc:
        raise DataFormatError(where, None, str(exc)) from None


def parse_line(line: str, where: str = "request log") -> RequestRecord:
    """One validated record from a log line; a one-line :class:`DataFormatError` naming the key otherwise."""
    if len(line) > MAX_LINE_BYTES:
        raise DataFormatError(where, None, f"line of {len(line)} bytes, at most {MAX_LINE_BYTES}")
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFormatError(where, None, f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise DataFormatError(where, None, f"expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise DataFormatError(where, None, f"unknown key '{unknown[0]}'")
    seq, reply, error = raw.get("seq"), raw.get("reply"), raw.get("error")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise DataFormatError(where, None, f"'seq' must be a non-negative integer, got {seq!r:.80}")
    if reply is not None and (isinstance(reply, bool) or not isinstance(reply, int)):
        raise DataFormatError(where, None, f"'reply' must be an integer or null, got {reply!r:.80}")
    if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR_CHARS):
        raise DataFormatError(where, None, f"'error' must be a string of at most {MAX_ERROR_CHARS} characters")
    send_s = _num(raw, "send_s", where, optional=False)
    recv_s = _num(raw, "recv_s", where, optional=True)
    assert send_s is not None
    if recv_s is not None and recv_s < send_s:
        raise DataFormatError(where, None, f"'recv_s' {recv_s} is before 'send_s' {send_s}")
    proc_s = _num(raw, "proc_s", where, optional=True)
    if proc_s is not None and (recv_s is None or proc_s > recv_s - send_s + 1e-6):
        raise DataFormatError(where, None, f"'proc_s' {proc_s} exceeds the request's delay")
    return RequestRecord(seq, send_s, recv_s, _opt_id(raw, "server", where), _opt_id(raw, "bs", where), reply,
                         error, proc_s)


def read_log(path: str | Path, *, max_records: int = 10_000_000) -> Iterator[RequestRecord]:
    p = Path(path)
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if n > max_records:
                raise DataFormatError(p, None, f"more than {max_records} records")
            if line.strip():
                yield parse_line(line.rstrip("\n"), f"{p}:{n}")


def write_record(fh: IO[str], rec: RequestRecord) -> None:
    fh.write(rec.to_line() + "\n")


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """Result of :func:`check_counter`: ``ok`` unless a reply went backwards, repeated or jumped too far."""

    answered: int
    unanswered: int
    first: int | None
    last: int | None
    violations: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


def check_counter(records: Iterable[RequestRecord], *, max_violations: int = 20) -> CounterCheck:
    """Check the counter replies of ``records`` (in the order they were sent) for continuity."""
    answered = unanswered = 0
    first = last = None
    pending = 0  # unanswered requests since the last answered one
    last_seq = -1
    bad: list[str] = []
    for r in records:
        if r.seq <= last_seq and len(bad) < max_violations:
            bad.append(f"seq {r.seq}: out of order after seq {last_seq}")
        last_seq = max(last_seq, r.seq)
        if r.reply is None:
            unanswered += 1
            pending += 1
            continue
        answered += 1
        if last is not None and not last < r.reply <= last + 1 + pending and len(bad) < max_violations:
            what = "went backwards" if r.reply < last else "repeated" if r.reply == last else "skipped"
            bad.append(f"seq {r.seq}: counter {what}: {last} -> {r.reply} with {pending} unanswered in between")
        first = r.reply if first is None else first
        last, pending = r.reply, 0
    return CounterCheck(answered, unanswered, first, last, tuple(bad))
