"""Compression for the migration data plane (issue 4, seed 001).

* :mod:`.codecs` - the :class:`Codec` protocol, none/lz4/zstd/zlib, the registry (``make_codec``);
* :mod:`.wkdm` - the WKdm memory-page compressor, vectorised over pages;
* :mod:`.images` - which codec a checkpoint image file gets (WKdm for ``pages-*.img``);
* :mod:`.netstate` - network state from TCP_INFO and goodput (RTT, loss, bandwidth);
* :mod:`.selectors` - per-chunk codec/level choice: the seed's RTT x loss rule and a model-based selector;
* :mod:`.frames`, :mod:`.transport`, :mod:`.pipeline` - framed, pipelined compress-send-receive-write.
"""

from __future__ import annotations

from edgemigrate.engine.compression.codecs import (
    Codec,
    CodecSpec,
    CorruptDataError,
    codec_names,
    codec_spec,
    make_codec,
    spec_by_id,
)
from edgemigrate.engine.compression.wkdm import WkdmCodec, wkdm_compress, wkdm_decompress

__all__ = [
    "Codec",
    "CodecSpec",
    "CorruptDataError",
    "WkdmCodec",
    "codec_names",
    "codec_spec",
    "make_codec",
    "spec_by_id",
    "wkdm_compress",
    "wkdm_decompress",
]
