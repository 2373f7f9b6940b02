"""ApacheBench load during a migration, and its per-second throughput / QPS timeline (Zhang et al. 2019,
section VI-C).

Zhang et al. 2019 run ``ab -c 100 -n 50000`` against a 512 KB static page in the migrating container and plot
the throughput (Mb/s) and the queries per second of every second of the migration, compressed vs uncompressed.
:class:`LoadGenerator` runs Debian's ``ab`` (package ``apache2-utils``) the same way - optionally inside a
testbed host's network namespace - with::

    ab -q -r -k -v 1 -c C -t T -n N -s S -g requests.tsv URL

``-t`` is an upper bound (the generator is stopped with SIGINT once the migration is over: ab then prints its
summary and writes ``-g`` as at a normal end); ``-r`` keeps ab going on socket receive errors, each of which
ab reports on stderr at ``-v 1`` - we time-stamp those lines as they arrive (the per-second ``failed``);
``-k`` keeps the ~C connections open, so they are migrated as established TCP connections; ``-s`` is how
long ab waits without any socket event before it aborts the whole test (so it is set well above the frozen
window).

What each source gives, and its resolution:

* ``-g`` (gnuplot) records, one per finished request: ``starttime`` (ctime text), ``seconds`` (the start as
  whole epoch seconds - ab's resolution), ``ctime``/``dtime``/``ttime``/``wait`` in ms. A request finished
  at ``seconds + ttime`` plus an unknown fraction of a second; we take the midpoint (+0.5 s), so a
  completion time is good to +-0.5 s and the timeline is binned by whole seconds.
* The client's network interface counters (``/proc/<ab pid>/net/dev``, sampled every ``sample_s``): the bytes
  the client really received per second, TCP/IP headers included - the throughput curve (``mbit_s``).
  Without samples (no such interface) the throughput is completions x the mean response size from ab's
  summary.
* ab's summary (stdout): completed / failed requests by kind, document and transfer sizes.

A parse error names the file and line (:class:`~edgemigrate.core.errors.DataFormatError`); a missing ``ab``
is one :class:`~edgemigrate.core.errors.EngineError` line saying how to install it. A migration under this load
is driven by :mod:`edgemigrate.experiments.under_load`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ConfigError, DataFormatError, EngineError

AB = "ab"
GNUPLOT_HEADER = ("starttime", "seconds", "ctime", "dtime", "ttime", "wait")
_ERROR_LINE = re.compile(r"^(apr_\w+|SSL read failed|Test aborted)")


# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True, slots=True)
class RequestRecords:
    """ab's ``-g`` records, one entry per finished request (arrays of equal length)."""

    start_s: NDArray[np.int64]  # epoch seconds the request started (whole seconds: ab's resolution)
    connect_ms: NDArray[np.float64]
    total_ms: NDArray[np.float64]
    wait_ms: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.start_s.size)

    def done_s(self) -> NDArray[np.float64]:
        """Estimated completion time (epoch s): start second + 0.5 (its midpoint) + total time."""
        return self.start_s.astype(np.float64) + 0.5 + self.total_ms / 1000.0


def parse_gnuplot(path: Path) -> RequestRecords:
    """Read an ``ab -g`` file: a header line, then ``ctime-text TAB seconds TAB ctime TAB dtime TAB ttime TAB wait``."""
    starts: list[int] = []
    vals: list[tuple[float, float, float]] = []
    try:
        fh = path.open(encoding="ascii", errors="strict")
    except OSError as exc:
        raise DataFormatError(str(path), None, f"cannot read: {exc.strerror}") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("\t")
                if lineno == 1:
                    if tuple(parts) != GNUPLOT_HEADER:
                        raise DataFormatError(str(path), 1, f"expected the ab -g header {' '.join(GNUPLOT_HEADER)}")
                    continue
                if not line.strip():
                    continue
                if len(parts) != 6:
                    raise DataFormatError(str(path), lineno, f"expected 6 tab-separated fields, got {len(parts)}")
                try:
                    sec, c, _d, t, w = (int(x) for x in parts[1:])
                except ValueError:
                    raise DataFormatError(str(path), lineno, "seconds/ctime/dtime/ttime/wait must be integers") \
                        from None
                if sec <= 0 or min(c, t, w) < 0:
                    raise DataFormatError(str(path), lineno, "negative time or non-positive epoch second")
                starts.append(sec)
                vals.append((float(c), float(t), float(w)))
        except UnicodeDecodeError:
            raise DataFormatError(str(path), None, "not an ASCII ab -g file") from None
    if not starts and path.stat().st_size == 0:
        raise DataFormatError(str(path), 1, "empty file (no ab -g header)")
    arr = np.array(vals, dtype=np.float64).reshape(-1, 3)
    return RequestRecords(np.array(starts, dtype=np.int64), arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


@dataclass(frozen=True, slots=True)
class AbSummary:
    """The counters of ab's text summary."""

    complete: int
    failed: int
    failed_connect: int
    failed_receive: int
    failed_length: int
    failed_exceptions: int
    non_2xx: int
    document_bytes: int
    total_bytes: int
    html_bytes: int
    time_taken_s: float

    @property
    def response_bytes(self) -> float:
        """Bytes of one complete response: the document plus ab's mean header bytes per request.

        (``total_bytes`` also counts the partial responses in flight when the test ended.)"""
        if self.complete <= 0:
            return float(self.document_bytes)
        return self.document_bytes + max(0, self.total_bytes - self.html_bytes) / self.complete


_SUMMARY_FIELDS = {
    "complete": re.compile(r"^Complete requests:\s+(\d+)", re.M),
    "failed": re.compile(r"^Failed requests:\s+(\d+)", re.M),
    "document_bytes": re.compile(r"^Document Length:\s+(\d+) bytes", re.M),
    "total_bytes": re.compile(r"^Total transferred:\s+(\d+) bytes", re.M),
    "html_bytes": re.compile(r"^HTML transferred:\s+(\d+) bytes", re.M),
    "time_taken_s": re.compile(r"^Time taken for tests:\s+([0-9.]+) seconds", re.M),
}
_BREAKDOWN = re.compile(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)")
_NON_2XX = re.compile(r"^Non-2xx responses:\s+(\d+)", re.M)


def parse_summary(text: str, path: Path | str = "<ab stdout>") -> AbSummary:
    """Parse ab's summary; a missing counter names the file and the line ab should have printed."""
    got: dict[str, Any] = {}
    for key, rx in _SUMMARY_FIELDS.items():
        m = rx.search(text)
        if m is None:
            if key == "document_bytes" and "Document Length:" not in text and "Complete requests:        0" in text:
                got[key] = 0  # no response at all: ab prints no document length
                continue
            raise DataFormatError(str(path), None, f"ab summary has no '{rx.pattern[1:].split(':')[0]}:' line")
        got[key] = float(m.group(1)) if key == "time_taken_s" else int(m.group(1))
    b = _BREAKDOWN.search(text)
    conn, recv, length, exc = (int(x) for x in b.groups()) if b else (0, 0, 0, 0)
    n2 = _NON_2XX.search(text)
    return AbSummary(got["complete"], got["failed"], conn, recv, length, exc, int(n2.group(1)) if n2 else 0,
                     got["document_bytes"], got["total_bytes"], got["html_bytes"], got["time_taken_s"])


# ------------------------------------------------------------------------------------------ running


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """ab's knobs (Zhang et al. 2019: ``-c 100 -n 50000``)."""

    concurrency: int = 100
    max_duration_s: float = 900.0  # ab's -t: an upper bound; stop() ends it earlier
    max_requests: int = 50000  # ab's -n
    # ab's -s: when no socket has had an event for this long ab gives up entirely (it does not count a failed
    # request and go on), so it must exceed the longest frozen window expected - minutes on a slow link
    timeout_s: float = 300.0
    keepalive: bool = True
    sample_s: float = 0.1  # interface-counter sampling period

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_requests < self.concurrency:
            raise ConfigError(f"load: concurrency {self.concurrency} must be >= 1 and <= max_requests "
                              f"{self.max_requests}")
        if self.max_duration_s < 1 or self.timeout_s < 1 or not 0.01 <= self.sample_s <= 1.0:
            raise ConfigError("load: max_duration_s and timeout_s must be >= 1 s, sample_s in 0.01..1 s")


@dataclass(frozen=True, slots=True)
class LoadResult:
    records: RequestRecords
    summary: AbSummary
    nic_t_s: NDArray[np.float64]  # epoch seconds of the interface samples
    nic_rx_bytes: NDArray[np.float64]  # cumulative received bytes at those times
    error_t_s: NDArray[np.float64]  # epoch seconds at which ab reported a failed request on stderr
    started_s: float
    ended_s: float
    out_dir: Path


def ab_available() -> str | None:
    """The path of ``ab``, or None."""
    return shutil.which(AB)


def _rx_bytes(pid: int, iface: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except OSError:
        return None
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == iface:
            return float(rest.split()[0])
    return None


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """What a running :class:`LoadGenerator` has seen so far."""

    nic_samples: int  # interface-counter samples taken
    read_bytes: int  # bytes ab has read (``rchar`` of /proc/<pid>/io): its responses, unlike the interface
    # counters, which count whatever else crosses the interface too
    errors_reported: int  # failed requests ab reported on stderr


@dataclass
class LoadGenerator:
    """``ab`` against ``url`` (in ``netns_path`` if given); ``start()``, then ``stop()`` -> :class:`LoadResult`."""

    url: str
    out_dir: Path
    cfg: LoadConfig = field(default_factory=LoadConfig)
    netns_path: str | None = None
    iface: str = "eth0"
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    _errors: list[float] = field(default_factory=list)
    _nic: list[tuple[float, float]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def gnuplot_path(self) -> Path:
        return self.out_dir / "requests.tsv"

    @property
    def summary_path(self) -> Path:
        return self.out_dir / "ab.txt"

    def argv(self) -> list[str]:
        c = self.cfg
        ab = ["-q", "-r", "-v", "1", "-c", str(c.concurrency), "-t", str(int(np.ceil(c.max_duration_s))),
              "-n", str(c.max_requests), "-s", str(int(np.ceil(c.timeout_s))), "-g", str(self.gnuplot_path)]
        if c.keepalive:
            ab.insert(0, "-k")
        path = ab_available()
        if path is None:
            raise EngineError("ab (ApacheBench) not found: install it with `apt-get install apache2-utils` "
                              "(scripts/install-system-deps)")
        prefix = ["nsenter", f"--net={self.netns_path}", "--"] if self.netns_path else []
        return [*prefix, path, *ab, self.url]

    def start(self) -> LoadGenerator:
        argv = self.argv()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.gnuplot_path.unlink(missing_ok=True)
        # taken before ab exists: then no request ab records can have started before it
        self.started_s = time.time()
        with self.summary_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._threads = [threading.Thread(target=self._read_errors, daemon=True),
                         threading.Thread(target=self._sample_nic, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def _read_errors(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with (self.out_dir / "ab.err").open("w") as log:
            for raw in self.proc.stderr:
                now = time.time()
                line = raw.decode("utf-8", "replace").rstrip()
                log.write(f"{now:.3f} {line}\n")
                if _ERROR_LINE.match(line):
                    self._errors.append(now)

    def _sample_nic(self) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        # nsenter enters the namespace and then execs ab under the same pid: count only once it is inside
        target = os.stat(self.netns_path).st_ino if self.netns_path else os.stat("/proc/self/ns/net").st_ino
        while not self._done.is_set() and self.proc.poll() is None:
            try:
                inside = os.stat(f"/proc/{pid}/ns/net").st_ino == target
            except OSError:
                inside = False
            v = _rx_bytes(pid, self.iface) if inside else None
            if v is not None:
                self._nic.append((time.time(), v))
            self._done.wait(self.cfg.sample_s)

    def progress(self) -> LoadProgress:
        """A snapshot while ab runs, so a caller can wait for the load to have done something (rather than
        for some time to have passed)."""
        read = 0
        if self.proc is not None:
            try:
                for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
                    if line.startswith("rchar:"):
                        read = int(line.split()[1])
            except OSError:  # ab has ended (or this is not Linux)
                pass
        return LoadProgress(len(self._nic), read, len(self._errors))

    def stop(self, timeout_s: float = 30.0) -> LoadResult:
        """End ab (SIGINT: it writes its summary and ``-g`` file as at a normal end) and read its results."""
        if self.proc is None:
            raise EngineError("load generator was not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise EngineError(f"ab did not stop within {timeout_s:.0f} s after SIGINT; see {self.out_dir}") from None
        ended = time.time()
        self._done.set()
        for t in self._threads:
            t.join(5)
        text = self.summary_path.read_text(errors="replace")
        if "Complete requests:" not in text:
            tail = (self.out_dir / "ab.err").read_text(errors="replace").strip().splitlines()[-1:]
            raise EngineError(f"ab exited ({rc}) without a summary: {tail[0] if tail else 'no message'} "
                              f"(see {self.out_dir})")
        summary = parse_summary(text, self.summary_path)
        records = parse_gnuplot(self.gnuplot_path)
        nic = np.array(self._nic, dtype=np.float64).reshape(-1, 2)
        return LoadResult(records, summary, nic[:, 0].copy(), nic[:, 1].copy(),
                          np.array(self._errors, dtype=np.float64), self.started_s, ended, self.out_dir)

    def kill(self) -> None:
        """Abandon the run (on an error elsewhere)."""
        self._done.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# ------------------------------------------------------------------------------------------ timeline


@dataclass(frozen=True, slots=True)
class MigrationMarks:
    """Epoch seconds of a migration's start, the final freeze, the resume on the destination, and its end."""

    start_s: float
    freeze_s: float
    resume_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not self.start_s <= self.freeze_s <= self.resume_s <= self.end_s + 1e-3:
            raise EngineError(f"migration marks out of order: {self}")

    def relative(self, t0: float) -> dict[str, float]:
        return {k: round(getattr(self, k) - t0, 3) for k in ("start_s", "freeze_s", "resume_s", "end_s")}


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-second series from ``t0`` (left bin edges ``t_s``)."""

    t_s: NDArray[np.float64]
    qps: NDArray[np.float64]  # requests completed in the bin / bin width
    mbit_s: NDArray[np.float64]  # client-received Mbit per second
    failed: NDArray[np.int64]  # failed requests ab reported in the bin
    bin_s: float
    mbit_source: str  # "interface" (client NIC counters) or "requests" (completions x response size)


def timeline(result: LoadResult, t0: float, t1: float | None = None, bin_s: float = 1.0) -> Timeline:
    """Bin ``result`` into ``bin_s`` intervals from ``t0`` to ``t1`` (default: when ab stopped)."""
    t1 = result.ended_s if t1 is None else t1
    n = max(1, int(np.floor((t1 - t0) / bin_s)))  # whole bins only (a partial last bin would read low)
    edges = t0 + bin_s * np.arange(n + 1)
    done = result.records.done_s()
    counts = np.histogram(done, bins=edges)[0].astype(np.float64)
    failed = np.histogram(result.error_t_s, bins=edges)[0].astype(np.int64)
    if result.nic_t_s.size >= 2:
        cum = np.interp(edges, result.nic_t_s, result.nic_rx_bytes)
        mbit = np.diff(cum) * 8 / 1e6 / bin_s
        source = "interface"
    else:
        mbit = counts * result.summary.response_bytes * 8 / 1e6 / bin_s
        source = "requests"
    return Timeline(np.asarray(edges[:-1] - t0, dtype=np.float64), counts / bin_s, np.asarray(mbit, dtype=np.float64), failed, bin_s, source)


def longest_gap_s(result: LoadResult, t_from: float, t_to: float) -> tuple[float, float]:
    """The longest interval without a completed request inside ``[t_from, t_to]`` (epoch s): (length, start)."""
    done = np.sort(result.records.done_s())
    pts = np.concatenate(([t_from], done[(done > t_from) & (done < t_to)], [t_to]))
    gaps = np.diff(pts)
    i = int(np.argmax(gaps))
    return float(gaps[i]), float(pts[i])


def phase_stats(result: LoadResult, marks: MigrationMarks) -> dict[str, Any]:
    """Mean QPS and throughput before the migration, during it, inside the frozen window and after it,
    the longest completion gap during the migration, and ab's totals."""
    done = result.records.done_s()
    nic_ok = result.nic_t_s.size >= 2

    def window(a: float, b: float) -> dict[str, float]:
        span = max(b - a, 1e-9)
        n = int(((done >= a) & (done < b)).sum())
        if nic_ok:
            rx = np.interp([a, b], result.nic_t_s, result.nic_rx_bytes)
            mbit = float(rx[1] - rx[0]) * 8 / 1e6 / span
        else:
            mbit = n * result.summary.response_bytes * 8 / 1e6 / span
        return {"s": round(b - a, 3), "qps": round(n / span, 3), "mbit_s": round(mbit, 3), "requests": n}

    gap, gap_at = longest_gap_s(result, marks.start_s, marks.end_s + 1.0)
    s = result.summary
    return {
        "before": window(result.started_s, marks.start_s),
        "during": window(marks.start_s, marks.end_s),
        "frozen": window(marks.freeze_s, marks.resume_s),
        "after": window(marks.end_s, result.ended_s),
        "longest_gap_s": round(gap, 3), "longest_gap_from_s": round(gap_at - result.started_s, 3),
        "complete": s.complete, "failed": s.failed, "failed_receive": s.failed_receive,
        "failed_length": s.failed_length, "failed_connect": s.failed_connect,
        "failed_exceptions": s.failed_exceptions, "non_2xx": s.non_2xx, "document_bytes": s.document_bytes,
        "errors_reported": int(result.error_t_s.size),
    }


# ------------------------------------------------------------------------------------------ results


def load_row(result: LoadResult, marks: MigrationMarks, bin_s: float = 1.0) -> dict[str, Any]:
    """The load part of an experiment's row: marks and phases relative to ab's start, and the timeline."""
    t0 = result.started_s
    tl = timeline(result, t0, bin_s=bin_s)
    return {
        "marks": marks.relative(t0), "ab_s": round(result.ended_s - t0, 3), "mbit_source": tl.mbit_source,
        **phase_stats(result, marks),
        "timeline": {"t_s": tl.t_s.round(3).tolist(), "qps": tl.qps.round(3).tolist(),
                     "mbit_s": tl.mbit_s.round(3).tolist(), "failed": tl.failed.tolist()},
        "out_dir": str(result.out_dir),
    }
