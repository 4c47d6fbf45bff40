"""Eleven synthetic distortions at five severities, with the quality score each one earns.

Every distortion maps a uint8 RGB array `[H, W, 3]` to another of the same shape. Level 1..5 is the
Q-Insight severity slight, moderate, obvious, serious, catastrophic. Spatial parameters (blur
sigma, motion length, pixel block) are given for 96 px images and scale with `size / 96`, so a
level looks equally bad at every size; below 48 px the factor stays at 1/2 so that the slight
levels still change small images.

Score mapping (`gt_score_norm` on [1, 5] before jitter; pristine images get 4.85):

| distortion           | class       | parameter          |  1   |  2   |  3   |  4   |  5   | scores 1..5                  |
|----------------------|-------------|--------------------|------|------|------|------|------|------------------------------|
| gaussian_blur        | blur        | sigma (px)         | 0.7  | 1.3  | 2.1  | 3.2  | 4.8  | 4.30 3.60 2.85 2.10 1.40     |
| motion_blur          | blur        | length (px)        | 3    | 5    | 8    | 12   | 18   | 4.25 3.55 2.80 2.05 1.35     |
| jpeg                 | compression | JPEG quality       | 30   | 15   | 8    | 4    | 1    | 4.20 3.50 2.75 2.00 1.30     |
| white_noise          | noise       | Gaussian sigma     | 6    | 12   | 20   | 32   | 50   | 4.20 3.45 2.70 1.95 1.25     |
| impulse_noise        | noise       | pixel fraction     | .01  | .03  | .07  | .13  | .22  | 4.25 3.50 2.75 2.00 1.30     |
| darken               | darken      | brightness factor  | .72  | .52  | .36  | .23  | .12  | 4.40 3.80 3.05 2.30 1.50     |
| brighten             | darken      | gamma (x^(1/g))    | 1.5  | 2.1  | 2.9  | 4.0  | 5.6  | 4.45 3.85 3.15 2.40 1.60     |
| contrast_loss        | darken      | contrast kept      | .70  | .50  | .34  | .21  | .11  | 4.40 3.75 3.00 2.25 1.50     |
| saturation           | darken      | saturation factor  | 1.7  | 2.5  | 3.5  | 5.0  | 7.5  | 4.50 4.00 3.35 2.65 1.95     |
| pixelation           | compression | block size (px)    | 1.6  | 2.3  | 3.3  | 4.8  | 7.0  | 4.30 3.55 2.80 2.05 1.35     |
| colour_quantization  | compression | colours            | 40   | 20   | 10   | 6    | 3    | 4.40 3.80 3.10 2.40 1.70     |

Q-Insight knows four classes only (noise, compression, blur, darken). Each type takes the nearest:
both blurs are `blur`; both noises are `noise`; JPEG, pixelation (block artefacts) and colour
quantization (the quantizer of lossy coding) are `compression`; `darken` stands for the whole
photometric family, so darken, brighten, contrast loss and over-saturation map to it. Pristine
images carry class "null" and severity "null", the vocabulary's word for "no distortion".

Every row decreases strictly with severity, and adjacent scores (pristine included) are at least
0.35 apart, so a jitter of at most +-`MAX_JITTER` keeps each (source, type) strictly monotone.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage

SEVERITY_NAMES = ("slight", "moderate", "obvious", "serious", "catastrophic")
PRISTINE_SCORE = 4.85
PRISTINE_CLASS = "null"
PRISTINE_SEVERITY = "null"
MAX_JITTER = 0.12
REFERENCE_SIZE = 96  # spatial parameters in the table are for this size

Apply = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Distortion:
    name: str
    q_class: str  # Q-Insight distortion class
    spatial: bool  # parameter is a length in pixels, scaled with the image size
    params: tuple[float, float, float, float, float]
    scores: tuple[float, float, float, float, float]
    fn: Apply

    def apply(self, arr: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        """Distort a uint8 RGB array at `level` (1..5)."""
        if not 1 <= level <= 5:
            raise ValueError(f"level must be 1..5, got {level}")
        param = self.params[level - 1]
        if self.spatial:
            param *= max(0.5, min(arr.shape[:2]) / REFERENCE_SIZE)
        return self.fn(arr, param, rng)


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr, "RGB")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur(arr: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(_pil(arr).filter(ImageFilter.GaussianBlur(radius=sigma)))


def motion_blur(arr: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    kernel = _line_kernel(length, angle=float(rng.uniform(0.0, np.pi)))
    out = np.stack([ndimage.convolve(arr[..., c].astype(np.float64), kernel, mode="reflect") for c in range(3)], -1)
    return _u8(out)


def _line_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line of `length` pixels at `angle`, splatted bilinearly onto a square grid."""
    half = int(np.ceil(length / 2))
    k = np.zeros((2 * half + 1, 2 * half + 1))
    for t in np.linspace(-length / 2, length / 2, 8 * (2 * half + 1)):
        y, x = half + t * np.sin(angle), half + t * np.cos(angle)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < k.shape[0] and 0 <= x0 + dx < k.shape[1]:
                    k[y0 + dy, x0 + dx] += wy * wx
    return k / k.sum()


def jpeg(arr: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    _pil(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def white_noise(arr: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return _u8(arr + rng.normal(0.0, sigma, arr.shape))


def impulse_noise(arr: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    out = arr.copy()
    hit = rng.random(arr.shape[:2]) < fraction
    salt = rng.random(arr.shape[:2]) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def darken(arr: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return _u8(arr * factor)


def brighten(arr: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    return _u8(255.0 * (arr / 255.0) ** (1.0 / gamma))


def contrast_loss(arr: np.ndarray, kept: float, rng: np.random.Generator) -> np.ndarray:
    mean = float(arr.mean())
    return _u8(mean + (arr - mean) * kept)


def saturation(arr: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(ImageEnhance.Color(_pil(arr)).enhance(factor))


def pixelation(arr: np.ndarray, block: float, rng: np.random.Generator) -> np.ndarray:
    h, w = arr.shape[:2]
    # at least one pixel fewer than the original, whatever the block: never an identity resize
    small_size = (max(1, min(w - 1, round(w / block))), max(1, min(h - 1, round(h / block))))
    small = _pil(arr).resize(small_size, Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def colour_quantization(arr: np.ndarray, colours: float, rng: np.random.Generator) -> np.ndarray:
    q = _pil(arr).quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.asarray(q.convert("RGB"))


def _d(name: str, q_class: str, spatial: bool, params: tuple, scores: tuple, fn: Apply) -> Distortion:
    return Distortion(name, q_class, spatial, params, scores, fn)


# Order matters only for file naming and iteration; the seed streams are keyed by index.
DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        _d("gaussian_blur", "blur", True, (0.7, 1.3, 2.1, 3.2, 4.8), (4.30, 3.60, 2.85, 2.10, 1.40), gaussian_blur),
        _d("motion_blur", "blur", True, (3, 5, 8, 12, 18), (4.25, 3.55, 2.80, 2.05, 1.35), motion_blur),
        _d("jpeg", "compression", False, (30, 15, 8, 4, 1), (4.20, 3.50, 2.75, 2.00, 1.30), jpeg),
        _d("white_noise", "noise", False, (6, 12, 20, 32, 50), (4.20, 3.45, 2.70, 1.95, 1.25), white_noise),
        _d("impulse_noise", "noise", False, (0.01, 0.03, 0.07, 0.13, 0.22), (4.25, 3.50, 2.75, 2.00, 1.30),
           impulse_noise),
        _d("darken", "darken", False, (0.72, 0.52, 0.36, 0.23, 0.12), (4.40, 3.80, 3.05, 2.30, 1.50), darken),
        _d("brighten", "darken", False, (1.5, 2.1, 2.9, 4.0, 5.6), (4.45, 3.85, 3.15, 2.40, 1.60), brighten),
        _d("contrast_loss", "darken", False, (0.70, 0.50, 0.34, 0.21, 0.11), (4.40, 3.75, 3.00, 2.25, 1.50),
           contrast_loss),
        _d("saturation", "darken", False, (1.7, 2.5, 3.5, 5.0, 7.5), (4.50, 4.00, 3.35, 2.65, 1.95), saturation),
        _d("pixelation", "compression", True, (1.6, 2.3, 3.3, 4.8, 7.0), (4.30, 3.55, 2.80, 2.05, 1.35), pixelation),
        _d("colour_quantization", "compression", False, (40, 20, 10, 6, 3), (4.40, 3.80, 3.10, 2.40, 1.70),
           colour_quantization),
    )
}
