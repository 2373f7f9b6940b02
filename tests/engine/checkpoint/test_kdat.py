"""CRIU's kernel-feature cache on a host whose /run is not a tmpfs (``engine/checkpoint/kdat.py``).

Real CRIU (root): the cache is made by CRIU itself under a private tmpfs /run, installed once per boot, a
cache of another boot is made again, CRIU's own cache is left alone, and CRIU really loads it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.engine.checkpoint.kdat import KDAT_CACHE, STAMP_SUFFIX, boot_stamp, ensure_kdat_cache

pytestmark = [pytest.mark.criu]


@pytest.fixture(autouse=True)
def _real() -> None:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")


def test_the_cache_is_made_once_per_boot_and_remade_for_another(tmp_path: Path) -> None:
    cache = tmp_path / "criu.kdat"
    stamp = tmp_path / ("criu.kdat" + STAMP_SUFFIX)
    assert ensure_kdat_cache(cache) == "written"
    data = cache.read_bytes()
    assert 0 < len(data) < 1 << 20 and stamp.read_text() == boot_stamp()
    assert ensure_kdat_cache(cache) == "present" and cache.read_bytes() == data
    stamp.write_text("another-boot 1.2.3\n")  # survived a reboot on a disk-backed /run: probed again
    cache.write_bytes(b"stale")
    assert ensure_kdat_cache(cache) == "written"
    # CRIU's probe again (not byte-identical: a few fields differ between probes), same magic and size
    fresh = cache.read_bytes()
    assert fresh[:8] == data[:8] and len(fresh) == len(data) and stamp.read_text() == boot_stamp()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".criu.kdat.")]  # no temporary left


def test_a_cache_that_criu_wrote_itself_is_left_alone(tmp_path: Path) -> None:
    cache = tmp_path / "criu.kdat"
    cache.write_bytes(b"criu's own")  # no stamp of ours: /run is a tmpfs there and CRIU keeps it
    assert ensure_kdat_cache(cache) == "present"
    assert cache.read_bytes() == b"criu's own"


def test_a_probe_that_makes_no_cache_installs_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "criu.kdat"
    assert ensure_kdat_cache(cache, criu="/bin/false").startswith("failed:")
    assert list(tmp_path.iterdir()) == []  # CRIU then probes on every call, as without the cache


def test_criu_loads_the_installed_cache(tmp_path: Path) -> None:
    assert ensure_kdat_cache() in ("present", "written")
    assert KDAT_CACHE.exists()
    subprocess.run(["criu", "check", "-v4", "--log-file", str(tmp_path / "check.log")], capture_output=True,
                   check=False, timeout=60)
    log = (tmp_path / "check.log").read_text(errors="replace")
    assert f"Loaded kdat cache from {KDAT_CACHE}" in log, log[:2000]
