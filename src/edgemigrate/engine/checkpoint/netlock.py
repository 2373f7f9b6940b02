"""The network lock that keeps a service's TCP peers waiting (not reset) while the service moves.

The engine locks the service's address itself, with one ``DROP`` rule per direction for all TCP traffic
of that address (:func:`service_lock_rules`), and runs CRIU with ``--network-lock skip``
(:mod:`~edgemigrate.engine.checkpoint.runc`). CRIU's own iptables lock inserts two rules per connection
while the service is frozen and, in a leave-running round, deletes them again before it thaws it: with 11
client connections that was ~0.5 s of each pre-copy round's freeze, and the same deletions again at the end
of every restore (measured in ``docs/results/precopy-stall``). A pre-copy round needs no lock at all: only
its memory pages are used, never its socket state. The order:

* source: :func:`lock_service` just before the final dump; the rules travel with the final round; removed
  when the migration commits, or after the service resumed here on failure;
* destination: the inbound one of those rules installed before the restore (:func:`inbound`: no client
  packet reaches the stack, so no reset is sent, while the sockets are repaired) and removed as soon as the
  restore returned (what CRIU itself does at the end of a restore);
  in front of them a hold (:func:`hold_rule`, :mod:`~edgemigrate.engine.checkpoint.nfqueue`) keeps the
  incoming packets instead of dropping them, and lets them in when the restore returned.

Rules arrive from the network: only the two shapes built here and CRIU's per-connection shape (matching
``! --mark 0xc114``, the mark of CRIU's own repair traffic) are ever applied, and only for the service's
own address.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter

from edgemigrate.core.errors import EngineError

CRIU_MARK = "0xc114"
# A restored service has at most RLIMIT_NOFILE (1024 in the bundle) connections, two rules each.
MAX_LOCK_RULES = 2048
# only rules of this exact shape are ever applied on a host: they come from the network
_RULE_RE = re.compile(
    r"-A (INPUT|OUTPUT) -s (\d{1,3}(?:\.\d{1,3}){3})/32 -d (\d{1,3}(?:\.\d{1,3}){3})/32 -p tcp "
    r"-m mark ! --mark 0xc114 -m tcp --sport \d{1,5} --dport \d{1,5} -j DROP"
)
# the engine's own lock of a whole address, as iptables-save prints it
_SERVICE_RULE_RE = re.compile(
    r"-A (?:INPUT -d|OUTPUT -s) (\d{1,3}(?:\.\d{1,3}){3})/32 -p tcp -m mark ! --mark 0xc114 -j DROP"
)
# the destination's hold (engine/checkpoint/nfqueue.py) in front of its lock; never accepted from a peer
_HOLD_RULE_RE = re.compile(
    r"-A INPUT -d (\d{1,3}(?:\.\d{1,3}){3})/32 -p tcp -m mark ! --mark 0xc114 -j NFQUEUE --queue-num \d{1,5}"
)
_IPV4_RE = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


def service_lock_rules(ip: str) -> list[str]:
    """The two rules that hold all TCP traffic of ``ip`` on this host (CRIU's marked repair traffic passes)."""
    if not isinstance(ip, str) or not _IPV4_RE.fullmatch(ip):
        raise EngineError(f"not an IPv4 address to lock: {str(ip)[:40]!r}")
    return [f"-A INPUT -d {ip}/32 -p tcp -m mark ! --mark {CRIU_MARK} -j DROP",
            f"-A OUTPUT -s {ip}/32 -p tcp -m mark ! --mark {CRIU_MARK} -j DROP"]


def hold_rule(ip: str, queue: int) -> str:
    """The rule that sends ``ip``'s incoming TCP packets to netfilter queue ``queue`` (inserted ahead of the
    lock, which drops them if nobody holds the queue)."""
    service_lock_rules(ip)  # validates ip
    if not 0 <= queue < 1 << 16:
        raise EngineError(f"netfilter queue number out of range: {queue}")
    return f"-A INPUT -d {ip}/32 -p tcp -m mark ! --mark {CRIU_MARK} -j NFQUEUE --queue-num {queue}"


def _is_lock_rule(rule: str) -> bool:
    return bool(_RULE_RE.fullmatch(rule) or _SERVICE_RULE_RE.fullmatch(rule))


def _is_local_rule(rule: str) -> bool:
    return _is_lock_rule(rule) or bool(_HOLD_RULE_RE.fullmatch(rule))


def _ns(netns_path: str | None, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns_path}", "--", *argv] if netns_path else argv


def criu_drop_rules(netns_path: str | None, service_ip: str | None = None) -> list[str]:
    """The ``-A ...`` lines of the lock rules (CRIU's per-connection ones, the engine's per-address ones and
    its holds) in a namespace's filter table; only those of ``service_ip`` if given (other services on the host may be
    migrating too)."""
    proc = subprocess.run(_ns(netns_path, ["iptables-save", "-t", "filter"]), capture_output=True, text=True,
                          check=False, timeout=30)
    if proc.returncode != 0:
        raise EngineError(f"iptables-save failed: {proc.stderr.strip()[:200]}")
    rules = [ln.strip() for ln in proc.stdout.splitlines() if _is_local_rule(ln.strip())]
    return rules if service_ip is None else [r for r in rules if _local_ip(r) == service_ip]


def _local_ip(rule: str) -> str:
    """The address of this host's end of the locked connection (destination of INPUT, source of OUTPUT)."""
    m = _SERVICE_RULE_RE.fullmatch(rule) or _HOLD_RULE_RE.fullmatch(rule)
    if m is not None:
        return m.group(1)
    m = _RULE_RE.fullmatch(rule)
    if m is None:
        raise EngineError(f"refusing netfilter rule that is not a connection lock: {rule[:120]!r}")
    return m.group(3) if m.group(1) == "INPUT" else m.group(2)


def check_rules(rules: list[str] | tuple[str, ...]) -> list[str]:
    """Reject anything that is not a lock rule (rules arrive from the network)."""
    for r in rules:
        if not isinstance(r, str) or not _is_lock_rule(r):
            raise EngineError(f"refusing netfilter rule that is not a connection lock: {str(r)[:120]!r}")
    return list(rules)


def check_service_rules(rules: list[str] | tuple[str, ...], service_ip: str) -> list[str]:
    """Rules from a peer for one service: at most :data:`MAX_LOCK_RULES`, each a CRIU lock rule of a
    connection whose local end is ``service_ip`` (a peer cannot make this host drop anyone else's traffic)."""
    if len(rules) > MAX_LOCK_RULES:
        raise EngineError(f"{len(rules)} connection-lock rules exceed the limit of {MAX_LOCK_RULES}")
    for r in check_rules(rules):
        if _local_ip(r) != service_ip:
            raise EngineError(f"connection-lock rule for another address than the service's {service_ip}: {r[:120]!r}")
    return list(dict.fromkeys(rules))


def _restore(netns_path: str | None, lines: list[str]) -> None:
    if not lines:
        return
    doc = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    proc = subprocess.run(_ns(netns_path, ["iptables-restore", "--noflush"]), input=doc, capture_output=True,
                          text=True, check=False, timeout=30)
    if proc.returncode != 0:
        raise EngineError(f"iptables-restore failed: {proc.stderr.strip()[:200]}")


def check_local_rules(rules: list[str] | tuple[str, ...]) -> list[str]:
    """Rules this host may apply or remove: the lock shapes, and its own hold rules (never from a peer)."""
    for r in rules:
        if not isinstance(r, str) or not _is_local_rule(r):
            raise EngineError(f"refusing netfilter rule that is not a connection lock: {str(r)[:120]!r}")
    return list(rules)


def inbound(rules: list[str] | tuple[str, ...]) -> list[str]:
    """The ``INPUT`` rules among ``rules``: all a destination installs while it restores. Its restored copy
    must be able to send as soon as it runs: the replies to requests that were dumped in its sockets' queues
    (the source pauses before it locks) and its own retransmissions. Nothing else can leave: no packet of a
    client reaches the TCP stack for the address before the inbound rule is lifted, so no reset is ever
    generated. (The window probe the kernel sends when CRIU lifts TCP repair goes out too; it does not, by
    itself, make a waiting client retransmit: captured, the client answers it with a pure ACK.)"""
    return [r for r in check_local_rules(rules) if r.startswith("-A INPUT ")]


def apply_rules(netns_path: str | None, rules: list[str] | tuple[str, ...]) -> None:
    """Insert lock (or hold) rules at the head of their chains, ahead of any ``ACCEPT`` a host may have
    (each line inserts at the head: the last one given ends up first)."""
    _restore(netns_path, ["-I" + r[2:] for r in check_local_rules(rules)])


def remove_rules(netns_path: str | None, rules: list[str] | tuple[str, ...]) -> None:
    """Delete the given lock rules where present (idempotent). All at once first - one process, since this
    runs while clients wait; only if one of them is absent (the batch then fails whole) the table is listed
    and as many copies of each deleted as it holds."""
    rules = check_local_rules(rules)
    if not rules:
        return
    try:
        _restore(netns_path, ["-D" + r[2:] for r in rules])
        return
    except EngineError:
        pass
    present = Counter(criu_drop_rules(netns_path))
    deletes = []
    for r in rules:
        if present[r] > 0:
            present[r] -= 1
            deletes.append("-D" + r[2:])
    _restore(netns_path, deletes)


def lock_service(netns_path: str | None, ip: str) -> list[str]:
    """Hold ``ip``'s TCP traffic here; returns the rules, which travel with the final round. One process and
    no look first (this runs with the service frozen): locking twice only adds copies, and
    :func:`unlock_service` removes every copy."""
    rules = service_lock_rules(ip)
    apply_rules(netns_path, rules)
    return rules


def unlock_service(netns_path: str | None, ip: str) -> None:
    """Let ``ip``'s TCP traffic through again (idempotent; CRIU's per-connection rules of ``ip`` go too)."""
    remove_rules(netns_path, criu_drop_rules(netns_path, ip))


def destroy_sockets(netns_path: str | None, ip: str) -> None:
    """Abort every TCP socket whose local address is ``ip`` here (``ss -K``: the kernel's sock_destroy).

    Call it after killing a service whose sockets were *not* in TCP repair mode (a container paused and
    dumped with leave-running, or a restored copy being undone), with :func:`lock_service` held: the dead
    process's sockets would otherwise linger as orphans sending FINs - to clients the service now answers
    from another host, and blocking the same address and port if the service comes back here. The reset an
    abort sends is dropped by the lock."""
    service_lock_rules(ip)  # validates ip before it reaches a command line
    proc = subprocess.run(_ns(netns_path, ["ss", "-K", "-t", "-n", "src", ip]), capture_output=True, text=True,
                          check=False, timeout=30)
    if proc.returncode != 0:
        raise EngineError(f"ss -K failed: {proc.stderr.strip()[:200]}")
