"""The planner's input: one snapshot of servers, base stations and users, validated on construction.

The central controller (Ngo et al. 2020, sec. III) fills a snapshot from its database - measurements sent by
agents and mobile users, i.e. peer data - so every field is checked here and a bad one raises
:class:`~edgemigrate.core.errors.ValidationError` naming it (``snapshot.users.task_bytes[3] = -1 ...``).
Arrays are copied, converted and made read-only, so a plan can never see a snapshot change under it.

Index conventions: servers 0..S-1 (the cloud is a server with ``is_cloud``, as in the paper's set S),
base stations 0..B-1, users 0..U-1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.handover import PrecopyModel

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def _array(name: str, value: ArrayLike, shape: tuple[int, ...] | None, *, lower: float | None = 0.0,
           strict: bool = False, allow_inf: bool = False, integer: bool = False) -> NDArray:
    """A read-only copy of ``value`` with the given shape, finite (or +-inf if allowed) and >= / > ``lower``."""
    try:
        raw = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be numeric") from None
    if shape is not None and raw.shape != shape:
        raise ValidationError(f"{name} has shape {raw.shape}, expected {shape}")
    bad = np.isnan(raw) if allow_inf else ~np.isfinite(raw)
    if lower is not None:
        bad |= (raw <= lower) if strict else (raw < lower)
    if integer:
        bad |= np.isfinite(raw) & (raw != np.round(raw))
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), raw.shape)
        at = f"[{', '.join(str(int(i)) for i in idx)}]" if raw.ndim else ""
        rule = "an integer " if integer else ""
        rule += "finite " if not allow_inf else "not nan "
        if lower is not None:
            rule += f"{'>' if strict else '>='} {lower:g}"
        raise ValidationError(f"{name}{at} = {raw[idx]:g} must be {rule.strip()}")
    out = raw.astype(np.int64) if integer else raw
    out.setflags(write=False)
    return out


def _set(obj: object, name: str, value: NDArray) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass: replace the field with its validated array


@dataclass(frozen=True, slots=True)
class Servers:
    """S servers (edge and cloud). Capacities are what these users may use (3c); 0 disables a resource's row.

    ``cpu_power`` is C_s (a benchmark score, eq. 4-5); ``link_bps[s, s']`` the bandwidth a migration from s to
    s' gets (eq. 5's B_ss', diagonal unused); ``psi``/``rho`` the eq. 5 coefficients fitted per server with
    :func:`edgemigrate.costs.handover.fit_size_coefficient`. Capacities may be inf (no limit).
    """

    cpu_power: F64
    cpu_cores: F64
    memory_bytes: F64
    disk_bytes: F64
    is_cloud: NDArray[np.bool_]
    link_bps: F64
    psi: F64
    rho: F64

    def __post_init__(self) -> None:
        cpu = _array("snapshot.servers.cpu_power", self.cpu_power, None, strict=True)
        if cpu.ndim != 1 or cpu.size == 0:
            raise ValidationError(f"snapshot.servers.cpu_power has shape {cpu.shape}, expected (S,) with S >= 1")
        n = cpu.size
        _set(self, "cpu_power", cpu)
        for name in ("cpu_cores", "memory_bytes", "disk_bytes"):
            _set(self, name, _array(f"snapshot.servers.{name}", getattr(self, name), (n,), allow_inf=True))
        cloud = np.array(self.is_cloud)
        if cloud.shape != (n,) or cloud.dtype != np.bool_:
            raise ValidationError(f"snapshot.servers.is_cloud must be {n} booleans, got {cloud.dtype} {cloud.shape}")
        cloud.setflags(write=False)
        _set(self, "is_cloud", cloud)
        link = _array("snapshot.servers.link_bps", self.link_bps, (n, n), lower=None)
        off = ~np.eye(n, dtype=bool)
        if np.any(link[off] <= 0):
            i, j = np.argwhere((link <= 0) & off)[0]
            raise ValidationError(f"snapshot.servers.link_bps[{i}, {j}] = {link[i, j]} must be > 0")
        _set(self, "link_bps", link)
        _set(self, "psi", _array("snapshot.servers.psi", self.psi, (n,)))
        _set(self, "rho", _array("snapshot.servers.rho", self.rho, (n,)))

    @property
    def n(self) -> int:
        return int(self.cpu_power.size)


@dataclass(frozen=True, slots=True)
class BaseStations:
    """B base stations: ``backhaul_bps[b, s]`` = B_bs and ``rtt_s[b, s]`` = RTT_bs (eq. 4); N_b = ``max_users`` (3e)."""

    backhaul_bps: F64
    rtt_s: F64
    max_users: I64

    def __post_init__(self) -> None:
        bh = _array("snapshot.bss.backhaul_bps", self.backhaul_bps, None, strict=True)
        if bh.ndim != 2 or 0 in bh.shape:
            raise ValidationError(f"snapshot.bss.backhaul_bps has shape {bh.shape}, expected (B, S) with B, S >= 1")
        _set(self, "backhaul_bps", bh)
        _set(self, "rtt_s", _array("snapshot.bss.rtt_s", self.rtt_s, bh.shape))
        _set(self, "max_users", _array("snapshot.bss.max_users", self.max_users, (bh.shape[0],), integer=True))

    @property
    def n(self) -> int:
        return int(self.backhaul_bps.shape[0])


@dataclass(frozen=True, slots=True)
class Users:
    """U users at time t with their current server/BS, RSSI per BS measured now and estimated at t' (3d).

    ``rssi_*_dbm`` may hold -inf for a BS the user does not hear. ``tasks`` is n_ubs (tasks per planning
    period, eq. 1), ``proc_s`` the processing delay measured on the current server (eq. 4); the three sizes
    feed eq. 5: ``image_bytes`` S_Du, ``checkpoint_bytes`` S_lambda and ``delta_bytes`` S_dlambda. The paper
    estimates the last two from two consecutive checkpoints taken while the container runs: the first one's
    size, and the size of what changed between them (the changed pages, as ``engine/delta.py`` finds them).
    """

    server: I64
    bs: I64
    rssi_now_dbm: F64
    rssi_next_dbm: F64
    task_bytes: F64
    tasks: F64
    proc_s: F64
    cpu_cores: F64
    memory_bytes: F64
    disk_bytes: F64
    image_bytes: F64
    checkpoint_bytes: F64
    delta_bytes: F64

    def __post_init__(self) -> None:
        server = _array("snapshot.users.server", self.server, None, integer=True)
        if server.ndim != 1:
            raise ValidationError(f"snapshot.users.server has shape {server.shape}, expected (U,)")
        n = server.size
        _set(self, "server", server)
        _set(self, "bs", _array("snapshot.users.bs", self.bs, (n,), integer=True))
        now = _array("snapshot.users.rssi_now_dbm", self.rssi_now_dbm, None, lower=None, allow_inf=True)
        if now.ndim != 2 or now.shape[0] != n:
            raise ValidationError(f"snapshot.users.rssi_now_dbm has shape {now.shape}, expected ({n}, B)")
        _set(self, "rssi_now_dbm", now)
        _set(self, "rssi_next_dbm",
             _array("snapshot.users.rssi_next_dbm", self.rssi_next_dbm, now.shape, lower=None, allow_inf=True))
        for f in fields(self)[4:]:
            _set(self, f.name, _array(f"snapshot.users.{f.name}", getattr(self, f.name), (n,)))
        for f in ("rssi_now_dbm", "rssi_next_dbm"):
            if np.any(getattr(self, f) == np.inf):
                raise ValidationError(f"snapshot.users.{f} holds +inf (only -inf, 'not heard', is allowed)")

    @property
    def n(self) -> int:
        return int(self.server.size)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one planning round needs at time ``now_s`` for the horizon t' = now + ``horizon_s``.

    ``min_rssi_dbm`` is the receiver's minimum (3d), ``hysteresis_db`` the relative-RSSI handover hysteresis,
    ``handover_s`` T_ho, and ``margin`` the 10 % error margin of the trigger times (Ngo et al. 2020, sec. IV-B).
    Defaults: -82 dBm is 802.11n's sensitivity for its slowest rate (below it ``wifi_rate_bps`` gives 0),
    0.5 s the paper's handover time (sec. V-A), 3 dB a common Wi-Fi roaming hysteresis (the paper gives none).
    ``replan`` marks the users whose monitor triggered the planner this round (sec. III: an SLA miss or a due
    handover; :func:`edgemigrate.planning.triggered_users`); the others keep their server and BS and only take
    up capacity. None replans everyone. ``precopy`` is the fitted pre-copy model of the migrations the backend
    runs (Clark et al. 2005, ``costs.handover.precopy_times_s``; None: stop-and-copy, eq. 5) and
    ``server_rtt_s[s, s']`` the RTT between servers it needs (None: 0).
    """

    servers: Servers
    bss: BaseStations
    users: Users
    now_s: float
    horizon_s: float
    min_rssi_dbm: float = -82.0
    hysteresis_db: float = 3.0
    handover_s: float = 0.5
    margin: float = 0.1
    replan: NDArray[np.bool_] | None = None
    precopy: PrecopyModel | None = None
    server_rtt_s: F64 | None = None

    def __post_init__(self) -> None:
        if self.precopy is not None and not isinstance(self.precopy, PrecopyModel):
            raise ValidationError("snapshot.precopy must be a PrecopyModel or None")
        if self.server_rtt_s is not None:
            n = self.servers.n if isinstance(self.servers, Servers) else 0
            object.__setattr__(self, "server_rtt_s", _array("snapshot.server_rtt_s", self.server_rtt_s, (n, n)))
        for name, kind in (("servers", Servers), ("bss", BaseStations), ("users", Users)):
            if not isinstance(getattr(self, name), kind):
                raise ValidationError(f"snapshot.{name} must be a {kind.__name__}")
        for name, lower, strict in (("now_s", None, False), ("horizon_s", 0.0, True), ("min_rssi_dbm", None, False),
                                    ("hysteresis_db", 0.0, False), ("handover_s", 0.0, False), ("margin", 0.0, False)):
            value = _array(f"snapshot.{name}", getattr(self, name), (), lower=lower, strict=strict)
            object.__setattr__(self, name, float(value))
        if self.margin > 1.0:
            raise ValidationError(f"snapshot.margin = {self.margin} must be <= 1 (a fraction; the paper uses 0.1)")
        S, B, U = self.servers.n, self.bss.n, self.users.n
        if self.bss.backhaul_bps.shape[1] != S:
            raise ValidationError(f"snapshot.bss.backhaul_bps has {self.bss.backhaul_bps.shape[1]} server columns, "
                                  f"but there are {S} servers")
        if self.users.rssi_now_dbm.shape[1] != B:
            raise ValidationError(f"snapshot.users.rssi_now_dbm has {self.users.rssi_now_dbm.shape[1]} BS columns, "
                                  f"but there are {B} base stations")
        if self.replan is not None:
            mask = np.array(self.replan)
            if mask.shape != (U,) or mask.dtype != np.bool_:
                raise ValidationError(f"snapshot.replan must be {U} booleans, got {mask.dtype} {mask.shape}")
            mask.setflags(write=False)
            object.__setattr__(self, "replan", mask)
        for name, n in (("server", S), ("bs", B)):
            idx = getattr(self.users, name)
            if U and idx.max() >= n:
                u = int(np.argmax(idx >= n))
                raise ValidationError(f"snapshot.users.{name}[{u}] = {idx[u]} is out of range (there are {n})")
