"""Codecs of the migration data plane and the frames that carry their output.

* :mod:`.registry` - the :class:`Codec` protocol, none/lz4/zstd/zlib and the codec registry (``make_codec``);
* :mod:`.wkdm` (+ :mod:`.wkdm_jit`) - the WKdm memory-page compressor (Wilson et al. 1999), vectorised over
  pages / compiled;
* :mod:`.images` - which codec a checkpoint image file gets (WKdm for ``pages-*.img``, Zhang et al. 2019);
* :mod:`.frames` - the self-checking frame (codec, level, raw size, BLAKE2b) around one compressed chunk;
* :mod:`.pageimage` - realistic page images (CRIU dump or ``/proc/<pid>/mem``) for measurements.

How a codec is chosen while a transfer runs, and the sender that does it, live in
:mod:`edgemigrate.engine.adaptive`.

This package imports :mod:`.wkdm` so that WKdm is registered whenever any codec module is used: the registry
does not import WKdm (WKdm imports the registry to register itself), which keeps the import graph acyclic.
"""

from __future__ import annotations

from edgemigrate.engine.codecs.images import ImageCodecPolicy, is_page_image
from edgemigrate.engine.codecs.registry import (
    Choice,
    Codec,
    CodecSpec,
    CorruptDataError,
    codec_names,
    codec_spec,
    make_codec,
    shared_codec,
    spec_by_id,
)
from edgemigrate.engine.codecs.wkdm import WkdmCodec, warm_up, wkdm_compress, wkdm_decompress

__all__ = [
    "Choice",
    "Codec",
    "CodecSpec",
    "CorruptDataError",
    "ImageCodecPolicy",
    "WkdmCodec",
    "codec_names",
    "codec_spec",
    "is_page_image",
    "make_codec",
    "shared_codec",
    "spec_by_id",
    "warm_up",
    "wkdm_compress",
    "wkdm_decompress",
]
