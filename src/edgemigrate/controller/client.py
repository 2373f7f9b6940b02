"""The controller's API client, for mobile users (``mu-<user>`` certificate) and operators (``client``).

::

    async with ControllerClient("10.0.0.1", 7500, pki_dir=Path("pki/mus/alice"), cert="mu-alice") as c:
        await c.report(MuReport("alice", time.time(), delays=(TaskDelay("counter", 0.03),)))
        addr = await c.discover("alice", "counter")   # {"host": ..., "address": "ip:port", ...}

One connection carries every request; replies are bounded and decoded strictly like the requests the
controller reads. A refused request raises :class:`ControllerRefused` with the controller's one-line reason.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from edgemigrate.controller.api import CONTROLLER_NAME, MAX_LINE_BYTES, ApiError
from edgemigrate.controller.monitor import mu_report_to_json
from edgemigrate.controller.store import MuReport
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.engine.strictjson import loads_untrusted
from edgemigrate.engine.transport import tls

REPLY_TIMEOUT_S = 3600.0  # plan_now waits for real migrations


class ControllerRefused(EdgeMigrateError):
    """The controller answered the request with an error (its reason is the message)."""


class ControllerClient:
    def __init__(self, host: str, port: int, *, pki_dir: Path, cert: str,
                 reply_timeout_s: float = REPLY_TIMEOUT_S) -> None:
        self.host, self.port = host, port
        self._ctx = tls.client_context(pki_dir, cert)
        self.reply_timeout_s = reply_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> ControllerClient:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ctx, server_hostname=CONTROLLER_NAME, limit=MAX_LINE_BYTES + 1)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None

    async def request(self, op: str, **body: Any) -> dict[str, Any]:
        """Send one request and return the reply's fields (without ``ok``)."""
        return await self.raw(json.dumps({"op": op, **body}).encode())

    async def raw(self, line: bytes) -> dict[str, Any]:
        """Send ``line`` as it is (tests send malformed ones) and return the decoded reply."""
        if self._reader is None or self._writer is None:
            raise ApiError("ControllerClient: use it as `async with ControllerClient(...) as c`")
        self._writer.write(line + b"\n")
        await self._writer.drain()
        try:
            reply = await asyncio.wait_for(self._reader.readuntil(b"\n"), self.reply_timeout_s)
        except asyncio.IncompleteReadError:
            raise ControllerRefused("the controller closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ApiError(f"reply: longer than {MAX_LINE_BYTES} bytes") from None
        body = loads_untrusted(reply, ApiError, "reply")
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            raise ApiError("reply: expected an object with a boolean 'ok'")
        if not body.pop("ok"):
            raise ControllerRefused(str(body.get("error", "refused"))[:1000])
        return body

    async def report(self, report: MuReport) -> dict[str, Any]:
        return await self.request("report_mu", report=mu_report_to_json(report))

    async def discover(self, user: str, service: str) -> dict[str, Any]:
        return await self.request("discover", user=user, service=service)

    async def register(self, op: str, **fields: Any) -> dict[str, Any]:
        """Operator: one registration call (``register_host``, ``register_base_station``, ``register_user``
        or ``set_rtt``); the controller checks every value and answers with the registered name."""
        return await self.request(op, **fields)
