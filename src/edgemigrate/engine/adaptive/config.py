"""What the user asked of the compressed data path, and the selector it builds for one migration.

``--compression`` names a selector (``none``, ``fixed:CODEC:LEVEL``, ``rule``, ``model``, ``model:CODEC``),
``--page-codec`` a codec for CRIU page images and ``--pipeline`` how compression and sending overlap
(:class:`PipelineMode`: Zhang et al. 2019's pipelined data path or its serial baseline, fig. 5a).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

from edgemigrate.core.errors import ConfigError
from edgemigrate.engine.adaptive.selectors import (
    DEFAULT_PROFILES,
    CodecProfile,
    FixedSelector,
    ModelSelector,
    RuleSelector,
    Selector,
    measure_profiles,
)
from edgemigrate.engine.codecs.images import ImageCodecPolicy
from edgemigrate.engine.codecs.registry import codec_spec

# Candidates of the model selector (Zhang et al. 2019 adapt lz4 levels; zstd measured faster and stronger on
# checkpoint pages): the speed/ratio frontier only - lz4's HC levels are slower *and* weaker than zstd 3-6, and
# zstd above 9 gains < 3 % on 1 MiB chunks at under half zstd-9's speed (Redis pages: zstd-13 3.77x at 9 MB/s,
# zstd-9 3.68x at 41) - so profiling them all costs ~0.1 s. ``none`` lets it send raw when
# the link is faster than every compressor. zstd-2 is on the frontier for text-like heaps: on a 128 MiB Redis
# page image it gave 3.55x at 269 MB/s, against zstd-1's 3.30x at 331 and zstd-3's 3.60x at 202.
MODEL_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("none", 0), ("lz4", 1), ("zstd", 1), ("zstd", 2), ("zstd", 3), ("zstd", 6), ("zstd", 9),
)
MODEL_MAX_LEVEL = 9  # ``model:CODEC``: that codec's levels up to this one (Zhang et al. 2019's range, 1..9)
# The profiles are measured on one chunk-sized piece of the image: zstd tunes its parameters to the input size,
# and on 64-256 KiB samples the gap between levels was half of what 1 MiB chunks really showed.
PROFILE_SAMPLE_BYTES = 1 << 20
PROFILE_MIN_TIME_S = 0.004  # per codec/level and direction: ~70 ms for all candidates


def model_codec(selector: str) -> str | None:
    """The codec a ``model:CODEC`` selector is restricted to (``None`` for plain ``model``)."""
    if selector == "model":
        return None
    name = selector.split(":", 1)[1]
    spec = codec_spec(name)  # unknown codec -> ConfigError with a suggestion
    if spec.name == "none" or spec.max_level <= spec.min_level:
        raise ConfigError(f"compression {selector!r}: {spec.name} has no levels to choose between")
    return spec.name


def model_candidates(codec: str | None) -> tuple[tuple[str, int], ...]:
    """Candidates of the model selector: :data:`MODEL_CANDIDATES`, or raw and ``codec``'s levels up to
    :data:`MODEL_MAX_LEVEL`."""
    if codec is None:
        return MODEL_CANDIDATES
    spec = codec_spec(codec)
    return (("none", 0), *((spec.name, lv) for lv in spec.levels() if lv <= MODEL_MAX_LEVEL))


class PipelineMode(enum.Enum):
    PIPELINED = "pipelined"
    SERIAL = "serial"


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """What the user asked for: ``selector`` is ``none``, ``fixed:CODEC:LEVEL``, ``rule``, ``model`` (over
    :data:`MODEL_CANDIDATES`) or ``model:CODEC`` (over raw and that codec's levels 1..9 only - ``model:lz4`` is
    Zhang et al. 2019's setting, which adapts lz4 levels); ``page_codec`` is ``none`` (pages use the selector's choice)
    or a codec name for ``pages-*.img`` (``wkdm`` as in Zhang et al. 2019)."""

    selector: str = "model"
    page_codec: str = "none"
    mode: PipelineMode = PipelineMode.PIPELINED
    workers: int = 0  # compression threads; 0 = one per CPU

    @classmethod
    def parse(cls, selector: str = "model", page_codec: str = "none", mode: str = "pipelined",
              workers: int = 0) -> CompressionConfig:
        """Validate user input; raises :class:`ConfigError` naming the bad value."""
        if selector.startswith("model:"):
            model_codec(selector)  # unknown codec -> ConfigError with a suggestion
        elif selector not in ("none", "rule", "model"):
            parts = selector.split(":")
            if len(parts) != 3 or parts[0] != "fixed" or not parts[2].lstrip("-").isdigit():
                raise ConfigError(f"compression {selector!r}: expected none, fixed:CODEC:LEVEL, rule, model or "
                                  "model:CODEC")
            spec = codec_spec(parts[1])  # unknown codec -> ConfigError with a suggestion
            if int(parts[2]) not in spec.levels():
                raise ConfigError(f"compression {selector!r}: {spec.name} levels are {spec.min_level}..{spec.max_level}")
        if page_codec != "none":
            codec_spec(page_codec)
        try:
            pmode = PipelineMode(mode)
        except ValueError:
            raise ConfigError(f"pipeline mode {mode!r}: expected pipelined or serial") from None
        if workers < 0:
            raise ConfigError(f"compression workers must be >= 0, got {workers}")
        return cls(selector, page_codec, pmode, workers)

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def policy(self) -> ImageCodecPolicy:
        return ImageCodecPolicy(None if self.page_codec == "none" else self.page_codec)

    def make_selector(self, sample: bytes | None) -> Selector:
        """The selector for one migration. ``model`` profiles its candidates on ``sample`` (real image data;
        ~0.1 s for one 1 MiB chunk); without a sample it starts from :data:`DEFAULT_PROFILES` (measured
        on another process's memory: its lz4/zstd gap can be far off for this data)."""
        if self.selector == "none":
            return FixedSelector("none", 0)
        if self.selector == "rule":
            return RuleSelector()
        if self.is_model:
            if sample:
                profiles = self.measure_profiles(sample)
            else:
                wanted = set(model_candidates(model_codec(self.selector)))
                profiles = tuple(p for p in DEFAULT_PROFILES if (p.codec, p.level) in wanted)
            return ModelSelector(profiles, compress_cores=float(self.n_workers))
        _, name, level = self.selector.split(":")
        return FixedSelector(name, int(level))

    @property
    def is_model(self) -> bool:
        """``model`` or ``model:CODEC``: the selector profiles codecs on a sample of the image."""
        return self.selector == "model" or self.selector.startswith("model:")

    def measure_profiles(self, sample: bytes) -> tuple[CodecProfile, ...]:
        """The model selector's candidates profiled on ``sample`` (one chunk of real image data)."""
        codec = model_codec(self.selector) if self.is_model else None
        return measure_profiles(sample[:PROFILE_SAMPLE_BYTES], model_candidates(codec), PROFILE_MIN_TIME_S)

    def to_dict(self) -> dict[str, Any]:
        return {"compression": self.selector, "page_codec": self.page_codec, "pipeline": self.mode.value}
