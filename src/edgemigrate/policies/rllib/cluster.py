"""Connecting to Ray: an in-process cluster by default, or an existing one (``--ray ADDRESS``) with a bounded wait.

``ray.init(address=...)`` on an address where nothing listens retries for a long time before failing with a
multi-line traceback; a TCP probe of the head's GCS port first turns that into a one-line error within
``connect_timeout_s``. The driver ships our package to the cluster (Ray's ``py_modules``), so the env runners
on other machines import the same edgemigrate as the driver without installing it there.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from edgemigrate.core.errors import ConfigError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` of a Ray head (the GCS port ``ray start --head --port`` was given)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray {address!r}: expected HOST:PORT of a Ray head (e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise ConfigError(f"--ray {address}: no Ray head reachable ({reason} within {timeout_s:g} s)") from None


def init_ray(address: str | None, *, num_cpus: int | None = None,
             connect_timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Start or join Ray; True if this call started it (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address is None or address == "local":
        ray.init(num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        return True
    probe(address, connect_timeout_s)
    package = Path(__file__).resolve().parents[2]  # src/edgemigrate
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"py_modules": [str(package)], "excludes": ["__pycache__"]})
    except ConnectionError as e:  # e.g. a token cluster without RAY_AUTH_TOKEN, or not a Ray GCS on that port
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--ray {address}: the port answers but Ray refused to connect ({first}; "
                          "a cluster with token authentication needs RAY_AUTH_TOKEN)") from None
    log.info("joined Ray cluster %s: %s", address, ray.cluster_resources())
    return True
