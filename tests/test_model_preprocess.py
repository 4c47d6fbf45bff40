"""Host preprocessing equals transformers' CLIP image processor on real photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from skimage import data

from rali_edge.bundle import PreprocessConfig
from rali_edge.errors import ConfigError
from rali_edge.model.preprocess import normalize, preprocess_images, resize_and_crop, to_uint8_tensor, uint8_batch


def _photos() -> list[Image.Image]:
    imgs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = [Image.fromarray(a) for a in imgs]
    out.append(out[0].crop((0, 0, 301, 117)))  # wide, odd sizes
    out.append(out[1].crop((0, 0, 95, 250)))  # tall, odd sizes
    return out


def _hf(processor_cls, cfg: PreprocessConfig, imgs):
    p = processor_cls(size={"shortest_edge": cfg.resize}, crop_size={"height": cfg.image_size, "width": cfg.image_size})
    return p(images=imgs, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("resize,size", [(224, 224), (72, 64), (336, 336)])
def test_equals_hf_pil_processor(resize, size):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    cfg = PreprocessConfig(image_size=size, resize=resize)
    imgs = _photos()
    ours = preprocess_images(imgs, cfg)
    ref = _hf(CLIPImageProcessorPil, cfg, imgs)
    assert ours.shape == ref.shape == (len(imgs), 3, size, size)
    assert float((ours - ref).abs().max()) < 1e-5


def test_close_to_hf_torchvision_processor():
    # transformers 5.x's default CLIPImageProcessor resizes with torchvision's bicubic kernel
    from transformers import CLIPImageProcessor

    cfg = PreprocessConfig(image_size=224, resize=224)
    imgs = _photos()[:4]
    diff = (preprocess_images(imgs, cfg) - _hf(CLIPImageProcessor, cfg, imgs)).abs()
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 0.1


def test_uint8_path_matches_float_path():
    cfg = PreprocessConfig(image_size=32, resize=40)
    imgs = _photos()[:2]
    u8 = uint8_batch(imgs, cfg)
    assert u8.dtype == torch.uint8 and u8.shape == (2, 3, 32, 32)
    torch.testing.assert_close(normalize(u8, cfg), preprocess_images(imgs, cfg))
    torch.testing.assert_close(normalize(u8.float() / 255, cfg), preprocess_images(imgs, cfg))


def test_non_rgb_input_is_converted():
    cfg = PreprocessConfig(image_size=16, resize=16)
    grey = Image.fromarray(data.camera())
    out = resize_and_crop(grey, cfg)
    assert out.mode == "RGB" and out.size == (16, 16)
    t = to_uint8_tensor(out)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_bad_config_and_shapes():
    from types import SimpleNamespace

    bad = dict(image_size=8, resize=8, crop="center", interpolation="bicubic")
    for key, value in [("crop", "corner"), ("interpolation", "lanczos"), ("resize", 4)]:
        with pytest.raises(ConfigError, match=key):
            resize_and_crop(_photos()[0], SimpleNamespace(**{**bad, key: value}))
    with pytest.raises(ConfigError, match="shaped"):
        normalize(torch.zeros(2, 4, 8, 8), PreprocessConfig(image_size=8, resize=8))
    assert preprocess_images([], PreprocessConfig(image_size=8, resize=8)).shape == (0, 3, 8, 8)
