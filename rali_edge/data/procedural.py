"""Procedural pristine pictures: a "dead leaves" model, seeded, no files needed.

Why: the installed packages ship only 16 usable photographs, so a scorer trained on crops of 12 of
them learns their content instead of their quality. Dead-leaves images (opaque shapes with
power-law sizes falling on top of each other, the model behind camera texture-sharpness charts)
have the scale-invariant edge and texture statistics of natural images with endless variety, so
training on many of them pushes the tower towards features that do not depend on what is pictured.

Each picture: a random background, then shapes (discs, rectangles, ellipses) whose radius follows
p(r) ~ r^-3 between `size / 20` and `size / 2` (about ten layers deep, so the background
ends up covered), each filled with a flat colour, a linear gradient,
or fine stripes; drawn at 2x and downsampled with an antialiasing filter so edges are sharp but not
aliased (a pristine source must not already look distorted).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SUPERSAMPLE = 2
_FILLS = ("flat", "gradient", "stripes")
_FILL_P = (0.55, 0.3, 0.15)


def dead_leaves(size: int, rng: np.random.Generator) -> np.ndarray:
    """A `size` x `size` uint8 RGB dead-leaves picture drawn from `rng`."""
    n = size * SUPERSAMPLE
    canvas = np.empty((n, n, 3), dtype=np.float64)
    canvas[:] = _colour(rng)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    r_min, r_max = n / 20.0, n / 2.0
    # Painter's order: later shapes lie on top. Enough shapes that the background is mostly covered.
    for _ in range(int(rng.integers(200, 320))):
        radius = _power_law_radius(rng, r_min, r_max)
        cy, cx = rng.uniform(-0.1 * n, 1.1 * n, 2)
        y0, y1 = max(0, int(cy - radius) - 1), min(n, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius) - 1), min(n, int(cx + radius) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        mask = _shape_mask(rng, sy, sx, radius)
        if not mask.any():
            continue
        fill = _fill(rng, sy, sx, radius)
        region = canvas[y0:y1, x0:x1]
        region[mask] = fill[mask]
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS))


def _power_law_radius(rng: np.random.Generator, r_min: float, r_max: float) -> float:
    # Inverse-CDF sample of p(r) ~ r^-3 on [r_min, r_max].
    u = rng.random()
    inv = r_min**-2 - u * (r_min**-2 - r_max**-2)
    return float(inv**-0.5)


def _shape_mask(rng: np.random.Generator, sy: np.ndarray, sx: np.ndarray, radius: float) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # disc
        return sy * sy + sx * sx <= radius * radius
    angle = rng.uniform(0.0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * sx + s * sy, -s * sx + c * sy
    aspect = rng.uniform(0.35, 1.0)
    if kind == 1:  # rotated rectangle
        return (np.abs(u) <= radius) & (np.abs(v) <= radius * aspect)
    return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0  # rotated ellipse


def _fill(rng: np.random.Generator, sy: np.ndarray, sx: np.ndarray, radius: float) -> np.ndarray:
    kind = _FILLS[int(rng.choice(len(_FILLS), p=_FILL_P))]
    base = _colour(rng)
    if kind == "flat":
        return np.broadcast_to(base, sy.shape + (3,))
    angle = rng.uniform(0.0, 2 * np.pi)
    t = (np.cos(angle) * sx + np.sin(angle) * sy)[..., None]
    if kind == "gradient":
        other = _colour(rng)
        w = np.clip(0.5 + t / (2 * radius), 0.0, 1.0)
        return base * (1 - w) + other * w
    period = rng.uniform(3.0, 10.0) * SUPERSAMPLE
    amplitude = rng.uniform(15.0, 45.0)
    return np.clip(base + amplitude * np.sin(2 * np.pi * t / period), 0, 255)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A well-exposed colour: moderate saturation, mid-range brightness, like most photo content."""
    grey = rng.uniform(40.0, 215.0)
    tint = rng.normal(0.0, 35.0, 3)
    return np.clip(grey + tint, 10.0, 245.0)
