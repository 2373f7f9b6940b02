"""Cost of a final round's delta work when the page layout changed: the diff at the source, the rebuild at the
destination (both inside the service's frozen window).

    .venv/bin/python benchmarks/bench_rebuild.py                       # 200 MB, 3 pages inserted, 300 changed
    .venv/bin/python benchmarks/bench_rebuild.py --mb 500 --repeats 7 --dir /dev/shm

The synthetic dump pair mirrors what the handover experiment's face-detection service produces between its
pre-copy round and its final round: ~200 MB of pages, a few pages added early in the address space (the
heap grew), a few hundred pages rewritten. Files live in ``--dir`` (default ``/dev/shm``, where the agents
keep their images). One JSON line per measurement, the median of ``--repeats``:

- ``{"bench": "rebuild", "step": "diff", ...}``: :func:`edgemigrate.engine.delta.changed_pages`;
- ``"step": "rebuild_gather"``: the baseline, measured in the same run - every output page gathered through
  NumPy fancy indexing and written block by block (how the rebuild worked before it copied runs);
- ``"step": "rebuild_runs"``: :func:`~edgemigrate.engine.delta.rebuild_pages` into a fresh file;
- ``"step": "rebuild_runs_spare"``: the same into a file allocated ahead
  (:func:`~edgemigrate.engine.delta.allocate_spare`, not timed: the agent does it after the previous round).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT

WORDS = PAGE_SIZE_BYTES // 8


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_pair(root: Path, n_pages: int, inserted: int, changed: int, seed: int) -> None:
    """``root/a`` and ``root/b``: two dumps, ``b`` with ``inserted`` new pages in a mapping between the first
    64 pages and the rest, and ``changed`` rewritten pages spread over the rest."""
    rng = np.random.default_rng(seed)
    prev = rng.integers(0, 2**63, size=(n_pages, WORDS), dtype=np.uint64)
    cur = np.concatenate([prev[:64], rng.integers(0, 2**63, size=(inserted, WORDS), dtype=np.uint64), prev[64:]])
    rows = 64 + inserted + rng.choice(n_pages - 64, size=changed, replace=False)
    cur[rows, 0] += np.uint64(1)
    for name, entries, pages in [
        ("a", [(0x400000, 64, PE_PRESENT), (0x10000000, n_pages - 64, PE_PRESENT)], prev),
        ("b", [(0x400000, 64, PE_PRESENT), (0x800000, inserted, PE_PRESENT),
               (0x10000000, n_pages - 64, PE_PRESENT)], cur),
    ]:
        (root / name).mkdir()
        (root / name / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, entries))
        (root / name / "pages-1.img").write_bytes(pages.tobytes())


def rebuild_gather(prev_pm: delta.Pagemap, prev_pages: Path, cur_pm: delta.Pagemap, changed: np.ndarray,
                   changed_data: bytes, out: Path, block: int = 2048) -> None:
    """The baseline: gather every page of a block through NumPy, then write the block."""
    idx = delta._match(prev_pm.stored_page_vaddrs(), cur_pm.stored_page_vaddrs())
    prev_arr, mm = delta._page_array(prev_pages, prev_pm.n_stored_pages)
    delta_arr = np.frombuffer(changed_data, dtype=np.uint64).reshape(-1, WORDS)
    pos = np.cumsum(changed) - 1
    with out.open("wb") as fh:
        for start in range(0, changed.size, block):
            stop = min(start + block, changed.size)
            blk = np.empty((stop - start, WORDS), dtype=np.uint64)
            ch = changed[start:stop]
            blk[ch] = delta_arr[pos[start:stop][ch]]
            blk[~ch] = prev_arr[idx[start:stop][~ch]]
            fh.write(blk.tobytes())
    del prev_arr
    if mm is not None:
        mm.close()


def _median_s(fn: Callable[[], None], before: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200.0, help="size of the pages file (MB)")
    ap.add_argument("--inserted", type=int, default=3, help="pages added early in the layout")
    ap.add_argument("--changed", type=int, default=300, help="pages rewritten")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=Path("/dev/shm"), help="where the dumps are written")
    args = ap.parse_args(argv)
    n_pages = int(args.mb * 2**20) // PAGE_SIZE_BYTES
    root = Path(tempfile.mkdtemp(prefix="em-bench-rebuild-", dir=args.dir))
    try:
        make_pair(root, n_pages, args.inserted, args.changed, args.seed)
        a, b = root / "a", root / "b"
        pa, pb = delta.read_pagemap(a / "pagemap-1.img"), delta.read_pagemap(b / "pagemap-1.img")
        changed = delta.changed_pages(pa, a / "pages-1.img", pb, b / "pages-1.img")
        data = delta.read_changed(b / "pages-1.img", changed)
        out, spare = root / "out.img", root / ".spare"

        def clear() -> None:
            out.unlink(missing_ok=True)

        def make_spare() -> None:
            clear()
            delta.allocate_spare(spare, pa.n_stored_pages * PAGE_SIZE_BYTES + (4 << 20))

        steps = {
            "diff": (lambda: delta.changed_pages(pa, a / "pages-1.img", pb, b / "pages-1.img"), clear),
            "rebuild_gather": (lambda: rebuild_gather(pa, a / "pages-1.img", pb, changed, data, out), clear),
            "rebuild_runs": (lambda: delta.rebuild_pages(pa, a / "pages-1.img", pb, changed, data, out), clear),
            "rebuild_runs_spare": (lambda: delta.rebuild_pages(pa, a / "pages-1.img", pb, changed, data, out,
                                                               spare=spare), make_spare),
        }
        want = (b / "pages-1.img").read_bytes()
        for step, (fn, before) in steps.items():
            s = _median_s(fn, before, args.repeats)
            if step.startswith("rebuild") and out.read_bytes() != want:
                print(f"bench_rebuild: {step} rebuilt the wrong bytes", file=sys.stderr)
                return 1
            print(json.dumps({"bench": "rebuild", "step": step, "seconds": round(s, 4), "mb": args.mb,
                              "inserted": args.inserted, "changed": int(changed.sum()), "repeats": args.repeats,
                              "seed": args.seed, "dir": str(args.dir), "git_sha": _git_sha()}), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
