"""Device-side preprocessing: how an app may prepare pixels differently from training, by name.

Training resizes the shortest side with PIL bicubic (antialiased on downscale) and centre-crops
(rali_edge.model.preprocess). An app on a phone often does not: it uses the platform's bilinear
scaler, a GPU texture sampler without antialiasing, nearest neighbour, or scores a JPEG it wrote
itself. Each name below prepares a PIL RGB image the way such an app would, with the SAME geometry
(shortest side to `resize`, the same rounding, centre crop `image_size`), so only the kernel (or the
JPEG round trip) differs from training:

- `bilinear`: PIL bilinear; PIL widens the filter on downscale, so it is antialiased (what
  Core Image / vImage, or torchvision's `antialias=True`, do);
- `bilinear-noaa`: bilinear WITHOUT antialiasing, sampling at pixel centres (torch `interpolate`,
  `align_corners=False, antialias=False`): what Android's `Bitmap.createScaledBitmap(..., true)` and
  GPU texture sampling (GL_LINEAR, no mipmaps) do; on a large downscale it skips pixels and aliases;
- `nearest`: nearest neighbour at pixel centres (PIL NEAREST; GL_NEAREST, `createScaledBitmap(..., false)`);
- `jpeg<Q>` (Q = 1..100, e.g. `jpeg90`): the decoded image re-encoded as JPEG at quality Q with PIL
  (its default 4:2:0 chroma subsampling), decoded again, then the training preprocessing.

Where the images already are at the crop size and need no resize, the kernel variants leave the
pixels unchanged; only the JPEG ones still differ. Names are parsed here, once, from an explicit
table (the kernels) and one pattern (`jpeg<Q>`); anything else is a ConfigError.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from rali_edge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig
    from rali_edge.evaluation.evalset import EvalSet
    from rali_edge.evaluation.measure import Measurement
    from rali_edge.report.drift import DriftRow

# A pixel pipeline: RGB PIL image + the scorer's preprocessing -> uint8 [3, image_size, image_size].
Prepare = Callable[[Image.Image, "PreprocessConfig"], np.ndarray]


@dataclass(frozen=True)
class DevicePreprocess:
    """One named device preprocessing: its name, what it does, and its pixel pipeline."""

    name: str
    description: str
    prepare: Prepare

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description}


# ---------------------------------------------------------------------------------------------
# Pixel pipelines


def training_pixels(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """The training preprocessing (PIL, the bundle's kernel, centre crop) as uint8 [3, S, S]."""
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    return to_uint8_tensor(resize_and_crop(img, cfg)).numpy()


def _pil_bilinear(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    return training_pixels(img, dataclasses.replace(cfg, interpolation="bilinear"))


def _resize_then_crop(img: Image.Image, cfg: PreprocessConfig,
                      resize: Callable[[Image.Image, tuple[int, int]], Image.Image]) -> np.ndarray:
    """The training geometry (shortest side to cfg.resize, same rounding, centre crop, top-left
    offset floored) with another resize kernel."""
    from rali_edge.model.preprocess import _resized_size, to_uint8_tensor

    if cfg.crop != "center":
        raise ConfigError(f"preprocess crop {cfg.crop!r} is not supported (only 'center')")
    if img.mode != "RGB":
        from rali_edge.data.images import to_rgb

        img = to_rgb(img)
    new_w, new_h = _resized_size(img.width, img.height, cfg.resize)
    img = resize(img, (new_w, new_h)) if (new_w, new_h) != img.size else img
    top, left = (new_h - cfg.image_size) // 2, (new_w - cfg.image_size) // 2
    return to_uint8_tensor(img.crop((left, top, left + cfg.image_size, top + cfg.image_size))).numpy()


def _torch_bilinear_no_antialias(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)[None].to(torch.float32)
    y = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=False)
    arr = y[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")


def _bilinear_no_antialias(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    return _resize_then_crop(img, cfg, _torch_bilinear_no_antialias)


def _nearest(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    return _resize_then_crop(img, cfg, lambda im, size: im.resize(size, resample=Image.Resampling.NEAREST))


def jpeg_pixels(img: Image.Image, cfg: PreprocessConfig, quality: int) -> np.ndarray:
    """`img` re-encoded as JPEG at `quality` (PIL), decoded by the one safe loader, then the training
    preprocessing."""
    from rali_edge.data.images import load_image

    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality {quality!r} must be an integer 1..100")
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return training_pixels(load_image(buf), cfg)


# ---------------------------------------------------------------------------------------------
# Names


DEVICE_PREPROCESS: dict[str, DevicePreprocess] = {
    d.name: d for d in (
        DevicePreprocess("bilinear", "PIL bilinear, antialiased on downscale (Core Image / vImage style)",
                         _pil_bilinear),
        DevicePreprocess("bilinear-noaa", "bilinear without antialiasing, pixel-centre sampling "
                         "(Android createScaledBitmap, GPU texture sampling)", _bilinear_no_antialias),
        DevicePreprocess("nearest", "nearest neighbour at pixel centres (PIL NEAREST, GL_NEAREST)", _nearest),
    )
}
_JPEG = re.compile(r"jpeg([1-9][0-9]?|100)")
JPEG_HELP = "jpeg<Q> (Q = 1..100): re-encoded as JPEG at quality Q, then the training preprocessing"


def device_preprocess(name: str) -> DevicePreprocess:
    """The device preprocessing called `name`; ConfigError naming the known ones otherwise."""
    if name in DEVICE_PREPROCESS:
        return DEVICE_PREPROCESS[name]
    match = _JPEG.fullmatch(name)
    if match:
        quality = int(match.group(1))
        return DevicePreprocess(name, f"re-encoded as JPEG at quality {quality} (PIL, 4:2:0), then the training "
                                      "preprocessing", functools.partial(jpeg_pixels, quality=quality))
    raise ConfigError(f"unknown device preprocessing {name!r}; known: {', '.join(DEVICE_PREPROCESS)}, "
                      "jpeg<Q> with Q = 1..100 (e.g. jpeg90)")


def parse_device_preprocess(names: str | Sequence[str] | None) -> list[DevicePreprocess]:
    """A comma list (or a sequence) of names -> their DevicePreprocess, in order. Unknown, empty or
    repeated names are a ConfigError."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[DevicePreprocess] = []
    for raw in items:
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"device preprocessing: empty or non-text name in {names!r}")
        d = device_preprocess(raw.strip())
        if d.name in (o.name for o in out):
            raise ConfigError(f"device preprocessing {d.name!r} given twice")
        out.append(d)
    return out


def variant_label(dataset: str, device: DevicePreprocess) -> str:
    """How rows and score tables name a dataset prepared the device's way: `test@bilinear-noaa`."""
    return f"{dataset}@{device.name}"


def load_device_sets(sets: Sequence[EvalSet], metas: Sequence[str | os.PathLike], image_root: str | os.PathLike,
                     preprocess: PreprocessConfig, device: DevicePreprocess) -> list[EvalSet]:
    """The same images as `sets` (loaded with the training preprocessing), prepared the device's way,
    each set renamed `<dataset>@<name>`. The same loader reads them; a set whose readable images differ
    from the first read (a file changed meanwhile) is a DataError."""
    from rali_edge.evaluation.evalset import load_eval_sets

    out = []
    for s, d in zip(sets, load_eval_sets(metas, image_root, preprocess, prepare=device.prepare), strict=True):
        if d.dataset != s.dataset or d.paths != s.paths:
            raise DataError(f"{s.dataset}: the images read for device preprocessing {device.name!r} differ from "
                            "those read for the training preprocessing (did files change meanwhile?)")
        out.append(dataclasses.replace(d, dataset=variant_label(s.dataset, device)))
    return out


def device_reference(reference: Measurement, sets: Sequence[EvalSet], device_sets: Sequence[EvalSet]) -> Measurement:
    """The float model on the TRAINING pixels (`reference`, measured on `sets`) under the device sets'
    dataset names: what every artifact's device rows compare with. Made once per device preprocessing,
    so its bootstrap is drawn once for all artifacts (Measurement.bootstrap)."""
    from rali_edge.evaluation.measure import Measurement

    return Measurement(reference.artifact, reference.status,
                       {d.dataset: reference.outputs[s.dataset] for s, d in zip(sets, device_sets, strict=True)})


def device_drift_rows(name: str, measured: Measurement, device_sets: Sequence[EvalSet], reference: Measurement,
                      device: DevicePreprocess) -> list[DriftRow]:
    """Drift rows of `measured` (run on `device_sets`) against `reference` (device_reference: the float
    model on the training pixels), marked with the device preprocessing."""
    from rali_edge.evaluation.measure import drift_rows

    return [dataclasses.replace(r, device_preprocess=device.name)
            for r in drift_rows(measured, list(device_sets), reference, name)]


def measure_reference_on(bundle_dir, device_sets: Sequence[EvalSet], batch_size: int,
                         threads: int | None) -> Measurement:
    """The float model run on device-prepared pixels: a measured row like any artifact's (status ok)."""
    from rali_edge.evaluation.measure import measure_reference
    from rali_edge.report.drift import OK

    return dataclasses.replace(measure_reference(bundle_dir, list(device_sets), batch_size, threads), status=OK)
