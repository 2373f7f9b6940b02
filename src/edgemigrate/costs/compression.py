"""Compressed, pipelined migration transfer model of Zhang et al. 2019, eqs. 3-11.

Pure vectorised functions: every argument may be a scalar or a NumPy array, and arrays broadcast.
Units: sizes in bytes, bandwidths in bytes per second (``_bytes_per_s``), times in seconds, per-stage
processing costs in seconds per input byte (``_s_per_byte``), compression ratios as output/input
(``R_i`` of the paper; 0.25 means the stage shrinks its input four times).

Zhang et al. 2019 write eq. 5 as ``TPS = 1 / sum(P_i)`` with ``P_i`` a "processing time". We read ``P_i``
as the time stage i spends per input byte, so ``TPS_processing`` comes out in bytes per second and eq. 3
times the data size is the serial processing time. Stage i sees the output of the stages before it; the
paper ignores that shrinkage in eq. 3 and so do these functions (pass per-byte costs already referred to
the original input if you need it).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

F = NDArray[np.float64]


def processing_time_s(data_bytes: ArrayLike, stage_s_per_byte: ArrayLike) -> F:
    """Eq. 3: total processing time ``D * sum_i P_i`` (stages along the last axis of ``stage_s_per_byte``)."""
    p = np.asarray(stage_s_per_byte, dtype=np.float64)
    return np.asarray(data_bytes, dtype=np.float64) * p.sum(axis=-1)


def migration_size_bytes(data_bytes: ArrayLike, stage_ratios: ArrayLike) -> F:
    """Bytes put on the wire: ``D * prod_i R_i`` (``Size_migration`` of eqs. 4 and 6)."""
    r = np.asarray(stage_ratios, dtype=np.float64)
    return np.asarray(data_bytes, dtype=np.float64) * r.prod(axis=-1)


def transfer_time_s(migration_bytes: ArrayLike, bandwidth_bytes_per_s: ArrayLike) -> F:
    """Eq. 4: ``Time_transfer = Size_migration / bandwidth``."""
    return np.asarray(migration_bytes, dtype=np.float64) / np.asarray(bandwidth_bytes_per_s, dtype=np.float64)


def processing_throughput_bytes_per_s(stage_s_per_byte: ArrayLike) -> F:
    """Eq. 5: ``TPS_processing = 1 / sum_i P_i`` (input bytes per second)."""
    return 1.0 / np.asarray(stage_s_per_byte, dtype=np.float64).sum(axis=-1)


def transfer_throughput_bytes_per_s(bandwidth_bytes_per_s: ArrayLike, stage_ratios: ArrayLike) -> F:
    """Eq. 6: ``TPS_transfer = bandwidth / prod_i R_i`` (input bytes per second the link can carry)."""
    r = np.asarray(stage_ratios, dtype=np.float64)
    return np.asarray(bandwidth_bytes_per_s, dtype=np.float64) / r.prod(axis=-1)


def migration_time_pipelined_s(processing_s: ArrayLike, transfer_s: ArrayLike) -> F:
    """Eq. 7: with processing and transfer overlapped, ``Time_migration = max(processing, transfer)``."""
    return np.maximum(np.asarray(processing_s, dtype=np.float64), np.asarray(transfer_s, dtype=np.float64))


def migration_time_serial_s(processing_s: ArrayLike, transfer_s: ArrayLike) -> F:
    """Serial execution (Zhang et al. 2019, fig. 5a): every stage waits for the previous one, so the times add."""
    return np.asarray(processing_s, dtype=np.float64) + np.asarray(transfer_s, dtype=np.float64)


def system_throughput_bytes_per_s(processing_bytes_per_s: ArrayLike, transfer_bytes_per_s: ArrayLike) -> F:
    """Eq. 8: ``TPS_system = min(TPS_processing, TPS_transfer)``."""
    return np.minimum(
        np.asarray(processing_bytes_per_s, dtype=np.float64), np.asarray(transfer_bytes_per_s, dtype=np.float64)
    )


def compressed_transfer_time_s(
    data_bytes: ArrayLike, compress_bytes_per_s: ArrayLike, ratio: ArrayLike, bandwidth_bytes_per_s: ArrayLike
) -> F:
    """Left side of eq. 10: compress then send, ``D / V_compress + D * C_ratio / V_network``."""
    d = np.asarray(data_bytes, dtype=np.float64)
    return d / np.asarray(compress_bytes_per_s, dtype=np.float64) + d * np.asarray(
        ratio, dtype=np.float64
    ) / np.asarray(bandwidth_bytes_per_s, dtype=np.float64)


def compression_pays_off(
    compress_bytes_per_s: ArrayLike, ratio: ArrayLike, bandwidth_bytes_per_s: ArrayLike
) -> NDArray[np.bool_]:
    """Eq. 11: serial compression beats sending raw iff ``V_compress * (1 - C_ratio) >= V_network``.

    Derived from eq. 9/10 (``T_compressing + T_transfer <= T_non-compression``) by dividing by
    ``D`` and multiplying by ``V_compress * V_network``.
    """
    v = np.asarray(compress_bytes_per_s, dtype=np.float64)
    return v * (1.0 - np.asarray(ratio, dtype=np.float64)) >= np.asarray(bandwidth_bytes_per_s, dtype=np.float64)


def pipelined_compression_rate_bytes_per_s(
    compress_bytes_per_s_per_core: ArrayLike,
    cores: ArrayLike,
    ratio: ArrayLike,
    bandwidth_bytes_per_s: ArrayLike,
) -> F:
    """Eqs. 5, 6, 8 for a single compress stage on ``cores`` cores: ``min(cores * V_c, B / R)``.

    The input bytes per second a pipelined compressed transfer sustains; the model-based selector of
    :mod:`edgemigrate.engine.adaptive.selectors` maximises the same quantity over codecs and levels.
    """
    proc = np.asarray(compress_bytes_per_s_per_core, dtype=np.float64) * np.asarray(cores, dtype=np.float64)
    link = np.asarray(bandwidth_bytes_per_s, dtype=np.float64) / np.asarray(ratio, dtype=np.float64)
    return system_throughput_bytes_per_s(proc, link)
