"""Container images as ordered lists of shared layers (Liu et al. 2024, sec. III-A: images M made of layers L,
each layer l with size d_l; x_c^l = 1 when container c holds layer l)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class ImageCatalog:
    """All images of a scenario and the layers they are made of, stored as arrays.

    ``image_layers[m]`` lists layer indices of image ``m`` base layer first; ``layer_size_bytes[l]`` is
    the compressed blob size d_l. ``matrix`` is the dense (M, L) bool incidence x^l.
    """

    image_names: tuple[str, ...]
    layer_ids: tuple[str, ...]
    layer_size_bytes: NDArray[np.int64]
    image_layers: tuple[NDArray[np.int64], ...]
    matrix: NDArray[np.bool_] = field(init=False, repr=False)
    image_size_bytes: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n_layers = len(self.layer_ids)
        sizes = np.asarray(self.layer_size_bytes, dtype=np.int64)
        if sizes.shape != (n_layers,):
            raise ValidationError(f"layer_size_bytes has shape {sizes.shape}, expected ({n_layers},)")
        if (sizes < 0).any():
            raise ValidationError(f"layer '{self.layer_ids[int(np.argmin(sizes))]}' has a negative size")
        if len(self.image_names) != len(self.image_layers):
            raise ValidationError("image_names and image_layers differ in length")
        if len(set(self.image_names)) != len(self.image_names):
            raise ValidationError("duplicate image names in catalog")
        matrix = np.zeros((len(self.image_names), n_layers), dtype=bool)
        for m, layers in enumerate(self.image_layers):
            layers = np.asarray(layers, dtype=np.int64)
            if layers.size == 0:
                raise ValidationError(f"image '{self.image_names[m]}' has no layers")
            if layers.min() < 0 or layers.max() >= n_layers:
                raise ValidationError(f"image '{self.image_names[m]}' references an unknown layer index")
            matrix[m, layers] = True
        object.__setattr__(self, "layer_size_bytes", sizes)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "image_size_bytes", matrix.astype(np.int64) @ sizes)

    @property
    def n_images(self) -> int:
        return len(self.image_names)

    @property
    def n_layers(self) -> int:
        return len(self.layer_ids)

    def index(self, name: str) -> int:
        try:
            return self.image_names.index(name)
        except ValueError:
            from edgemigrate.core.registry import suggest

            raise ValidationError(f"unknown image '{name}'{suggest(name, self.image_names)}") from None
