"""CRIU's per-connection network lock, copied from the source host to the destination host.

After ``criu dump --tcp-established`` of a process in an external network namespace, CRIU leaves one
``DROP`` rule per direction of every dumped connection (matching ``! --mark 0xc114``, the mark CRIU's own
repair traffic carries) so the source kernel neither answers nor resets the peer. The destination needs the
same rules while CRIU restores the sockets (CRIU removes them there once the connections are repaired);
the source keeps its rules until the migration is over and then drops them.
"""

from __future__ import annotations

import re
import subprocess

from edgemigrate.core.errors import EngineError

CRIU_MARK = "0xc114"
# A restored service has at most RLIMIT_NOFILE (1024 in the bundle) connections, two rules each.
MAX_LOCK_RULES = 2048
# only rules of this exact shape are ever applied on a host: they come from the network
_RULE_RE = re.compile(
    r"-A (INPUT|OUTPUT) -s (\d{1,3}(?:\.\d{1,3}){3})/32 -d (\d{1,3}(?:\.\d{1,3}){3})/32 -p tcp "
    r"-m mark ! --mark 0xc114 -m tcp --sport \d{1,5} --dport \d{1,5} -j DROP"
)


def _ns(netns_path: str | None, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns_path}", "--", *argv] if netns_path else argv


def criu_drop_rules(netns_path: str | None, service_ip: str | None = None) -> list[str]:
    """The ``-A ...`` lines of CRIU's connection-lock rules in a namespace's filter table (only those of
    ``service_ip``'s connections if given: other services on the host may be migrating too)."""
    proc = subprocess.run(_ns(netns_path, ["iptables-save", "-t", "filter"]), capture_output=True, text=True,
                          check=False, timeout=30)
    if proc.returncode != 0:
        raise EngineError(f"iptables-save failed: {proc.stderr.strip()[:200]}")
    rules = [ln.strip() for ln in proc.stdout.splitlines() if _RULE_RE.fullmatch(ln.strip())]
    return rules if service_ip is None else [r for r in rules if _local_ip(r) == service_ip]


def _local_ip(rule: str) -> str:
    """The address of this host's end of the locked connection (destination of INPUT, source of OUTPUT)."""
    m = _RULE_RE.fullmatch(rule)
    if m is None:
        raise EngineError(f"refusing netfilter rule that is not a CRIU connection lock: {rule[:120]!r}")
    return m.group(3) if m.group(1) == "INPUT" else m.group(2)


def check_rules(rules: list[str] | tuple[str, ...]) -> list[str]:
    """Reject anything that is not a CRIU lock rule (rules arrive from the network)."""
    for r in rules:
        if not isinstance(r, str) or not _RULE_RE.fullmatch(r):
            raise EngineError(f"refusing netfilter rule that is not a CRIU connection lock: {str(r)[:120]!r}")
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


def apply_rules(netns_path: str | None, rules: list[str] | tuple[str, ...]) -> None:
    _restore(netns_path, check_rules(rules))


def remove_rules(netns_path: str | None, rules: list[str] | tuple[str, ...]) -> None:
    """Delete the given lock rules where present (idempotent)."""
    present = set(criu_drop_rules(netns_path))
    _restore(netns_path, ["-D" + r[2:] for r in check_rules(rules) if r in present])
