"""The calibration file: the measured migration model the simulator backend charges (Ngo et al. 2020 eq. 5 for
stop-and-copy, the pre-copy rounds of Clark et al. 2005 for pre-copy).

Format 2 (JSON, one object, at most :data:`MAX_CALIBRATION_BYTES`)::

    {"format": "edgemigrate-calibration/2",
     "strategy": "precopy",                       # or "stop-and-copy": which model the simulator charges
     "services": {"counter": {"resident_bytes": 51194260, "dirty_bytes_per_s": 13600.0,
                              "round_overhead_s": 0.55, "final_overhead_s": 0.21, "restore_base_s": 0.58,
                              "restore_s_per_byte": 0.0, "rounds": 2, "wire_ratio": 0.3,
                              "frozen_rtts": 1.0, "samples": 3, "measured_downtime_s": [0.6, 1.3]}},
     "hosts": {"edge-0": {"cpu_power": 1000.0,
                          "checkpoint": [{"bytes": 52428800, "seconds": 0.41}, ...],
                          "restore":    [{"bytes": 60817408, "seconds": 0.37}, ...]}},
     "service": {"image_bytes": 52428800, "checkpoint_bytes": 20971520, "delta_bytes": 2097152},
     "handover_s": 0.5,
     "measured_downtime_s": [0.62, 0.58]}

``services`` (needed for ``precopy``) maps a service to its fitted :class:`~edgemigrate.costs.handover.PrecopyModel`
(``samples``: how many migrations it was fitted from; ``frozen_rtts``, optional, default 1: the round trips
in the frozen window; ``measured_downtime_s``, optional: that service's measured downtimes). ``hosts`` (needed for ``stop-and-copy``) maps a host
to its benchmark score C_s and measured (size, duration) pairs, to which eq. 5's psi/rho are fitted: a
checkpoint is the first full dump on the source, a restore the final restore on the destination (what
:meth:`edgemigrate.controller.monitor.Monitor.ingest_migration` also records). ``service`` (optional) gives
the measured S_Du, S_lambda and S_dlambda; ``handover_s`` (optional) the measured handover outage T_ho;
``measured_downtime_s`` (optional) the downtimes the testbed saw, for comparison with the simulated ones.

Format 1 files (``hosts`` + ``service`` + ``measured_downtime_s``, no ``strategy``) still load, as
stop-and-copy calibrations: their content is a subset of format 2's. The file is peer data: unknown keys,
wrong types, non-finite or negative numbers and oversized lists are refused with one
:class:`ValidationError` naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.costs.handover import PrecopyModel, fit_size_coefficient

CALIBRATION_FORMAT = "edgemigrate-calibration/2"
CALIBRATION_FORMAT_V1 = "edgemigrate-calibration/1"
PRECOPY = "precopy"
STOP_AND_COPY = "stop-and-copy"
STRATEGIES = (PRECOPY, STOP_AND_COPY)
MAX_CALIBRATION_BYTES = 1 << 20
MAX_HOSTS = 1000
MAX_SAMPLES = 1000
_TOP_KEYS_V1 = frozenset({"format", "hosts", "service", "measured_downtime_s"})
_TOP_KEYS = _TOP_KEYS_V1 | {"strategy", "services", "handover_s"}
_MODEL_FLOATS = ("resident_bytes", "dirty_bytes_per_s", "round_overhead_s", "final_overhead_s", "restore_base_s",
                 "restore_s_per_byte", "wire_ratio")
_MODEL_KEYS = frozenset(_MODEL_FLOATS) | {"rounds", "samples"}
_MODEL_OPTIONAL = frozenset({"measured_downtime_s", "frozen_rtts"})
_HOST_KEYS = frozenset({"cpu_power", "checkpoint", "restore"})
_SAMPLE_KEYS = frozenset({"bytes", "seconds"})
_SERVICE_KEYS = frozenset({"image_bytes", "checkpoint_bytes", "delta_bytes"})


@dataclass(frozen=True, slots=True)
class HostCalibration:
    """One host's fitted eq. 5 coefficients (seconds = coef * bytes / C_s) and its score C_s."""

    host: str
    cpu_power: float
    psi: float
    rho: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """A parsed calibration file: ``strategy`` picks the model the simulator charges for a migration."""

    hosts: Mapping[str, HostCalibration]
    image_bytes: float | None = None
    checkpoint_bytes: float | None = None
    delta_bytes: float | None = None
    measured_downtime_s: tuple[float, ...] = field(default=())
    strategy: str = STOP_AND_COPY
    services: Mapping[str, PrecopyModel] = field(default_factory=dict)
    samples: Mapping[str, int] = field(default_factory=dict)
    service_downtime_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    handover_s: float | None = None

    def measured_downtimes_s(self, service: str | None = None) -> tuple[float, ...]:
        """The measured downtimes of ``service`` when the file has them per service, else all of them."""
        if service is not None and self.service_downtime_s.get(service):
            return self.service_downtime_s[service]
        return self.measured_downtime_s

    def precopy_model(self, service: str | None = None) -> PrecopyModel:
        """The pre-copy model of ``service``, or of the only service when there is one."""
        if service is None:
            if len(self.services) != 1:
                raise ValidationError(f"calibration: {len(self.services)} services calibrated "
                                      f"({', '.join(sorted(self.services)) or 'none'}); name one")
            return next(iter(self.services.values()))
        if service not in self.services:
            raise ValidationError(f"calibration.services.{service[:64]}: not calibrated "
                                  f"(calibrated: {', '.join(sorted(self.services)) or 'none'})")
        return self.services[service]


def _obj(value: Any, keys: frozenset[str], required: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{what}: expected an object, got {type(value).__name__}")
    extra = sorted(str(k) for k in set(value) - keys)
    if extra:
        raise ValidationError(f"{what}.{extra[0][:40]}: unknown key")
    missing = sorted(required - set(value))
    if missing:
        raise ValidationError(f"{what}.{missing[0]}: missing")
    return value


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what}: expected a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise ValidationError(f"{what} = {value!r} must be finite and {'> 0' if positive else '>= 0'}")
    return x


def _list(value: Any, what: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(f"{what}: expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise ValidationError(f"{what}: {len(value)} entries, at most {limit} allowed")
    return value


def _coefficient(samples: Any, cpu_power: float, what: str) -> float:
    pairs = []
    for i, s in enumerate(_list(samples, what, MAX_SAMPLES)):
        s = _obj(s, _SAMPLE_KEYS, _SAMPLE_KEYS, f"{what}[{i}]")
        pairs.append((_number(s["bytes"], f"{what}[{i}].bytes"), _number(s["seconds"], f"{what}[{i}].seconds")))
    if not any(b > 0 for b, _ in pairs):
        raise ValidationError(f"{what}: needs at least one sample with bytes > 0")
    return fit_size_coefficient([b for b, _ in pairs], [s for _, s in pairs], cpu_power, name=what)


def _precopy_model(value: Any, what: str) -> tuple[PrecopyModel, int, tuple[float, ...]]:
    m = _obj(value, _MODEL_KEYS | _MODEL_OPTIONAL, _MODEL_KEYS, what)
    nums = {k: _number(m[k], f"{what}.{k}") for k in _MODEL_FLOATS}
    ints = {}
    for k, hi in (("rounds", 100), ("samples", 1_000_000)):
        v = m[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValidationError(f"{what}.{k} = {v!r:.40}: expected an integer in [1, {hi}]")
        ints[k] = v
    if not 0 < nums["wire_ratio"] <= 1:
        raise ValidationError(f"{what}.wire_ratio = {nums['wire_ratio']} must be in (0, 1]")
    downtimes = tuple(_number(v, f"{what}.measured_downtime_s[{i}]") for i, v in
                      enumerate(_list(m.get("measured_downtime_s", []), f"{what}.measured_downtime_s", MAX_SAMPLES)))
    rtts = _number(m.get("frozen_rtts", 1.0), f"{what}.frozen_rtts")
    try:
        model = PrecopyModel(**nums, rounds=ints["rounds"], frozen_rtts=rtts)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}") from None
    return model, ints["samples"], downtimes


def _services(value: Any) -> tuple[dict[str, PrecopyModel], dict[str, int], dict[str, tuple[float, ...]]]:
    if not isinstance(value, dict) or not value:
        raise ValidationError("calibration.services: expected a non-empty object of service -> pre-copy model")
    if len(value) > MAX_HOSTS:
        raise ValidationError(f"calibration.services: {len(value)} services, at most {MAX_HOSTS} allowed")
    models, samples, downtimes = {}, {}, {}
    for name, m in value.items():
        check_id(name, "calibration.services")
        models[name], samples[name], downtimes[name] = _precopy_model(m, f"calibration.services.{name}")
    return models, samples, downtimes


def parse_calibration(body: Any) -> Calibration:
    """A :class:`Calibration` from a decoded JSON object, or one :class:`ValidationError` naming the key."""
    if isinstance(body, dict) and body.get("format") == CALIBRATION_FORMAT_V1:
        top = _obj(body, _TOP_KEYS_V1, frozenset({"format", "hosts"}), "calibration")
        return _parse_eq5(top, STOP_AND_COPY, ({}, {}, {}), None)
    top = _obj(body, _TOP_KEYS, frozenset({"format", "strategy"}), "calibration")
    if top["format"] != CALIBRATION_FORMAT:
        raise ValidationError(f"calibration.format: {str(top['format'])[:40]!r} is not {CALIBRATION_FORMAT!r} "
                              f"(or {CALIBRATION_FORMAT_V1!r})")
    strategy = top["strategy"]
    if strategy not in STRATEGIES:
        raise ValidationError(f"calibration.strategy: {str(strategy)[:40]!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == PRECOPY and "services" not in top:
        raise ValidationError("calibration.services: missing (a precopy calibration needs the fitted models)")
    if strategy == STOP_AND_COPY and "hosts" not in top:
        raise ValidationError("calibration.hosts: missing (a stop-and-copy calibration needs eq. 5's history)")
    services = _services(top["services"]) if "services" in top else ({}, {}, {})
    ho_s = _number(top["handover_s"], "calibration.handover_s") if "handover_s" in top else None
    return _parse_eq5(top, strategy, services, ho_s)


def _parse_eq5(top: Mapping[str, Any], strategy: str,
               services: tuple[dict[str, PrecopyModel], dict[str, int], dict[str, tuple[float, ...]]],
               handover_s: float | None) -> Calibration:
    """The eq. 5 part (hosts, service sizes) and the measured downtimes, common to both formats."""
    hosts: dict[str, HostCalibration] = {}
    if "hosts" in top:
        hosts = _hosts(top["hosts"])
    sizes: dict[str, float] = {}
    if "service" in top:
        svc = _obj(top["service"], _SERVICE_KEYS, frozenset(), "calibration.service")
        sizes = {k: _number(v, f"calibration.service.{k}") for k, v in svc.items()}
    downtimes = tuple(_number(v, f"calibration.measured_downtime_s[{i}]")
                      for i, v in enumerate(_list(top.get("measured_downtime_s", []),
                                                  "calibration.measured_downtime_s", MAX_SAMPLES)))
    return Calibration(hosts, sizes.get("image_bytes"), sizes.get("checkpoint_bytes"), sizes.get("delta_bytes"),
                       downtimes, strategy, *services, handover_s)


def _hosts(hosts_in: Any) -> dict[str, HostCalibration]:
    if not isinstance(hosts_in, dict) or not hosts_in:
        raise ValidationError("calibration.hosts: expected a non-empty object of host name -> measurements")
    if len(hosts_in) > MAX_HOSTS:
        raise ValidationError(f"calibration.hosts: {len(hosts_in)} hosts, at most {MAX_HOSTS} allowed")
    hosts = {}
    for name, h in hosts_in.items():
        check_id(name, "calibration.hosts")
        what = f"calibration.hosts.{name}"
        h = _obj(h, _HOST_KEYS, _HOST_KEYS, what)
        power = _number(h["cpu_power"], f"{what}.cpu_power", positive=True)
        hosts[name] = HostCalibration(name, power, _coefficient(h["checkpoint"], power, f"{what}.checkpoint"),
                                      _coefficient(h["restore"], power, f"{what}.restore"))
    return hosts


def load_calibration(path: Path) -> Calibration:
    """Read and parse a calibration file; its size is checked before it is read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValidationError(f"calibration: cannot read {path}: {exc.strerror}") from None
    if size > MAX_CALIBRATION_BYTES:
        raise ValidationError(f"calibration: {path} is {size} bytes, at most {MAX_CALIBRATION_BYTES} allowed")
    try:
        body = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"calibration: {path} is not JSON ({str(exc).splitlines()[0][:80]})") from None
    return parse_calibration(body)


def calibration_to_json(hosts: Mapping[str, tuple[float, list[tuple[float, float]], list[tuple[float, float]]]],
                        **extra: Any) -> dict[str, Any]:
    """The wire form of a stop-and-copy calibration for ``hosts`` = name -> (C_s, checkpoint pairs, restore pairs),
    (bytes, seconds) each."""
    return {"format": CALIBRATION_FORMAT, "strategy": STOP_AND_COPY,
            "hosts": {n: {"cpu_power": p, "checkpoint": [{"bytes": b, "seconds": s} for b, s in chk],
                          "restore": [{"bytes": b, "seconds": s} for b, s in rst]}
                      for n, (p, chk, rst) in hosts.items()},
            **extra}


def _stat(stats: Mapping[str, Any], key: str, what: str) -> float:
    return _number(stats.get(key), f"{what}.{key}")


def calibration_from_migrations(migrations: list[tuple[str, str, Mapping[str, Any]]], cpu_power: float,
                                rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The calibration file's JSON from real migrations: (source host, destination host, the agents' stats).

    The checkpoint sample of a migration is its first round's full dump on the source (``rounds[0]``:
    ``image_bytes``, ``dump_s``), the restore sample the final restore on the destination
    (``full_checkpoint_bytes``, ``restore_s``); the measured downtime is the frozen window. Sizes of eq. 5:
    S_Du = the first full dump, S_dlambda = the final round's bytes, S_lambda the rest of the restored image
    (so S_Du + S_lambda + S_dlambda is what the destination restored). Medians over the migrations.
    ``rename`` maps testbed host names to the scenario's (``edge1`` -> ``edge-0``); hosts need both kinds.
    """
    if not migrations:
        raise ValidationError("calibration: no migrations to calibrate from")
    chk: dict[str, list[tuple[float, float]]] = {}
    rst: dict[str, list[tuple[float, float]]] = {}
    sizes, downtimes = [], []
    for i, (src, dst, st) in enumerate(migrations):
        what = f"migrations[{i}]"
        rounds = st.get("rounds")
        if not isinstance(rounds, list) or not rounds or not isinstance(rounds[0], dict):
            raise ValidationError(f"{what}.rounds: expected a non-empty list of objects")
        image = _stat(rounds[0], "image_bytes", f"{what}.rounds[0]")
        full, delta = _stat(st, "full_checkpoint_bytes", what), _stat(st, "final_round_bytes", what)
        chk.setdefault(src, []).append((image, _stat(rounds[0], "dump_s", f"{what}.rounds[0]")))
        rst.setdefault(dst, []).append((full, _stat(st, "restore_s", what)))
        sizes.append((image, max(0.0, full - image - delta), delta))
        downtimes.append(_stat(st, "frozen_window_s", what))
    names = rename or {}
    both = sorted(set(chk) & set(rst))
    if not both:
        raise ValidationError("calibration: no host was both a source and a destination")
    mid = [sorted(col)[len(col) // 2] for col in zip(*sizes, strict=True)]
    body = calibration_to_json({names.get(h, h): (cpu_power, chk[h], rst[h]) for h in both},
                               service={"image_bytes": mid[0], "checkpoint_bytes": mid[1], "delta_bytes": mid[2]},
                               measured_downtime_s=downtimes)
    parse_calibration(body)  # what we write must be what we accept
    return body
