"""Measured real migrations -> the pre-copy calibration of the simulator backend.

A real handover experiment writes ``migrations.jsonl``: one JSON object per real migration with the keys of
:data:`RECORD_KEYS` (``pre_bytes``: what the leave-running rounds sent; ``final_bytes``: the frozen round;
``frozen_s``: freeze -> restored; ``restore_s``: the destination's restore; ``downtime_s``: the service
downtime its clients saw, migration and handover together; ``total_s``: the whole migration;
``handover_outage_s``: the base-station handover's outage, 0 when there was none). Records this module
writes from the agents' own statistics (:func:`record_from_stats`) add the optional :data:`OPTIONAL_KEYS`.

The file is read strictly (it is data from another program): its size and each line's length are bounded
before decoding, unknown or missing keys, wrong types and out-of-range values are one
:class:`~edgemigrate.core.errors.DataFormatError` naming ``file:line: key``. :func:`fit_calibration` fits one
:class:`~edgemigrate.costs.handover.PrecopyModel` per service (Clark et al. 2005 pre-copy; the stop-and-copy
eq. 5 of Ngo et al. 2020 stays in the ``hosts`` part of the calibration) and returns the calibration file's
JSON (format 2, strategy ``precopy``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.controller.sim.calibration import CALIBRATION_FORMAT, PRECOPY, parse_calibration
from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.costs.handover import MigrationSample, PrecopyModel, fit_precopy

MIGRATIONS_FILE = "migrations.jsonl"
MAX_FILE_BYTES = 64 << 20
MAX_LINE_BYTES = 4096
MAX_RECORDS = 100_000
MAX_SECONDS = 86_400.0
MAX_BYTES = float(1 << 44)  # 16 TiB: larger is a unit mistake
RECORD_KEYS = ("service", "planner", "repeat", "pre_bytes", "final_bytes", "link_bps", "rtt_s", "frozen_s",
               "restore_s", "downtime_s", "total_s", "handover_outage_s")
OPTIONAL_KEYS = ("rounds", "resident_bytes", "wire_bytes")
# what the testbed handover experiment writes beside the contract (``experiments/handover/analysis.py``): read
# as the experiment defines them (``n_rounds`` counts the final round too; the wire bytes are split by phase),
# the rest is information for people and is not used by the fit
ANALYSIS_KEYS = ("src", "dst", "n_rounds", "pre_wire_bytes", "final_wire_bytes", "longest_gap_s",
                 "frozen_downtime_s", "handover_overlap_s", "handover_lead_s", "start_s", "counter_ok")
_SECONDS = frozenset({"rtt_s", "frozen_s", "restore_s", "downtime_s", "total_s", "handover_outage_s"})
_BYTES = frozenset({"pre_bytes", "final_bytes", "resident_bytes", "wire_bytes"})


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    """One line of ``migrations.jsonl``, validated."""

    service: str
    planner: str
    repeat: int
    sample: MigrationSample
    downtime_s: float
    handover_outage_s: float


def _num(value: Any, key: str, hi: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{key}: expected a number, got {type(value).__name__}")
    x = float(value)
    if not (math.isfinite(x) and 0 <= x <= hi) or (positive and x == 0):
        raise ValidationError(f"{key} = {value!r} must be in {'(0' if positive else '[0'}, {hi:g}]")
    return x


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{key} = {value!r:.40}: expected an integer in [{lo}, {hi}]")
    return value


def parse_record(obj: Any) -> MigrationRecord:
    """One decoded line -> a :class:`MigrationRecord`, or a :class:`ValidationError` naming the key."""
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object, got {type(obj).__name__}")
    extra = sorted(str(k) for k in set(obj) - set(RECORD_KEYS) - set(OPTIONAL_KEYS) - set(ANALYSIS_KEYS))
    if extra:
        raise ValidationError(f"{extra[0][:40]}: unknown key")
    obj = _from_analysis(obj)
    missing = [k for k in RECORD_KEYS if k not in obj]
    if missing:
        raise ValidationError(f"{missing[0]}: missing")
    service = check_id(obj["service"], "service")
    planner = check_id(obj["planner"], "planner")
    repeat = _int(obj["repeat"], "repeat", 0, 1_000_000)
    # every size and duration (required or optional) is a bounded non-negative number
    v = {k: _num(obj[k], k, MAX_SECONDS if k in _SECONDS else MAX_BYTES) for k in _SECONDS | _BYTES if k in obj}
    link = _num(obj["link_bps"], "link_bps", 1e12, positive=True)
    rounds = _int(obj.get("rounds", 1), "rounds", 1, 100)
    if v["restore_s"] > v["frozen_s"] + 1e-9:
        raise ValidationError(f"restore_s = {v['restore_s']} exceeds frozen_s = {v['frozen_s']} "
                              "(the restore is inside the frozen window)")
    if v["frozen_s"] > v["total_s"] + 1e-9:
        raise ValidationError(f"frozen_s = {v['frozen_s']} exceeds total_s = {v['total_s']}")
    sample = MigrationSample(v["pre_bytes"], v["final_bytes"], link, v["rtt_s"], v["frozen_s"], v["restore_s"],
                             v["total_s"], rounds, v.get("resident_bytes"), v.get("wire_bytes"))
    return MigrationRecord(service, planner, repeat, sample, v["downtime_s"], v["handover_outage_s"])


def _from_analysis(obj: dict[str, Any]) -> dict[str, Any]:
    """The contract's ``rounds``/``wire_bytes`` from the experiment's ``n_rounds`` and per-phase wire bytes
    when a line has only those; the informational keys are dropped."""
    out = {k: v for k, v in obj.items() if k not in ANALYSIS_KEYS}
    if "rounds" not in obj and "n_rounds" in obj:
        out["rounds"] = max(1, _int(obj["n_rounds"], "n_rounds", 1, 101) - 1)  # leave-running rounds only
    if "wire_bytes" not in obj and "pre_wire_bytes" in obj and "final_wire_bytes" in obj:
        out["wire_bytes"] = _num(obj["pre_wire_bytes"], "pre_wire_bytes", MAX_BYTES) + \
            _num(obj["final_wire_bytes"], "final_wire_bytes", MAX_BYTES)
    return out


def load_migrations(path: Path) -> list[MigrationRecord]:
    """Every record of a ``migrations.jsonl`` (blank lines skipped); errors are ``file:line: key: reason``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataFormatError(path, None, f"cannot read: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise DataFormatError(path, None, f"{size} bytes, at most {MAX_FILE_BYTES} allowed")
    records = []
    with path.open("rb") as fh:
        for n, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataFormatError(path, n, f"line longer than {MAX_LINE_BYTES} bytes")
            if not raw.strip():
                continue
            if len(records) >= MAX_RECORDS:
                raise DataFormatError(path, n, f"more than {MAX_RECORDS} records")
            try:
                obj = json.loads(raw, parse_constant=_no_constant)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataFormatError(path, n, f"not JSON ({str(exc).splitlines()[0][:80]})") from None
            try:
                records.append(parse_record(obj))
            except ValidationError as exc:
                raise DataFormatError(path, n, str(exc)) from None
    if not records:
        raise DataFormatError(path, None, "no migration records")
    return records


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def find_migrations(results: Path) -> list[Path]:
    """``results`` itself when it is a file, else every ``migrations.jsonl`` under it (sorted)."""
    if results.is_file():
        return [results]
    found = sorted(results.rglob(MIGRATIONS_FILE)) if results.is_dir() else []
    if not found:
        raise DataFormatError(results, None, f"no {MIGRATIONS_FILE} here (expected a results folder or the file)")
    return found


def record_from_stats(stats: Mapping[str, Any], *, service: str, planner: str, repeat: int, link_bps: float,
                      rtt_s: float, handover_outage_s: float = 0.0) -> dict[str, Any]:
    """A ``migrations.jsonl`` line from the source agent's statistics of one pre-copy migration (no handover
    unless ``handover_outage_s``: the frozen window is then the clients' downtime). The statistics come from
    a peer: a missing or malformed field is a :class:`ValidationError`, and the line is checked like any
    other (:func:`parse_record`)."""
    try:
        rounds = stats["rounds"]
        pre = [r for r in rounds if not r["final"]]
        frozen = float(stats["frozen_window_s"])
        rec = {"service": service, "planner": planner, "repeat": repeat,
               "pre_bytes": sum(int(r["payload_bytes"]) for r in pre), "final_bytes": int(stats["final_round_bytes"]),
               "link_bps": link_bps, "rtt_s": rtt_s, "frozen_s": frozen, "restore_s": float(stats["restore_s"]),
               "downtime_s": max(frozen, handover_outage_s), "total_s": float(stats["total_s"]),
               "handover_outage_s": handover_outage_s, "rounds": max(1, len(pre)),
               "resident_bytes": int(pre[0]["image_bytes"]) if pre else int(stats["full_checkpoint_bytes"]),
               "wire_bytes": int(stats["bytes_on_wire"])}
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValidationError(f"migration statistics of {service}: missing or malformed field ({exc!r:.80})") from None
    parse_record(rec)
    return rec


def _model_json(model: PrecopyModel, records: list[MigrationRecord]) -> dict[str, Any]:
    return {"resident_bytes": model.resident_bytes, "dirty_bytes_per_s": model.dirty_bytes_per_s,
            "round_overhead_s": model.round_overhead_s, "final_overhead_s": model.final_overhead_s,
            "restore_base_s": model.restore_base_s, "restore_s_per_byte": model.restore_s_per_byte,
            "rounds": model.rounds, "wire_ratio": model.wire_ratio, "frozen_rtts": model.frozen_rtts,
            "samples": len(records),
            "measured_downtime_s": comparable_downtimes(records)}


# Planners whose migration and handover share one outage (Ngo et al. 2020, fig. 2): only their moves measure
# what the simulator's per-migration downtime with a handover is (max(T_mig, T_ho), eq. 2). An uncoordinated
# planner's move has its handover as a separate gap, so its recorded downtime is the migration's alone.
COORDINATED_PLANNERS = frozenset({"orchestrated"})


def comparable_downtimes(records: list[MigrationRecord]) -> list[float]:
    """The measured downtimes the simulator's are compared with: with handovers, the coordinated moves' (if
    there are any); without, every migration's frozen window as recorded."""
    if any(r.handover_outage_s > 0 for r in records):
        coordinated = [r for r in records if r.planner in COORDINATED_PLANNERS]
        records = coordinated or records
    return [r.downtime_s for r in records][:1000]


def fit_calibration(records: Iterable[MigrationRecord], service: str | None = None) -> dict[str, Any]:
    """The calibration file's JSON (strategy ``precopy``) from measured pre-copy migrations.

    One :class:`PrecopyModel` per service (``service``: only that one), fitted by
    :func:`~edgemigrate.costs.handover.fit_precopy` from the records with ``pre_bytes`` > 0 (a record
    without leave-running rounds was a stop-and-copy move, which eq. 5 models instead). The measured
    downtimes kept for comparison are those of the fitted service (all of them when several); ``handover_s``
    is the median measured handover outage when any record had a handover. With handovers, the downtimes kept
    are the coordinated planners' moves (:func:`comparable_downtimes`).
    """
    by_service: dict[str, list[MigrationRecord]] = {}
    for r in records:
        if (service is None or r.service == service) and r.sample.pre_bytes > 0:
            by_service.setdefault(r.service, []).append(r)
    if not by_service:
        which = f"service {service!r}" if service else "any service"
        raise ValidationError(f"calibration: no pre-copy migration (pre_bytes > 0) of {which} to fit")
    used = [r for rs in by_service.values() for r in rs]
    body: dict[str, Any] = {
        "format": CALIBRATION_FORMAT, "strategy": PRECOPY,
        "services": {s: _model_json(fit_precopy([r.sample for r in rs]), rs) for s, rs in sorted(by_service.items())},
        "measured_downtime_s": comparable_downtimes(used),
    }
    outages = [r.handover_outage_s for r in used if r.handover_outage_s > 0]
    if outages:
        body["handover_s"] = statistics.median(outages)
    parse_calibration(body)  # what we write must be what we accept
    return body
