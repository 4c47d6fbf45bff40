"""Real photographs for validating exports (scikit-image's bundled sample images, no download)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig

# Bundled with scikit-image (no network). `camera` is grayscale and is expanded to RGB.
SAMPLE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


def sample_pixels(preprocess: PreprocessConfig, n: int = len(SAMPLE_NAMES)) -> np.ndarray:
    """uint8 [n, 3, S, S]: sample photos resized and cropped exactly as the app must do it."""
    import skimage.data
    from PIL import Image

    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    out = []
    for name in SAMPLE_NAMES[:n]:
        arr = getattr(skimage.data, name)()
        img = Image.fromarray(arr).convert("RGB")
        out.append(to_uint8_tensor(resize_and_crop(img, preprocess)).numpy())
    return np.stack(out)
