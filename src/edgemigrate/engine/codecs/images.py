"""Which codec a checkpoint image file gets: WKdm for CRIU memory pages, the selected codec otherwise.

Zhang et al. 2019 (sec. V-B): "we use the WKDM memory compression algorithm to process the compressed memory
page. Other data volumes and metadata can be dynamically set to compress the lz4 compression algorithm."
CRIU stores raw 4 KiB pages in ``pages-<id>.img``; every other image is protobuf metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgemigrate.engine.codecs.registry import Choice, Codec, codec_spec, shared_codec

PAGES_IMAGE_RE = re.compile(r"^pages-\d+\.img$")


def is_page_image(file_name: str) -> bool:
    """True for CRIU raw-page images (``pages-<n>.img``)."""
    return PAGES_IMAGE_RE.fullmatch(file_name) is not None


@dataclass(frozen=True, slots=True)
class ImageCodecPolicy:
    """Maps (file name, selector choice) to a codec.

    ``page_codec``: codec name for ``pages-*.img`` (``"wkdm"`` as in Zhang et al. 2019), or ``None`` to let the
    selector's choice apply to page images too.
    """

    page_codec: str | None = "wkdm"

    def __post_init__(self) -> None:
        if self.page_codec is not None:
            codec_spec(self.page_codec)  # unknown names raise ConfigError with a suggestion

    def codec_for(self, file_name: str, choice: Choice) -> Codec:
        if self.page_codec is not None and is_page_image(file_name):
            return shared_codec(self.page_codec, codec_spec(self.page_codec).default_level)
        return shared_codec(choice.codec, choice.level)
