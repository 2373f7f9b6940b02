"""From one run's records to its numbers: the user-seen gaps, the per-migration rows, the run's summary.

A *gap* is what the user sees: the time between two consecutive answered requests (their reply times) when it
is longer than the run's normal interval (the median) by more than :data:`GAP_MARGIN_S` or
:data:`GAP_SPREADS` median absolute deviations, whichever is larger (a request to ``facedetect`` takes 0.2-1 s
on a busy machine, so its intervals spread far more than the counter's); its *downtime* is that interval
minus the normal one. A *move* is a migration with
its handover (or a handover alone); its window is the union of the handover's radio outage and the whole
migration (its pre-copy dumps pause the service too, not only the final freeze), and the gaps that overlap the window (widened by :data:`WINDOW_SLACK_S`, the
TCP retransmission that ends a gap comes after the window) are that move's downtime: ``downtime_s`` their
sum, ``longest_gap_s`` the longest. ``frozen_downtime_s`` counts only the gaps at the frozen window and the
radio outage (the migration phase and the handover of Ngo et al. 2020, sec. IV-B), leaving out the pauses
of the pre-copy dumps, which every planner pays alike. The engine's own number, ``frozen_s``, is the
agents' frozen window.

*E2E delay breakdown* (Ngo et al. 2020, fig. 4): a facedetect reply carries the server's processing time
(``proc_s`` in the log: decoding the uploaded image and detecting); the rest of each request's delay is
transmission (eq. 4's S / min(B(RSSI), B_bs) with RTT_bs, plus queueing on the way). ``mean_proc_s`` and
``mean_trans_s`` are their means over the requests whose reply carried it (NaN for the counter, whose
replies carry none: its few microseconds of work leave it all transmission).

The request log is the MU's file (``mobileuser/log.py`` writes it; this package sits on the same layer as
``mobileuser`` and reads the file, not the module): each line is checked before use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import DataFormatError
from edgemigrate.experiments.handover.bed import RunRecord

GAP_MARGIN_S = 0.1
GAP_SPREADS = 4.0
WINDOW_SLACK_S = 1.5
MAX_LOG_LINE_BYTES = 4096
MIGRATION_KEYS = ("service", "planner", "repeat", "pre_bytes", "final_bytes", "link_bps", "rtt_s", "frozen_s",
                  "restore_s", "downtime_s", "total_s", "handover_outage_s")


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    send_s: float
    recv_s: float | None
    reply: int | None
    proc_s: float | None = None


def read_requests(path: Path) -> list[Request]:
    out = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            if len(line) > MAX_LOG_LINE_BYTES:
                raise DataFormatError(where, None, f"line longer than {MAX_LOG_LINE_BYTES} bytes")
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(where, None, f"not JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise DataFormatError(where, None, "expected an object")
            seq, send, recv, reply = raw.get("seq"), raw.get("send_s"), raw.get("recv_s"), raw.get("reply")
            proc = raw.get("proc_s")
            ok = isinstance(seq, int) and not isinstance(seq, bool) and _num(send) and (recv is None or _num(recv)) \
                and (reply is None or (isinstance(reply, int) and not isinstance(reply, bool)))
            if not ok:
                raise DataFormatError(where, None, "expected seq, send_s, recv_s (or null), reply (or null)")
            if proc is not None and not (_num(proc) and recv is not None and 0 <= proc <= recv - send + 1e-6):
                raise DataFormatError(where, None, "'proc_s' must be null or a number in [0, recv_s - send_s]")
            out.append(Request(seq, float(send), None if recv is None else float(recv), reply,
                               None if proc is None else float(proc)))
    return out


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True, slots=True)
class Gap:
    start_s: float  # the last reply before
    end_s: float  # the first reply after
    downtime_s: float


def gaps(requests: Sequence[Request]) -> tuple[list[Gap], float]:
    """The run's gaps and its normal interval between replies (the median)."""
    recv = np.array([r.recv_s for r in requests if r.recv_s is not None and r.reply is not None])
    if recv.size < 3:
        return [], math.nan
    recv.sort()
    step = np.diff(recv)
    normal = float(np.median(step))
    spread = float(np.median(np.abs(step - normal)))  # MAD: facedetect's intervals vary with its processing
    limit = normal + max(GAP_MARGIN_S, GAP_SPREADS * spread)
    out = [Gap(float(recv[i]), float(recv[i + 1]), float(step[i] - normal)) for i in np.flatnonzero(step > limit)]
    return out, normal


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@dataclass(frozen=True, slots=True)
class Move:
    """One migration and/or handover, with its windows on the monotonic clock."""

    migration: dict[str, Any] | None
    handover_s: float | None  # radio outage start
    outage_s: float

    def core_windows(self) -> list[tuple[float, float]]:
        """The frozen window and the radio outage only (the pre-copy rounds left out)."""
        out = []
        if self.migration is not None:
            m = self.migration
            out.append((m["freeze_s"] if m.get("freeze_s") is not None else m["start_s"], m["end_s"]))
        if self.handover_s is not None:
            out.append((self.handover_s, self.handover_s + self.outage_s))
        return out

    def window(self) -> tuple[float, float]:
        parts = []
        if self.migration is not None:
            m = self.migration
            parts.append((m["start_s"], m["end_s"]))  # the pre-copy dumps pause the service too
        if self.handover_s is not None:
            parts.append((self.handover_s, self.handover_s + self.outage_s))
        return min(p[0] for p in parts), max(p[1] for p in parts)


def moves(rec: RunRecord, outage_s: float) -> list[Move]:
    """Pair every migration with the handover that belongs to it: for the orchestrated planner the
    controller's (it starts at the freeze); for the baselines the MU's own handover that came before it."""
    migs = sorted((e for e in rec.events if e["event"] == "migration" and e.get("ok")), key=lambda e: e["start_s"])
    if rec.planner == "orchestrated":
        hos = _coordinated_handovers(rec)
    else:
        hos = sorted(float(t) for t in rec.mu_summary.get("handovers_at_s", []))
    out, used = [], set()
    for m in migs:
        cands = [i for i, t in enumerate(hos) if i not in used and t <= m["end_s"] + 0.5]
        i = cands[-1] if cands else None
        if i is not None and rec.planner != "orchestrated" and m["start_s"] - hos[i] > 60.0:
            i = None  # too old to have triggered this migration
        if i is not None:
            used.add(i)
        out.append(Move(m, None if i is None else hos[i], outage_s))
    out += [Move(None, t, outage_s) for i, t in enumerate(hos) if i not in used]
    return sorted(out, key=lambda mv: mv.window()[0])


def _coordinated_handovers(rec: RunRecord) -> list[float]:
    """The controller's handovers, except those the MU had already made itself (at its serving BS's cell edge,
    before a late freeze: the controller's then found it on the new BS and did nothing), whose instants are
    the MU's."""
    own = [(float(t), str(h[2])) for t, h in zip(rec.mu_summary.get("handovers_at_s", []),
                                                  rec.mu_summary.get("handovers", []), strict=False)]
    out = list(t for t, _ in own)
    for e in rec.events:
        if e["event"] != "handover":
            continue
        t = float(e["start_s"])
        if not any(bs == e.get("to_bs") and t - 60.0 < t_own <= t for t_own, bs in own):
            out.append(t)
    return sorted(out)


def _counter_ok(requests: Sequence[Request], t0: float, t1: float) -> bool | None:
    """The counter across ``[t0, t1]``: the first reply after continues the last one before, allowing one
    more per unanswered request in between (the service may have counted a request whose reply was lost).
    None when it cannot be told: no reply after the move (the MU stopped first) or none before it."""
    before = [r for r in requests if r.reply is not None and r.recv_s is not None and r.recv_s < t0]
    after = [r for r in requests if r.reply is not None and r.recv_s is not None and r.recv_s > t1]
    if not before or not after:
        return None
    last, first = before[-1], after[0]
    lost = sum(1 for r in requests if last.seq < r.seq < first.seq and r.reply is None)
    return last.reply is not None and first.reply is not None and \
        last.reply < first.reply <= last.reply + 1 + lost + (first.seq - last.seq - 1)


def migration_rows(rec: RunRecord, outage_s: float, requests: Sequence[Request],
                   run_gaps: Sequence[Gap]) -> list[dict[str, Any]]:
    """One row per migration (the keys of :data:`MIGRATION_KEYS` first; the package docstring explains them)."""
    rows = []
    for mv in moves(rec, outage_s):
        if mv.migration is None:
            continue
        m, st = mv.migration, mv.migration["stats"]
        rounds = [r for r in st.get("rounds", []) if isinstance(r, dict)]
        pre = [r for r in rounds if not r.get("final")]
        final = [r for r in rounds if r.get("final")]
        cloud = "cloud" in (m["from"], m["to"])
        w0, w1 = mv.window()
        frozen0 = m["freeze_s"] if m.get("freeze_s") is not None else m["start_s"]
        own = [g for g in run_gaps if _overlap(g.start_s, g.end_s, w0 - 0.05, w1 + WINDOW_SLACK_S) > 0]
        ho_overlap = 0.0 if mv.handover_s is None else _overlap(mv.handover_s, mv.handover_s + outage_s,
                                                                frozen0, m["end_s"])
        core = [g for g in run_gaps if any(_overlap(g.start_s, g.end_s, a - 0.05, b + WINDOW_SLACK_S) > 0
                                           for a, b in mv.core_windows())]
        rows.append({
            "service": rec.service, "planner": rec.planner, "repeat": rec.repeat,
            "pre_bytes": int(sum(r.get("payload_bytes", 0) for r in pre)),
            "final_bytes": int(sum(r.get("payload_bytes", 0) for r in final)),
            "link_bps": rec.link["edge_cloud_bps" if cloud else "edge_edge_bps"],
            "rtt_s": rec.link["edge_cloud_rtt_s" if cloud else "edge_edge_rtt_s"],
            "frozen_s": float(st.get("frozen_window_s", math.nan)), "restore_s": float(st.get("restore_s", math.nan)),
            "downtime_s": float(sum(g.downtime_s for g in own)), "total_s": float(st.get("total_s", math.nan)),
            "handover_outage_s": outage_s if mv.handover_s is not None else 0.0,
            # beyond the contract: where, when, and how the handover lay against the frozen window
            "src": m["from"], "dst": m["to"], "n_rounds": len(rounds),
            "pre_wire_bytes": int(sum(r.get("wire_bytes", 0) for r in pre)),
            "final_wire_bytes": int(sum(r.get("wire_bytes", 0) for r in final)),
            "longest_gap_s": float(max((g.end_s - g.start_s for g in own), default=0.0)),
            "frozen_downtime_s": float(sum(g.downtime_s for g in core)),
            "handover_overlap_s": ho_overlap,
            "handover_lead_s": math.nan if mv.handover_s is None else frozen0 - mv.handover_s,
            "start_s": m["start_s"] - float(rec.mu_summary.get("start_s", 0.0)),
            "counter_ok": _counter_ok(requests, w0, w1),
        })
    return rows


def run_summary(rec: RunRecord, outage_s: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's row (fig. 4-5 analogues) and its migration rows."""
    requests = read_requests(rec.folder / "requests.jsonl")
    run_gaps, normal = gaps(requests)
    mvs = moves(rec, outage_s)
    mig_rows = migration_rows(rec, outage_s, requests, run_gaps)
    per_move = []
    for mv in mvs:
        w0, w1 = mv.window()
        own = [g for g in run_gaps if _overlap(g.start_s, g.end_s, w0 - 0.05, w1 + WINDOW_SLACK_S) > 0]
        per_move.append(own)
    counted = {id(g) for own in per_move for g in own}
    core = [g for g in run_gaps if any(_overlap(g.start_s, g.end_s, a - 0.05, b + WINDOW_SLACK_S) > 0
                                       for mv in mvs for a, b in mv.core_windows())]
    moved = [g for g in run_gaps if id(g) in counted]
    delays = np.array([r.recv_s - r.send_s for r in requests if r.recv_s is not None and r.reply is not None])
    split = np.array([(r.proc_s, r.recv_s - r.send_s - r.proc_s) for r in requests
                      if r.recv_s is not None and r.reply is not None and r.proc_s is not None]).reshape(-1, 2)
    pre = sum(r["pre_bytes"] for r in mig_rows)
    final = sum(r["final_bytes"] for r in mig_rows)
    row = {
        "service": rec.service, "planner": rec.planner, "repeat": rec.repeat,
        "moves": len(mvs), "migrations": len(mig_rows),
        "handovers": sum(1 for mv in mvs if mv.handover_s is not None),
        "failed_migrations": sum(1 for e in rec.events if e["event"] == "migration" and not e.get("ok")),
        "downtime_s": float(sum(g.downtime_s for g in moved)),
        "longest_gap_s": float(max((g.end_s - g.start_s for g in moved), default=0.0)),
        "frozen_downtime_s": float(sum(g.downtime_s for g in core)),
        "other_gaps_s": float(sum(g.downtime_s for g in run_gaps if id(g) not in counted)),
        "frozen_s": float(sum(r["frozen_s"] for r in mig_rows)),
        "mean_delay_s": float(delays.mean()) if delays.size else math.nan,
        "p95_delay_s": float(np.percentile(delays, 95)) if delays.size else math.nan,
        "mean_proc_s": float(split[:, 0].mean()) if split.size else math.nan,
        "mean_trans_s": float(split[:, 1].mean()) if split.size else math.nan,
        "normal_interval_s": normal,
        "requests": len(requests), "answered": int(delays.size),
        "pre_bytes": int(pre), "final_bytes": int(final),
        "final_over_pre": final / pre if pre else math.nan,
        "counter_ok": bool(rec.mu_summary.get("counter_ok")) and all(r["counter_ok"] is not False for r in mig_rows),
        "moves_unverified": sum(1 for r in mig_rows if r["counter_ok"] is None),
    }
    return row, mig_rows


def iter_jsonl(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    for r in rows:
        yield json.dumps(r, allow_nan=True, separators=(",", ":"))
