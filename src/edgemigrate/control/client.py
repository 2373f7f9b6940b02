"""Client side (CLI, benchmarks, tests): talk to host agents over mutual TLS with the ``client`` certificate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.control.spec import ServiceSpec
from edgemigrate.control.tokens import DEFAULT_TTL_S, new_token
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.engine.protocol.codec import Message, MsgType
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.streams import FramedConnection, TransportError, connect

DEFAULT_AGENT_PORT = 7400
MIGRATE_TIMEOUT_S = 3600.0


class MigrationFailed(EngineError):
    """The migration failed; the message is the agent's one-line explanation."""


@dataclass(frozen=True, slots=True)
class AgentDirectory:
    """Where each host's agent listens: ``{host: (ip, port)}``."""

    addrs: dict[str, tuple[str, int]]
    pki_dir: Path

    @classmethod
    def from_testbed(cls, testbed: str, pki_dir: Path, port: int = DEFAULT_AGENT_PORT) -> AgentDirectory:
        from edgemigrate.testbed.testbed import Testbed

        tb = Testbed.load(testbed)
        return cls({h.name: (tb.host_ip(h.name), port) for h in tb.hosts()}, pki_dir)

    def addr(self, host: str) -> tuple[str, int]:
        if host not in self.addrs:
            from edgemigrate.core.registry import suggest

            raise ConfigError(f"unknown host {host!r}{suggest(host, list(self.addrs))}")
        return self.addrs[host]


async def _request(d: AgentDirectory, host: str, mtype: MsgType, timeout_s: float = 60.0, **body: Any) -> Message:
    ip, port = d.addr(host)
    conn = await connect(ip, port, tls.client_context(d.pki_dir, tls.CLIENT_NAME), host)
    try:
        await conn.send(mtype, **body)
        return await asyncio.wait_for(conn.expect(MsgType.OK, MsgType.STATUS_REPLY, MsgType.RESULT), timeout_s)
    finally:
        await conn.close()


async def status(d: AgentDirectory, host: str) -> dict[str, Any]:
    return (await _request(d, host, MsgType.STATUS)).body["services"]


async def deploy(d: AgentDirectory, host: str, spec: ServiceSpec) -> str:
    return (await _request(d, host, MsgType.DEPLOY, 120.0, service=spec.to_dict())).body["detail"]


async def stop(d: AgentDirectory, host: str, name: str) -> str:
    return (await _request(d, host, MsgType.STOP, service=name)).body["detail"]


async def locate(d: AgentDirectory, name: str) -> str:
    """The host whose agent reports ``name`` running."""
    found = []
    for host in d.addrs:
        try:
            services = await status(d, host)
        except (TimeoutError, TransportError):
            continue
        if services.get(name, {}).get("state") == "running":
            found.append(host)
    if not found:
        raise ConfigError(f"service {name!r} runs on no reachable host")
    if len(found) > 1:
        raise EngineError(f"service {name!r} runs on several hosts: {', '.join(found)}")
    return found[0]


async def authorize(d: AgentDirectory, name: str, src_host: str, to_host: str,
                    ttl_s: float = DEFAULT_TTL_S) -> str:
    """Tell ``to_host``'s agent to expect ``name`` from ``src_host`` once; returns the token for the source."""
    token = new_token()
    await _request(d, to_host, MsgType.AUTHORIZE, service=name, src_host=src_host, to_host=to_host, token=token,
                   ttl_s=ttl_s)
    return token


async def migrate(d: AgentDirectory, name: str, to_host: str, strategy: str, *, src_host: str | None = None,
                  on_progress: Callable[[dict[str, Any]], None] | None = None, compression: str = "model",
                  page_codec: str = "none", pipeline: str = "pipelined",
                  dirty_bytes_per_s: float | None = None, precopy_read: str = "live") -> dict[str, Any]:
    """Ask the agent running ``name`` to migrate it to ``to_host``; returns the agent's statistics.

    ``compression``: ``none``, ``fixed:CODEC:LEVEL``, ``rule`` or ``model`` (per-chunk selector);
    ``page_codec``: ``none`` or e.g. ``wkdm`` for ``pages-*.img``; ``pipeline``: ``pipelined`` or ``serial``;
    ``dirty_bytes_per_s``: the service's dirty rate measured on earlier migrations, if known (the source's
    pre-copy stop rule then skips a leave-running round that would find almost nothing dirty);
    ``precopy_read``: ``live`` (memory read while the service runs) or ``dump`` (CRIU's leave-running dump).
    """
    src = src_host or await locate(d, name)
    ip, port = d.addr(src)
    to_ip, to_port = d.addr(to_host)
    try:
        token = await authorize(d, name, src, to_host)
    except (TimeoutError, EngineError) as exc:
        raise MigrationFailed(f"cannot announce the migration of {name} to {to_host}: {exc}") from None
    conn = await connect(ip, port, tls.client_context(d.pki_dir, tls.CLIENT_NAME), src)
    body = {"service": name, "to_host": to_host, "to_addr": f"{to_ip}:{to_port}", "strategy": strategy,
            "compression": compression, "page_codec": page_codec, "pipeline": pipeline, "token": token,
            "precopy_read": precopy_read}
    if dirty_bytes_per_s is not None:
        body["dirty_bytes_per_s"] = float(dirty_bytes_per_s)
    return await run_migrate(conn, src, body, on_progress)


async def run_migrate(conn: FramedConnection, src: str, body: dict[str, Any],
                      on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Send ``MIGRATE body`` to the source agent ``src`` on ``conn`` and follow it (progress, then the
    statistics or the error); closes ``conn``. Shared by the operator's migrations and a node's own."""
    name = body["service"]
    try:
        await conn.send(MsgType.MIGRATE, **body)
        while True:
            m = await asyncio.wait_for(conn.next_message(), MIGRATE_TIMEOUT_S)
            if m is None:
                raise MigrationFailed(f"the agent on {src} closed the connection during the migration of {name} "
                                      f"(agent killed?); check `edgemigrate agent status` on {src} and "
                                      f"{body['to_host']}")
            if not isinstance(m, Message):
                raise MigrationFailed(f"unexpected data from the agent on {src}")
            if m.type is MsgType.PROGRESS and on_progress is not None:
                on_progress(m.body["event"])
            elif m.type is MsgType.RESULT:
                return m.body["stats"]
            elif m.type is MsgType.ERROR:
                raise MigrationFailed(m.body["message"])
    except (ConnectionError, OSError) as exc:
        raise MigrationFailed(f"connection to the agent on {src} broke during the migration of {name}: {exc}") from None
    finally:
        await conn.close()
