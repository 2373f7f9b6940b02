"""One-time migration tokens: a destination restores only what the controller announced.

A valid agent certificate proves only that its holder is *some* edge host; a compromised one could push
arbitrary process images (root code execution) onto every other host. So the holder of the ``client``
(controller) certificate first tells the destination to expect one migration (``AUTHORIZE``: a random token
bound to the service, the source host and this destination, with an expiry), then gives the token to the
source in ``MIGRATE``; the source presents it in ``HELLO``. The destination redeems a token at most once -
a mismatched or late attempt burns it too - and before it writes anything to disk.

Only a hash of each token is kept, in memory: a restarted agent forgets its tokens, and the migration is
asked for again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgemigrate.core.ids import check_id
from edgemigrate.engine.protocol.codec import ProtocolError

TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"[0-9a-f]{64}")
DEFAULT_TTL_S = 120.0  # the source's HELLO follows AUTHORIZE within a round trip or two
MAX_TTL_S = 600.0
MAX_PENDING = 64  # tokens a destination holds at once (expired ones are purged first)


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    service: str
    src_host: str
    expires_at_s: float


class TokenBook:
    """The tokens one destination agent holds. ``clock`` is injectable so expiry is tested without sleeping."""

    def __init__(self, host: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.clock = clock
        self._grants: dict[str, Grant] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def grant(self, token: str, service: str, src_host: str, to_host: str, ttl_s: float) -> None:
        """Record the controller's announcement (only ever called for the ``client`` certificate)."""
        if not _TOKEN_RE.fullmatch(token):
            raise ProtocolError("AUTHORIZE.token: expected 64 lowercase hex digits")
        for value, what in ((service, "AUTHORIZE.service"), (src_host, "AUTHORIZE.src_host"),
                            (to_host, "AUTHORIZE.to_host")):
            try:
                check_id(value, what)
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
        if to_host != self.host:
            raise ProtocolError(f"AUTHORIZE for destination {to_host} sent to {self.host}")
        if src_host == self.host:
            raise ProtocolError(f"AUTHORIZE: source and destination are both {self.host}")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ProtocolError(f"AUTHORIZE.ttl_s: {ttl_s} outside (0, {MAX_TTL_S}]")
        now = self.clock()
        self._grants = {d: g for d, g in self._grants.items() if g.expires_at_s > now}
        if len(self._grants) >= MAX_PENDING:
            raise ProtocolError(f"{self.host} already expects {MAX_PENDING} migrations")
        self._grants[_digest(token)] = Grant(service, src_host, now + ttl_s)

    def redeem(self, token: str, service: str, src_host: str) -> None:
        """Use the token for ``service`` coming from ``src_host`` (the verified peer), or raise. One use."""
        grant = self._grants.pop(_digest(token), None) if _TOKEN_RE.fullmatch(token) else None
        if grant is None:
            raise ProtocolError(f"migration of {service} from {src_host} was not authorised "
                                "(no valid token: missing, already used or for another host)")
        if self.clock() > grant.expires_at_s:
            raise ProtocolError(f"migration of {service} from {src_host}: its token expired")
        if grant.service != service or grant.src_host != src_host:
            raise ProtocolError(f"token for {grant.service} from {grant.src_host} presented for {service} from "
                                f"{src_host}")
