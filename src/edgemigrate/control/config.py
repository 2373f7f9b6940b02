"""A host agent's configuration (shared by the agent and the source side of its migrations)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemigrate.engine.transport.streams import DATA_RCVBUF_BYTES

IO_TIMEOUT_S = 20.0  # no progress on a connection for this long = the link or the peer is gone
MAX_CONNECTIONS = 64  # open control + data connections; more are closed at once
MAX_INCOMING = 4  # migrations this host receives at the same time


@dataclass(frozen=True, slots=True)
class AgentConfig:
    host: str
    listen_ip: str
    port: int
    pki_dir: Path
    state_dir: Path
    image_root: Path
    netns_path: str | None = None
    testbed: str | None = None
    io_timeout_s: float = IO_TIMEOUT_S
    # fault injection: "corrupt-chunk", "die-after-final-dump", "die-after-commit", "die-after-restore",
    # "unable-to-freeze", "never-freezes", "live-read-fails", "stall-after-freeze"
    fault: str | None = None
    data_rcvbuf_bytes: int = DATA_RCVBUF_BYTES  # receive buffer of incoming data connections; 0 = autotuning
    max_connections: int = MAX_CONNECTIONS
    max_incoming: int = MAX_INCOMING

    @property
    def data_port(self) -> int:
        return self.port + 1
