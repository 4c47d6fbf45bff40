"""Image augmentations of the align stage, each drawn from a seeded numpy Generator.

- `random_crop`: square crops at the input's own pixel scale (blur, noise and blocks keep their
  size); scoring still sees whole inputs, so the tower must take any input size (global average
  pooling, e.g. timm CNNs). `check_takes_crops` refuses other towers before training.
- `flip_rotate`: dihedral copies (mirror and quarter turns) of square inputs.

The align loop seeds each with `[seed, STREAM, step, micro_step]`, one stream per augmentation, so a
resumed run draws the same numbers and turning one augmentation on leaves the other's draws as they were.
"""

from __future__ import annotations

import numpy as np
import torch

from rali_edge.errors import ConfigError

AUGMENT_STREAM = 7  # keeps augmentation draws apart from the plan's draws
CROP_STREAM = 8  # crops have their own stream: turning them on leaves the flip/turn draws as they were


def flip_rotate(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each image of `[B, C, H, W]` turned by a random multiple of 90 degrees and maybe mirrored.

    Square inputs only (a turn swaps H and W); every CLIP preprocessing here ends in a square crop."""
    if batch.shape[-1] != batch.shape[-2]:
        raise ConfigError(f"align.flip_rotate needs square images, got {tuple(batch.shape[-2:])}")
    turns = rng.integers(0, 4, len(batch))
    mirror = rng.random(len(batch)) < 0.5
    out = [torch.rot90(x, int(k), dims=(-2, -1)) for x, k in zip(batch, turns)]
    return torch.stack([x.flip(-1) if f else x for x, f in zip(out, mirror)])


def random_crop(batch: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image of `[B, C, H, W]` cut to a `size` x `size` square at its own random position."""
    h, w = batch.shape[-2:]
    if size > min(h, w):
        raise ConfigError(f"align.random_crop={size} is larger than the {h}x{w} encoder input")
    ys = rng.integers(0, h - size + 1, len(batch))
    xs = rng.integers(0, w - size + 1, len(batch))
    return torch.stack([x[..., y:y + size, x0:x0 + size] for x, y, x0 in zip(batch, ys, xs)])


def check_takes_crops(encoder: torch.nn.Module, size: int, input_size: int, device) -> None:
    """ConfigError unless `encoder` maps a `size` px input to an embedding like a full-size one.

    Towers with a positional embedding of their input grid (ViTs, open_clip's ModifiedResNet attention
    pool) fail here, before any training step."""
    if size > input_size:
        raise ConfigError(f"align.random_crop={size} is larger than the encoder input ({input_size} px)")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            full = encoder(torch.zeros(1, 3, input_size, input_size, device=device))
            crop = encoder(torch.zeros(1, 3, size, size, device=device))
    except (RuntimeError, ValueError) as e:
        raise ConfigError(
            f"align.random_crop={size}: the image tower does not take {size}x{size} input ({type(e).__name__}: "
            f"{str(e).splitlines()[0]}); use a tower with global average pooling (e.g. a timm CNN, "
            "rali_edge.model.tiny.tiny_timm_backbone_config) or random_crop = 0") from e
    finally:
        encoder.train(was_training)
    if crop.shape != full.shape:
        raise ConfigError(f"align.random_crop={size}: the image tower gives {tuple(crop.shape)} for a crop but "
                          f"{tuple(full.shape)} for a whole image; it needs global pooling to train on crops")
