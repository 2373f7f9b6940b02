"""An agent's durable state: the services it runs and the migrations in flight (atomic JSON files).

The journal is what lets a restarted agent finish or undo a migration its previous incarnation left
half-way: a source session recorded as ``frozen`` (dumped without leave-running, not yet committed) is
resumed at the source unless the destination reports the service running
(:func:`~.source.recover_source_session`; the destination's side: :meth:`~.agent.Agent.recover`).
"""

from __future__ import annotations

import enum
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.control.spec import ServiceSpec
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.core.ids import check_id, child

log = logging.getLogger(__name__)


class SessionPhase(enum.Enum):
    PRECOPY = "precopy"  # source still running (leave-running rounds)
    FROZEN = "frozen"  # source dumped for good; final image in image_dir
    TAKEN_OVER = "taken-over"  # destination: the service address is here (held), nothing restored yet
    RESTORING = "restoring"  # destination: restore requested
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session: str
    role: str  # "source" | "destination"
    service: ServiceSpec
    peer_host: str
    peer_addr: str
    phase: SessionPhase
    image_dir: str | None = None

    def __post_init__(self) -> None:
        check_id(self.session, "session")
        check_id(self.peer_host, "peer_host")
        if self.role not in ("source", "destination"):
            raise ValueError(f"role: {self.role!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "role": self.role, "service": self.service.to_dict(),
                "peer_host": self.peer_host, "peer_addr": self.peer_addr, "phase": self.phase.value,
                "image_dir": self.image_dir}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionRecord:
        return cls(d["session"], d["role"], ServiceSpec.from_dict(d["service"]), d["peer_host"], d["peer_addr"],
                   SessionPhase(d["phase"]), d.get("image_dir"))


def _write_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class AgentStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.sessions_dir = state_dir / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self._services_path = state_dir / "services.json"

    def services(self) -> dict[str, ServiceSpec]:
        if not self._services_path.exists():
            return {}
        raw = json.loads(self._services_path.read_text())
        return {name: ServiceSpec.from_dict(d) for name, d in raw.items()}

    def put_service(self, spec: ServiceSpec) -> None:
        cur = {n: s.to_dict() for n, s in self.services().items()}
        cur[spec.name] = spec.to_dict()
        _write_atomic(self._services_path, cur)

    def drop_service(self, name: str) -> None:
        cur = {n: s.to_dict() for n, s in self.services().items() if n != name}
        _write_atomic(self._services_path, cur)

    def put_session(self, rec: SessionRecord) -> None:
        _write_atomic(child(self.sessions_dir, rec.session, suffix=".json"), rec.to_dict())

    def drop_session(self, session: str) -> None:
        child(self.sessions_dir, session, suffix=".json").unlink(missing_ok=True)

    def sessions(self) -> list[SessionRecord]:
        out = []
        for p in sorted(self.sessions_dir.glob("*.json")):
            try:
                rec = SessionRecord.from_dict(json.loads(p.read_text()))
                if p.name != f"{rec.session}.json":
                    raise ValueError(f"names session {rec.session!r}")
            except (ValueError, KeyError, TypeError, EdgeMigrateError) as exc:
                log.warning("%s: unreadable session record dropped: %s", p, exc)
                p.unlink()
                continue
            out.append(rec)
        return out
