"""Compression for the migration data plane (issue 4, seed 001).

* :mod:`.codecs` - the :class:`Codec` protocol, none/lz4/zstd/zlib, the registry (``make_codec``);
* :mod:`.wkdm` (+ :mod:`.wkdm_jit`) - the WKdm memory-page compressor, vectorised over pages / compiled;
* :mod:`.images` - which codec a checkpoint image file gets (WKdm for ``pages-*.img``);
* :mod:`.netstate` - network state from TCP_INFO and goodput (RTT ratio, loss, bandwidth);
* :mod:`.selectors` - per-chunk codec/level choice: the seed's RTT x loss rule and a model-based selector;
* :mod:`.frames` - the self-checking frame around one compressed chunk;
* :mod:`.wire` - the engine's data path: per-chunk selection, parallel compression and sending of a round;
* :mod:`.pageimage` - realistic page images (CRIU dump or ``/proc/<pid>/mem``) for measurements.
"""

from __future__ import annotations

from edgemigrate.engine.compression.codecs import (
    Codec,
    CodecSpec,
    CorruptDataError,
    codec_names,
    codec_spec,
    make_codec,
    shared_codec,
    spec_by_id,
)
from edgemigrate.engine.compression.images import ImageCodecPolicy, is_page_image
from edgemigrate.engine.compression.netstate import NetworkMonitor, NetworkState
from edgemigrate.engine.compression.selectors import (
    Choice,
    CodecProfile,
    FixedSelector,
    ModelSelector,
    RuleSelector,
    Selector,
    measure_profiles,
)
from edgemigrate.engine.compression.wkdm import WkdmCodec, warm_up, wkdm_compress, wkdm_decompress

__all__ = [
    "Choice",
    "Codec",
    "CodecProfile",
    "CodecSpec",
    "CorruptDataError",
    "FixedSelector",
    "ImageCodecPolicy",
    "ModelSelector",
    "NetworkMonitor",
    "NetworkState",
    "RuleSelector",
    "Selector",
    "WkdmCodec",
    "codec_names",
    "codec_spec",
    "is_page_image",
    "make_codec",
    "measure_profiles",
    "shared_codec",
    "spec_by_id",
    "warm_up",
    "wkdm_compress",
    "wkdm_decompress",
]
