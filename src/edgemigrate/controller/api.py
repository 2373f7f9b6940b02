"""The controller's API: JSON lines over mutual TLS, with roles from the peer's certificate.

One request per line (``{"op": ..., ...}``), one reply per line (``{"ok": true, ...}`` or ``{"ok": false,
"error": "one line"}``), several requests per connection. Lines are bounded (:data:`MAX_LINE_BYTES`) and
decoded with :func:`~edgemigrate.engine.strictjson.loads_untrusted`; a connection idle for
:data:`IDLE_TIMEOUT_S` is closed. A bad request is answered with its error and logged; the connection and
every other one go on (a mobile user's garbage costs the controller one reply).

Roles come from the certificate the agent PKI issued (``engine/transport/tls.py``): ``client`` is the
operator (the CLI's certificate) and may do everything; ``mu-<user>`` is mobile user ``<user>`` (issued
by :func:`issue_mu_cert`) and may only report its own measurements and discover its own services. Any
other certificate of the CA (a host agent's) is refused.

A host agent's certificate is named after its host, so a host called ``mu-bob`` would carry the common name
of mobile user ``bob``. The name alone therefore does not make a mobile user: the peer's certificate must
be the very one :func:`issue_mu_cert` wrote into ``pki/mus/<user>/`` (compared byte for byte), and
:func:`issue_mu_cert` refuses a user whose certificate name a host certificate already has. The store also
refuses host names with the ``mu-`` prefix (``controller.store.rows.RESERVED_HOST_PREFIX``).
"""

from __future__ import annotations

import enum
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import EdgeMigrateError, ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.engine.strictjson import loads_untrusted
from edgemigrate.engine.transport import tls

MAX_LINE_BYTES = 256 << 10  # a full MU report (2 x 1000 entries) is ~100 KB
IDLE_TIMEOUT_S = 60.0
MU_PREFIX = "mu-"
CONTROLLER_NAME = "controller"  # the controller's own server certificate


class ApiError(EdgeMigrateError):
    """A request the controller refuses (bad form, not allowed for the caller's role)."""


class Role(enum.Enum):
    OPERATOR = "operator"
    MU = "mu"


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    user: str | None  # the MU's user name; None for the operator


MU_OPS = frozenset({"report_mu", "discover"})
REGISTER_OPS = frozenset({"register_host", "register_base_station", "register_user", "set_rtt"})
OPERATOR_OPS = MU_OPS | {"deploy", "plan_now", "status", "poll_hosts"} | REGISTER_OPS


def mu_cert_path(pki_dir: Path, user: str) -> Path:
    """Where :func:`issue_mu_cert` put mobile user ``user``'s certificate."""
    return pki_dir / "mus" / check_id(user, "user") / f"{MU_PREFIX}{user}.pem"


def _is_issued_mu_cert(pki_dir: Path, user: str, peer_der: bytes | None) -> bool:
    try:
        issued = ssl.PEM_cert_to_DER_cert(mu_cert_path(pki_dir, user).read_text())
    except (OSError, ValueError):
        return False
    return peer_der is not None and peer_der == issued


def caller_from_cert(common_name: str | None, *, peer_der: bytes | None = None,
                     pki_dir: Path | None = None) -> Caller:
    """The caller's role from its certificate, or :class:`ApiError`.

    With ``pki_dir`` (the server always passes it), a ``mu-<user>`` name is a mobile user only when
    ``peer_der`` is the certificate issued to that user, so a host agent named ``mu-<user>`` is refused.
    """
    if common_name == tls.CLIENT_NAME:
        return Caller(Role.OPERATOR, None)
    if common_name is not None and common_name.startswith(MU_PREFIX):
        try:
            user = check_id(common_name[len(MU_PREFIX):], "certificate user")
        except ValidationError:
            user = None
        if user is not None and pki_dir is not None and not _is_issued_mu_cert(pki_dir, user, peer_der):
            raise ApiError(f"certificate {common_name[:80]!r} is not the one issued to mobile user {user!r} "
                           "(a host's certificate with an MU-like name?)")
        if user is not None:
            return Caller(Role.MU, user)
    raise ApiError(f"certificate {str(common_name)[:80]!r} has no role here (expected {tls.CLIENT_NAME!r} "
                   f"or {MU_PREFIX}<user>)")


# the operator's registration calls: op -> (required keys, optional keys); values are range-checked by the
# store's rows (Host, BaseStation, User) and ``Store.put_rtt``, so the API and the store share one rule set
REGISTER_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "register_host": (frozenset({"name", "role", "address", "cpu_cores", "memory_bytes", "disk_bytes"}),
                      frozenset({"cpu_events_per_s"})),
    "register_base_station": (frozenset({"name", "x_m", "y_m", "bandwidth_bps", "max_users"}), frozenset()),
    "register_user": (frozenset({"name"}), frozenset({"sla_delay_s"})),
    "set_rtt": (frozenset({"base_station", "host", "rtt_s"}), frozenset()),
}


def check_register_body(op: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` of a registration call with exactly its known keys (values are checked by the rows)."""
    required, optional = REGISTER_KEYS[op]
    extra = sorted(str(k) for k in set(body) - required - optional)
    if extra:
        raise ApiError(f"{op}.{extra[0][:40]}: unknown key (expected {', '.join(sorted(required | optional))})")
    missing = sorted(required - set(body))
    if missing:
        raise ApiError(f"{op}.{missing[0]}: missing")
    return body


def check_agent_address(value: object, what: str = "register_host.address") -> str:
    """A host agent's address as the operator registers it: ``IP:PORT`` with an IP literal (v4, or v6 in
    brackets) and a port in 1..65535 - the controller connects there, so nothing else is accepted."""
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError(f"{what}: expected IP:PORT as a string of at most 64 characters")
    host, sep, port = value.rpartition(":")
    ip = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(ip)
        ok = bool(sep) and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535
    except ValueError:
        ok = False
    if not ok:
        raise ApiError(f"{what}: {value[:64]!r} is not IP:PORT (port 1-65535)")
    return value


def decode_request(line: bytes, caller: Caller) -> tuple[str, dict[str, Any]]:
    """``(op, body)`` of one request line, checked against the caller's role."""
    if len(line) > MAX_LINE_BYTES:
        raise ApiError(f"request: {len(line)} bytes, at most {MAX_LINE_BYTES}")
    body = loads_untrusted(line, ApiError, "request")
    if not isinstance(body, dict):
        raise ApiError(f"request: expected an object, got {type(body).__name__}")
    op = body.pop("op", None)
    if not isinstance(op, str) or op not in OPERATOR_OPS:
        raise ApiError(f"request.op: {str(op)[:40]!r} is not one of {', '.join(sorted(OPERATOR_OPS))}")
    allowed = OPERATOR_OPS if caller.role is Role.OPERATOR else MU_OPS
    if op not in allowed:
        raise ApiError(f"request.op: {op} is not allowed for a mobile user's certificate")
    if caller.role is Role.MU:
        report = body.get("report")
        user = body.get("user") if op == "discover" else report.get("user") if isinstance(report, dict) else None
        if user != caller.user:
            raise ApiError(f"request.user: {str(user)[:64]!r} is not the certificate's user {caller.user!r}")
    return op, body


def issue_mu_cert(pki_dir: Path, user: str) -> Path:
    """Issue mobile user ``user``'s certificate into ``pki_dir/mus/<user>`` (with the CA certificate);
    returns that folder, which is all the MU needs (:class:`~.client.ControllerClient`)."""
    check_id(user, "user")
    name = f"{MU_PREFIX}{user}"
    if (pki_dir / f"{name}.pem").exists() or (pki_dir / "hosts" / name).exists():
        raise ValidationError(f"user {user!r}: the PKI already has a host certificate named {MU_PREFIX}{user}; "
                              "rename the user or the host")
    out = pki_dir / "mus" / user
    tls.issue(pki_dir, MU_PREFIX + user, out)
    (out / "ca.pem").write_bytes((pki_dir / "ca.pem").read_bytes())
    return out


def issue_controller_cert(pki_dir: Path) -> None:
    """The controller's server certificate (``controller.pem``) in ``pki_dir``, once."""
    if not (pki_dir / f"{CONTROLLER_NAME}.pem").exists():
        tls.issue(pki_dir, CONTROLLER_NAME)
