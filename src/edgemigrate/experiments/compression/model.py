"""Zhang et al. 2019's pipeline model (eqs. 3-8) evaluated on a measured migration, to set predictions beside results.

A migration's stages, as the engine records them (``stats`` of :meth:`LocalCluster.migrate`):

* ``checkpoint``: CRIU dump + planning the round (chunking, SHA-256) - ``dump_s + plan_s`` per round;
* ``compress``: the per-chunk compression times summed over chunks (``wire.compress_cpu_s``; one core each).
  Measured cleanly only in a serial run; in a pipelined run the chunks' times include waiting for a core
  (the compression threads, TLS, the destination agent and the link emulator share the machine);
* ``transfer``: eq. 4, ``Size_migration / bandwidth`` = bytes on the wire / shaped link rate;
* ``rebuild + restore``: the destination rebuilding the image directory and ``runc restore``.

Predictions (seconds):

* serial (Zhang et al. 2019, fig. 5a): every stage waits for the previous one, so the times add - eq. 3 for the
  processing stages plus eq. 4 for the transfer: ``checkpoint + compress + transfer + rebuild + restore``;
* pipelined (fig. 5b, eq. 7): compression on ``workers`` cores overlaps the transfer, so that part costs
  ``max(compress / workers, transfer)``; checkpoint and restore stay outside the overlap because CRIU
  writes (and reads) whole image files. ``TPS_system`` of eq. 8 is the raw bytes over that overlapped part.

The bound this gives is worth stating: pipelining can save at most ``min(compress, transfer)`` out of the
serial total, so it pays ~40-50 % only where compression costs about as much as sending (strong levels on
fast links); a selector that already picks a codec far faster than the link leaves little to overlap.
"""

from __future__ import annotations

from typing import Any

from edgemigrate.costs.compression import migration_time_pipelined_s, transfer_time_s


def stage_times_s(stats: dict[str, Any], rate_mbit: float) -> dict[str, float]:
    """Per-stage times of one migration (see the module doc); ``transfer`` is eq. 4 at ``rate_mbit``."""
    rounds = stats["rounds"]
    wire_bytes = float(sum(r["wire_bytes"] for r in rounds))
    return {
        "checkpoint": float(sum(r["dump_s"] + r["plan_s"] for r in rounds)),
        "compress": float(sum(r["wire"]["compress_cpu_s"] for r in rounds)),
        "transfer": float(transfer_time_s(wire_bytes, rate_mbit * 1e6 / 8)),
        "rebuild_restore": float(sum(r["rebuild_s"] for r in rounds) + stats["restore_s"]),
    }


def predict_s(stats: dict[str, Any], rate_mbit: float, workers: int) -> dict[str, float]:
    """Zhang et al. 2019 eqs. 3, 4 and 7 for this migration's measured stages: ``pred_serial_s``, ``pred_pipelined_s``,
    and the stage times they are made of (``stage_*_s``)."""
    st = stage_times_s(stats, rate_mbit)
    outside = st["checkpoint"] + st["rebuild_restore"]
    serial = outside + st["compress"] + st["transfer"]
    overlapped = float(migration_time_pipelined_s(st["compress"] / max(1, workers), st["transfer"]))
    return {"pred_serial_s": serial, "pred_pipelined_s": outside + overlapped,
            **{f"stage_{k}_s": v for k, v in st.items()}}
