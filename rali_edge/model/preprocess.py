"""The one host-side image preprocessing: what Hugging Face's CLIPImageProcessor does, step by step.

Shortest side resized to `resize` (PIL, bicubic by default), centre crop `image_size`, scale 1/255,
then (x - mean) / std per channel. It equals transformers' PIL image processor
(`CLIPImageProcessorPil` in 5.x, the default `CLIPImageProcessor` in 4.x, which the official
RALI code used) exactly; the 5.x torchvision-backed `CLIPImageProcessor` resizes with its own
bicubic kernel and differs by a few grey levels at edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from rali_edge.bundle import PreprocessConfig
from rali_edge.errors import ConfigError

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def _resized_size(width: int, height: int, shortest: int) -> tuple[int, int]:
    # Same rounding as transformers' get_resize_output_image_size(default_to_square=False): the long
    # side is truncated, not rounded.
    if width <= height:
        return shortest, int(shortest * height / width)
    return int(shortest * width / height), shortest


def resize_and_crop(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """RGB image -> RGB image of image_size x image_size (resize shortest side, then centre crop)."""
    if cfg.crop != "center":
        raise ConfigError(f"preprocess crop {cfg.crop!r} is not supported (only 'center')")
    if cfg.interpolation not in _RESAMPLE:
        raise ConfigError(f"preprocess interpolation {cfg.interpolation!r} is not one of {sorted(_RESAMPLE)}")
    if cfg.resize < cfg.image_size:
        raise ConfigError(f"preprocess resize ({cfg.resize}) must be >= image_size ({cfg.image_size})")
    if img.mode != "RGB":
        from rali_edge.data.images import to_rgb

        img = to_rgb(img)
    new_w, new_h = _resized_size(img.width, img.height, cfg.resize)
    img = img.resize((new_w, new_h), resample=_RESAMPLE[cfg.interpolation])
    # transformers' center_crop: top-left offset floored
    top = (new_h - cfg.image_size) // 2
    left = (new_w - cfg.image_size) // 2
    return img.crop((left, top, left + cfg.image_size, top + cfg.image_size))


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor [3, H, W]."""
    arr = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def normalize(pixels: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 pixels (0-255) or float pixels in [0, 1], [B,3,H,W] or [3,H,W] -> float32 (x - mean) / std."""
    if pixels.dim() not in (3, 4) or pixels.shape[-3] != 3:
        raise ConfigError(f"expected pixels shaped [B,3,H,W] or [3,H,W], got {list(pixels.shape)}")
    x = pixels.to(torch.float32) / 255.0 if pixels.dtype == torch.uint8 else pixels.to(torch.float32)
    shape = (3, 1, 1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=x.device).view(shape)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=x.device).view(shape)
    return (x - mean) / std


def preprocess_image(img: Image.Image, cfg: PreprocessConfig) -> torch.Tensor:
    """PIL image -> float [3, image_size, image_size], ready for the encoder."""
    return normalize(to_uint8_tensor(resize_and_crop(img, cfg)), cfg)


def preprocess_images(imgs: Sequence[Image.Image], cfg: PreprocessConfig) -> torch.Tensor:
    """PIL images -> float [B, 3, image_size, image_size]."""
    if len(imgs) == 0:
        return torch.empty((0, 3, cfg.image_size, cfg.image_size), dtype=torch.float32)
    return torch.stack([preprocess_image(img, cfg) for img in imgs])


def uint8_batch(imgs: Sequence[Image.Image], cfg: PreprocessConfig) -> torch.Tensor:
    """PIL images -> resized, cropped uint8 [B, 3, image_size, image_size] (what exported models take)."""
    if len(imgs) == 0:
        return torch.empty((0, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    return torch.stack([to_uint8_tensor(resize_and_crop(img, cfg)) for img in imgs])
