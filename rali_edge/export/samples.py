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


def sample_crops(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """n seeded random square crops (RGB uint8 [size, size, 3]) of the colour sample photos, resized
    bicubic: real image statistics for calibration sets and tests, with no download."""
    import skimage.data
    from PIL import Image

    colour = [name for name in SAMPLE_NAMES if name != "camera"][:4]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = getattr(skimage.data, colour[i % len(colour)])()
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BICUBIC)
        out.append(np.asarray(crop, dtype=np.uint8))
    return out
