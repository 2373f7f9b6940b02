"""CRIU's kernel-feature cache (``/run/criu.kdat``) on a host whose ``/run`` is not a tmpfs.

Every CRIU process first learns what the kernel can do (``kerndat_init``: it creates a veth pair in a scratch
network namespace, maps the vDSO, probes userfaultfd, pagemap, ...) unless it can load that from
``/run/criu.kdat``. CRIU writes that file only when ``/run`` is a tmpfs ("Can't keep kdat cache on
non-tempfs"), because a cache that survives a reboot may describe another kernel. On this machine kind
``/run`` is ext4, so *every* dump, restore and ``lazy-pages`` daemon paid the probe: ``criu check`` takes
0.08-0.09 s without the cache and 0.02 s with it, and in a final dump of the 200 MB counter the probe was
~45 ms of CRIU's 0.18-0.32 s, all of it inside the service's frozen window (it is paused before the dump
starts); the destination's restore paid it once more (``docs/results/precopy-stall``).

:func:`ensure_kdat_cache` makes the file CRIU would have made: it runs ``criu check`` in a private mount
namespace whose ``/run`` is a fresh tmpfs (so CRIU itself probes and writes the cache there, in its own
format), reads it back and installs it atomically. Because CRIU checks only the file's magic numbers, the
reboot hazard is handled here: a stamp next to the cache records the boot id and kernel release it was
probed on, and a cache of another boot is probed again. A cache without our stamp is CRIU's own (a tmpfs
``/run``) and is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

KDAT_CACHE = Path("/run/criu.kdat")  # criu/include/kerndat.h KERNDAT_CACHE_FILE (fixed for root)
STAMP_SUFFIX = ".edgemigrate-boot"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PROBE_TIMEOUT_S = 60.0
MAX_CACHE_BYTES = 1 << 20  # CRIU 4.2's struct kerndat_s is 912 bytes; a bigger "cache" is not one


def boot_stamp() -> str:
    """This boot and kernel, as the stamp records them."""
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = "unknown"
    return f"{boot} {platform.release()}\n"


def ensure_kdat_cache(cache: Path = KDAT_CACHE, criu: str = "criu") -> str:
    """Make sure CRIU finds a kernel-feature cache of *this* boot at ``cache``; returns what was done:
    ``"present"`` (ours of this boot, or CRIU's own), ``"written"``, or ``"failed: ..."`` (CRIU then probes
    on every call, as before: slower, never wrong)."""
    stamp = cache.with_name(cache.name + STAMP_SUFFIX)
    if cache.exists():
        try:
            ours = stamp.read_text()
        except OSError:
            return "present"  # CRIU wrote it itself: /run is a tmpfs on this host
        if ours == boot_stamp():
            return "present"
    data = _probe(criu)
    if isinstance(data, str):
        log.warning("no CRIU kernel-feature cache (every CRIU call probes the kernel again): %s", data)
        return f"failed: {data}"
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        stamp.write_text(boot_stamp())
        os.replace(tmp, cache)  # atomic: a CRIU starting meanwhile reads the old file or the new one
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return f"failed: {exc}"
    return "written"


def _probe(criu: str) -> bytes | str:
    """CRIU's own cache, made by ``criu check`` under a tmpfs ``/run`` of a private mount namespace; the
    bytes, or why there are none."""
    script = 'mount -t tmpfs -o size=1m,mode=0755 none /run && "$0" check >/dev/null 2>&1; cat /run/criu.kdat'
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, criu],
                              capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return repr(exc)
    if proc.returncode != 0 or not proc.stdout:
        return f"criu check under a private tmpfs /run made no cache (exit {proc.returncode}): " \
               f"{proc.stderr.decode(errors='replace').strip()[-200:]}"
    if len(proc.stdout) > MAX_CACHE_BYTES:
        return f"cache of {len(proc.stdout)} bytes: not CRIU's"
    return proc.stdout
