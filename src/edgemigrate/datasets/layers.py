"""Docker Hub image/layer lists -> :class:`~edgemigrate.model.images.ImageCatalog`, and service sampling.

:func:`read_dockerhub` reads

- the registry JSON with key ``container_images``: ``[{name, tag, digest, layers: [{digest, size,
  instruction}]}]`` base layer first (``shared/data/layers/dockerhub_official_2023.json``, WSCAD 2023 study);
- the repo-info JSON with key ``images``: ``[{image, tag, layers: [{digest, size_bytes}]}]``
  (``dockerhub_repoinfo_2026.json``);
- the flat CSV ``image,tag,image_digest,layer_index,layer_digest,size_bytes,...``, one row per (image, layer).

Images are named like Docker does: ``name`` for tag ``latest``, else ``name:tag``. Layers are identified by
digest; a digest listed with two different sizes is a data error. :func:`sample_services` draws service
images with Zipf-like popularity.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.model.images import ImageCatalog

BUNDLED_CATALOG_FILE = "dockerhub_official_2023.json"
DEFAULT_ZIPF_S = 1.0
"""Popularity exponent of :func:`sample_services`: image of rank k is chosen with probability
proportional to k^-s. s = 1 is the classic Zipf law used for content/service popularity; none of the papers
we reproduce gives a value (Liu et al. 2024 draw service sizes uniformly, which is ``zipf_s=0``), so treat it
as a scenario knob."""


def _image_name(name: str, tag: str) -> str:
    return name if tag in ("", "latest") else f"{name}:{tag}"


class _CatalogBuilder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.layer_index: dict[str, int] = {}
        self.layer_sizes: list[int] = []
        self.images: dict[str, list[int]] = {}

    def layer(self, digest: str, size: Any, where: str, line: int | None = None) -> int:
        if not isinstance(digest, str) or not digest:
            raise DataFormatError(self.path, line, f"{where}: layer digest missing")
        if isinstance(size, bool):
            size = None
        try:
            size_i = int(size)
            if isinstance(size, float) and not size.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise DataFormatError(self.path, line, f"{where}: layer size {size!r} is not a whole number of bytes") from None
        if size_i < 0:
            raise DataFormatError(self.path, line, f"{where}: negative layer size {size_i}")
        idx = self.layer_index.get(digest)
        if idx is None:
            idx = self.layer_index[digest] = len(self.layer_sizes)
            self.layer_sizes.append(size_i)
        elif self.layer_sizes[idx] != size_i:
            raise DataFormatError(
                self.path, line, f"{where}: layer {digest[:19]} has size {size_i}, elsewhere {self.layer_sizes[idx]}"
            )
        return idx

    def image(self, name: str, layers: list[int], line: int | None = None) -> None:
        if name in self.images:
            raise DataFormatError(self.path, line, f"image '{name}' listed twice")
        if not layers:
            raise DataFormatError(self.path, line, f"image '{name}' has no layers")
        self.images[name] = layers

    def build(self) -> ImageCatalog:
        if not self.images:
            raise DataFormatError(self.path, None, "no images found")
        return ImageCatalog(
            image_names=tuple(self.images),
            layer_ids=tuple(self.layer_index),
            layer_size_bytes=np.asarray(self.layer_sizes, dtype=np.int64),
            image_layers=tuple(np.asarray(v, dtype=np.int64) for v in self.images.values()),
        )


def _from_json(path: Path) -> ImageCatalog:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    b = _CatalogBuilder(path)
    if isinstance(doc, Mapping) and isinstance(doc.get("container_images"), list):
        entries, name_key, size_key = doc["container_images"], "name", "size"
    elif isinstance(doc, Mapping) and isinstance(doc.get("images"), list):
        entries, name_key, size_key = doc["images"], "image", "size_bytes"
    else:
        raise DataFormatError(path, None, "expected a JSON object with a 'container_images' or 'images' list")
    for i, entry in enumerate(entries):
        where = f"image #{i}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get(name_key), str):
            raise DataFormatError(path, None, f"{where}: expected an object with a '{name_key}' string")
        name = _image_name(entry[name_key], str(entry.get("tag", "latest")))
        layers = entry.get("layers")
        if not isinstance(layers, list):
            raise DataFormatError(path, None, f"image '{name}': 'layers' must be a list")
        idx = []
        for j, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise DataFormatError(path, None, f"image '{name}' layer #{j}: expected an object")
            idx.append(b.layer(layer.get("digest"), layer.get(size_key), f"image '{name}' layer #{j}"))
        b.image(name, idx)
    return b.build()


def _from_csv(path: Path) -> ImageCatalog:
    b = _CatalogBuilder(path)
    rows: dict[str, list[tuple[int, int, str, Any]]] = {}
    first_line: dict[str, int] = {}
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"image", "layer_index", "layer_digest", "size_bytes"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            have = ",".join(reader.fieldnames or [])
            raise DataFormatError(path, 1, f"header must have {','.join(sorted(needed))} (got {have or 'nothing'})")
        for row in reader:
            line = reader.line_num
            name = _image_name((row["image"] or "").strip(), (row.get("tag") or "latest").strip())
            if not name:
                raise DataFormatError(path, line, "empty image name")
            try:
                order = int(row["layer_index"])
            except (TypeError, ValueError):
                raise DataFormatError(path, line, f"layer_index {row['layer_index']!r} is not an integer") from None
            rows.setdefault(name, []).append((order, line, (row["layer_digest"] or "").strip(), row["size_bytes"]))
            first_line.setdefault(name, line)
    for name, layers in rows.items():
        layers.sort()
        orders = [o for o, *_ in layers]
        if orders != list(range(len(orders))):
            raise DataFormatError(path, first_line[name], f"image '{name}': layer_index must run 0..{len(orders) - 1}")
        idx = [b.layer(digest, size.strip() if isinstance(size, str) else size, f"image '{name}'", line)
               for _, line, digest, size in layers]
        b.image(name, idx, first_line[name])
    return b.build()


def read_dockerhub(path: str | Path) -> ImageCatalog:
    """Read a Docker Hub image/layer list (JSON or flat CSV, see module docstring) into an ImageCatalog."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    return _from_json(path)


def bundled_catalog() -> ImageCatalog:
    """The 37 official Docker Hub images of mid-2023 shipped in ``edgemigrate/data/layers/`` (see its README)."""
    ref = resources.files("edgemigrate") / "data" / "layers" / BUNDLED_CATALOG_FILE
    with resources.as_file(ref) as path:
        return read_dockerhub(path)


def zipf_weights(n: int, zipf_s: float = DEFAULT_ZIPF_S) -> NDArray[np.float64]:
    """Probabilities p_k = k^-s / sum_j j^-s for ranks k = 1..n."""
    if not (isinstance(zipf_s, (int, float)) and math.isfinite(zipf_s) and zipf_s >= 0):
        raise ValidationError(f"zipf_s must be a finite number >= 0, got {zipf_s!r}")
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(zipf_s)
    return w / w.sum()


def sample_services(
    catalog: ImageCatalog,
    n: int,
    rng: np.random.Generator,
    zipf_s: float = DEFAULT_ZIPF_S,
    *,
    ranking: Iterable[int] | None = None,
) -> NDArray[np.int64]:
    """Draw ``n`` service images (indices into ``catalog``) with Zipf popularity of exponent ``zipf_s``.

    ``ranking`` lists image indices from most to least popular (all images, each once); by default the
    ranking is a random permutation drawn from ``rng``, so which images are popular varies with the seed.
    ``zipf_s=0`` draws uniformly. See :data:`DEFAULT_ZIPF_S` for the choice of exponent.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValidationError(f"number of services must be a non-negative integer, got {n!r}")
    m = catalog.n_images
    weights = zipf_weights(m, zipf_s)
    if ranking is None:
        order = rng.permutation(m)
    else:
        order = np.asarray(list(ranking), dtype=np.int64)
        if order.shape != (m,) or not np.array_equal(np.sort(order), np.arange(m)):
            raise ValidationError(f"ranking must list each of the {m} image indices exactly once")
    ranks = rng.choice(m, size=int(n), p=weights)
    return order[ranks].astype(np.int64)
