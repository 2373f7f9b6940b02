"""Hold a service's incoming packets while it is restored, instead of dropping them (netfilter queue).

A client whose request is dropped by the network lock retransmits only on its retransmission timeout:
measured with ``redis-benchmark`` during a move, every connection retransmitted at +0.21 s and +0.42 s after
the lock began, so a 0.36 s lock became a 0.43 s gap. On the destination the engine therefore sends the
service address's incoming TCP packets to a netfilter queue while CRIU restores the sockets, and accepts
them all the moment the restore returned: the retransmission that arrived during the restore is answered at
once. Packets reach the queue only once the address lives on the destination; what the source dropped
before that is retransmitted as usual.

Fail-safe: a queue nobody listens on drops its packets, and so does a queue whose listener died (the kernel
discards what it held), so the hold is never weaker than the ``DROP`` lock it stands in front of.

The protocol is nfnetlink_queue's (``linux/netfilter/nfnetlink_queue.h``), spoken over a raw netlink socket
in the calling process's network namespace (the agent lives in its host's namespace); packets are queued
with metadata only (``NFQNL_COPY_META``), so a held packet costs the kernel, not this process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import threading

from edgemigrate.core.errors import EngineError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
QUEUE_MAXLEN = 4096  # packets held at most; more are dropped (as by the lock)
FIRST_QUEUE = 0xC000  # queue numbers tried (one per concurrent hold in a namespace)
QUEUE_TRIES = 64

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")


def _attr(kind: int, payload: bytes) -> bytes:
    body = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each netlink message in a datagram; malformed tails are ignored."""
    out = []
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            break
        out.append((kind, data[pos + _NLMSGHDR.size:pos + length]))
        pos += (length + 3) & ~3
    return out


def _packet_id(payload: bytes) -> int | None:
    """The id in a queued packet's ``NFQA_PACKET_HDR`` attribute."""
    pos = _NFGENMSG.size
    while pos + _NLATTR.size <= len(payload):
        length, kind = _NLATTR.unpack_from(payload, pos)
        if length < _NLATTR.size:
            return None
        if kind & 0x7FFF == NFQA_PACKET_HDR and length >= _NLATTR.size + 4:
            return int(struct.unpack_from("!I", payload, pos + _NLATTR.size)[0])
        pos += (length + 3) & ~3
    return None


class PacketHold:
    """One bound queue whose packets are held until :meth:`release` (accepted) or :meth:`close` (dropped)."""

    def __init__(self) -> None:
        self.queue = -1
        self.held = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._seq = 0
        self._last_id: int | None = None
        self._released_id: int | None = None  # the last id a verdict accepted (a batch covers ids <= it)
        self._lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        try:
            self._sock.bind((0, 0))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._bind_free_queue()
        except (OSError, EngineError):
            self.close()
            raise

    # ------------------------------------------------------------------------------ set-up
    def _request(self, msg: int, queue: int, attrs: bytes) -> None:
        """Send one request and wait for its acknowledgement; a refusal raises OSError(errno)."""
        self._seq += 1
        self._sock.send(_message(msg, queue, attrs, self._seq, NLM_F_REQUEST | NLM_F_ACK))
        self._sock.settimeout(5.0)
        try:
            while True:
                for kind, payload in _messages(self._sock.recv(65536)):
                    if kind == NLMSG_ERROR and len(payload) >= 4:
                        code = -struct.unpack_from("=i", payload)[0]
                        if code:
                            raise OSError(code, os.strerror(code))
                        return
        except TimeoutError:
            raise EngineError("netfilter queue: no answer from the kernel") from None
        finally:
            self._sock.settimeout(None)

    def _bind_free_queue(self) -> None:
        params = struct.pack("!IB", 0, NFQNL_COPY_META)
        for queue in range(FIRST_QUEUE, FIRST_QUEUE + QUEUE_TRIES):
            try:
                self._request(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EBUSY):  # bound by another socket (another migration)
                    continue
                raise
            self.queue = queue
            self._request(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, params))
            self._request(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)))
            return
        raise EngineError(f"netfilter queue: queues {FIRST_QUEUE}..{FIRST_QUEUE + QUEUE_TRIES - 1} all taken "
                          "(or this process lacks CAP_NET_ADMIN)")

    def start(self) -> PacketHold:
        self._thread = threading.Thread(target=self._collect, name=f"nfqueue-{self.queue}", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------------------ holding
    def _collect(self) -> None:
        """Note each queued packet's id (the kernel keeps the packet) until told to stop."""
        while True:
            ready, _, _ = select.select([self._sock, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                self._note_packets(self._sock.recv(65536))
            except OSError:
                return

    def _note_packets(self, data: bytes) -> None:
        for kind, payload in _messages(data):
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                pid = _packet_id(payload)
                if pid is not None:
                    with self._lock:
                        self._last_id = pid if self._last_id is None else max(self._last_id, pid)
                        self.held += 1

    def _stop_collecting(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(5.0)
            self._thread = None

    def release(self, *, last: bool = True) -> int:
        """Accept every packet held so far (one batch verdict); returns how many were held in all.

        An accepted packet skips the rest of its chain, so the lock behind the hold rule no longer delays
        it: the destination calls ``release(last=False)`` as soon as the service can answer (the hold keeps
        collecting), removes the rules, then ``release()`` for what queued meanwhile (the kernel queues
        synchronously, so once the rule is gone nothing more arrives). Packets still queued when the hold
        is closed are dropped."""
        if last:
            self._stop_collecting()
            with contextlib.suppress(BlockingIOError, InterruptedError):
                self._sock.setblocking(False)
                while True:  # ids already queued to the socket but not yet read
                    self._note_packets(self._sock.recv(65536))
            self._sock.setblocking(True)
        with self._lock:
            last_id = self._last_id
        if last_id is not None and last_id != self._released_id:
            self._seq += 1
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last_id))
            self._sock.send(_message(NFQNL_MSG_VERDICT_BATCH, self.queue, verdict, self._seq))
            self._released_id = last_id
        return self.held

    def close(self) -> None:
        """Unbind (packets still held are dropped by the kernel)."""
        self._stop_collecting()
        self._sock.close()
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
