"""Is a service up? Here (:func:`wait_healthy`) or according to a peer agent (:func:`peer_service_state`).

Both sides of a migration and an agent's recovery at start ask these questions, so they live below all of
them (no agent or migration object needed: only the runtime, the namespace and the TLS context).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceSpec
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, EngineError
from edgemigrate.engine.checkpoint.runtime import ContainerState, Runtime
from edgemigrate.engine.protocol.codec import MsgType
from edgemigrate.engine.transport.streams import connect

HEALTH_TIMEOUT_S = 30.0  # a deployed, restored or resumed service must accept connections within this: a fresh
# facedetect (OpenCV import + 200-500 MB filled) can take over 10 s to listen on a 2-core machine at load ~20
HEALTH_POLL_S = 0.01
HEALTH_CONNECT_TIMEOUT_S = 1.0  # one connection attempt to the service
PEER_CONNECT_TIMEOUT_S = 5.0  # reaching a peer agent's control port (TCP + TLS)
PEER_STATUS_TIMEOUT_S = 10.0  # its STATUS_REPLY (the peer lists its containers' runc states)


def parse_addr(addr: str) -> tuple[str, int]:
    """An agent's control address, ``IP:PORT``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"agent address {addr!r}: expected IP:PORT")
    return host, int(port)


def wait_healthy(spec: ServiceSpec, runtime: Runtime, netns_path: str | None, host: str,
                 timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """The service's container runs and accepts TCP connections on its service address (from ``host``,
    whose network namespace is ``netns_path``)."""
    deadline = time.monotonic() + timeout_s
    last = "not started"
    while time.monotonic() < deadline:
        try:
            with in_netns(netns_path), socket.create_connection((spec.ip, spec.port), HEALTH_CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            last = str(exc)
        else:
            if runtime.state(spec.name) is ContainerState.RUNNING:
                return
            last = "something else answers on the service address; the container is not running"
        time.sleep(HEALTH_POLL_S)
    raise EngineError(f"service {spec.name} on {host} not healthy after {timeout_s:.0f} s: {last}")


async def peer_service_state(client_ctx: ssl.SSLContext, host: str, addr: tuple[str, int], name: str) -> str | None:
    """What the agent of ``host`` at ``addr`` reports about ``name`` ("running", "restoring", "absent" ...);
    None if it cannot be reached."""
    try:
        conn = await connect(addr[0], addr[1], client_ctx, host, PEER_CONNECT_TIMEOUT_S)
        try:
            await conn.send(MsgType.STATUS)
            reply = await asyncio.wait_for(conn.expect(MsgType.STATUS_REPLY), PEER_STATUS_TIMEOUT_S)
        finally:
            await conn.close()
    except (TimeoutError, EdgeMigrateError, OSError):
        return None
    entry = reply.body["services"].get(name)
    return str(entry.get("state")) if isinstance(entry, dict) else "absent"
