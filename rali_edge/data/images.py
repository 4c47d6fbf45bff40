"""The one safe image loader: every image that rali-edge reads goes through `load_image`.

What it guarantees:

- the result is an RGB `PIL.Image.Image`, fully decoded, with its EXIF orientation applied;
- every PIL mode is converted correctly (`to_rgb`): alpha is composited on white (straight and
  premultiplied alpha, palette and grey/RGB `transparency` keys), 16-bit modes (`I;16*`) are
  scaled by 1/257 (the full 16-bit range onto 0..255, never clipped), 32-bit modes follow
  `_scale_int32` / `_scale_float` below;
- decompression bombs are refused from the declared size, before any pixel is decoded, with a
  configurable limit (`max_pixels`), as an error, never a warning;
- missing files, folders, empty files, non-images and truncated files raise
  `ImageLoadError(path, reason)`. PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` is never switched on
  here: a truncated file is an error, not a grey-padded picture.

ICC profiles are not applied (pixels are taken as sRGB), as CLIP's own preprocessing does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rali_edge.errors import ConfigError, ImageLoadError

# PIL's own bomb threshold, but enforced here as an error (PIL only warns below twice this).
DEFAULT_MAX_PIXELS = 89_478_485

ImageSource = Union[str, os.PathLike, BinaryIO, Image.Image]

_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class BadImage:
    """An image that could not be used, and why (for reports; never raised)."""

    path: str
    reason: str


def load_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check, decode and convert one image to RGB. Raises `ImageLoadError` on any problem.

    `source` is a path, a binary file-like object, or a PIL image (checked and converted the
    same way; its EXIF orientation is applied too). `max_pixels=None` disables the bomb check.
    """
    _check_limit(max_pixels)
    if isinstance(source, Image.Image):
        name = _image_name(source)
        _check_size(name, source.size, max_pixels)
        try:
            source.load()  # an image from Image.open may still be lazy
        except Exception as exc:  # any decoder failure is this image's problem: report it
            raise ImageLoadError(name, f"cannot decode ({_describe(exc)})") from None
        return _finish(name, source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_file(path)
        with open(path, "rb") as fp:
            return _decode(str(path), fp, max_pixels)
    if hasattr(source, "read"):
        return _decode(str(getattr(source, "name", "<file object>")), source, max_pixels)
    raise ImageLoadError(repr(source), f"cannot read an image from a {type(source).__name__}")


def load_images(
    sources: Iterable[ImageSource], max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[list[tuple[int, Image.Image]], list[BadImage]]:
    """Load many images; bad ones are reported, never raised.

    Returns `(good, bad)`: `good` holds `(index in sources, RGB image)`, `bad` one `BadImage` per
    failure, in input order.
    """
    _check_limit(max_pixels)
    good: list[tuple[int, Image.Image]] = []
    bad: list[BadImage] = []
    for i, source in enumerate(sources):
        try:
            good.append((i, load_image(source, max_pixels=max_pixels)))
        except ImageLoadError as exc:
            bad.append(BadImage(exc.path, exc.reason))
    return good, bad


def _check_limit(max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    pil_hard = Image.MAX_IMAGE_PIXELS
    if pil_hard is not None and max_pixels > 2 * pil_hard:
        # PIL itself refuses images over twice its limit while opening; we do not touch that
        # global behind the caller's back.
        raise ConfigError(
            f"max_pixels={max_pixels} is above PIL's own hard limit ({2 * pil_hard} pixels); "
            "raise PIL.Image.MAX_IMAGE_PIXELS first if you really need images that large"
        )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, not an image file")
    if not path.is_file():
        raise ImageLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")


def _check_size(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(name, f"declares an empty size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            name,
            f"declares {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
            "(possible decompression bomb; raise max_pixels to allow it)",
        )


def _decode(name: str, fp: BinaryIO, max_pixels: int | None) -> Image.Image:
    with warnings.catch_warnings():
        # We enforce our own limit from the declared size; PIL's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except UnidentifiedImageError:
            raise ImageLoadError(name, "not a recognised image file (unknown or corrupt header)") from None
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(name, f"decompression bomb refused by PIL: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(name, f"cannot open: {exc}") from None
        with img:
            _check_size(name, img.size, max_pixels)
            try:
                img.load()
            except Exception as exc:  # any decoder failure is this file's problem: report it
                raise ImageLoadError(name, f"cannot decode ({_describe(exc)})") from None
            return _finish(name, img)


def _finish(name: str, img: Image.Image) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # corrupt EXIF blocks raise assorted errors inside PIL
        raise ImageLoadError(name, f"cannot apply EXIF orientation ({_describe(exc)})") from None
    out = to_rgb(img, name=name)
    # Detach from the file: the caller may keep the image after the file is closed.
    return out.copy() if out is img else out


def _describe(exc: BaseException) -> str:
    msg = str(exc)
    if "truncated" in msg or isinstance(exc, EOFError):
        return f"truncated file: {msg}" if msg else "truncated file"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _image_name(img: Image.Image) -> str:
    return str(getattr(img, "filename", "") or "<PIL image>")


# ---------------------------------------------------------------------------------------------
# Mode conversion


def to_rgb(img: Image.Image, name: str | None = None) -> Image.Image:
    """Convert any PIL mode to RGB: alpha on white, 16-bit scaled (not clipped), 32-bit rescaled."""
    name = name or _image_name(img)
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    converter = _CONVERTERS.get(img.mode)
    if converter is None:
        raise ImageLoadError(name, f"unsupported image mode {img.mode!r}")
    try:
        return converter(img)
    except ImageLoadError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageLoadError(name, f"cannot convert mode {img.mode!r} to RGB: {exc}") from None


def _plain(img: Image.Image) -> Image.Image:
    """Modes PIL converts correctly itself (1, L, P, CMYK, YCbCr, LAB, HSV, RGBX), unless they
    carry a `transparency` key (grey, RGB and palette PNGs with tRNS)."""
    if "transparency" in img.info:
        return _straight_alpha(img.convert("RGBA"))
    return img.convert("RGB")


def _straight_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _premultiplied_alpha(img: Image.Image) -> Image.Image:
    # Over white, a premultiplied colour c*a/255 becomes c*a/255 + 255 - a: no division needed.
    arr = np.asarray(img).astype(np.int32)
    colour, alpha = arr[..., :-1], arr[..., -1:]
    out = np.clip(colour + 255 - alpha, 0, 255).astype(np.uint8)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return Image.fromarray(out, "RGB")


def _uint16(img: Image.Image) -> Image.Image:
    arr = np.asarray(img).astype(np.float64)  # any byte order -> native values 0..65535
    return _grey_to_rgb(np.rint(arr / 257.0))


def _scale_int32(img: Image.Image) -> Image.Image:
    """Mode "I" (32-bit signed). Rule: values within 0..255 are 8-bit data in a wide container
    and kept; values within 0..65535 are 16-bit data (old PIL opened 16-bit PNGs as "I") and
    divided by 257; anything else (negative or beyond 16 bits) is stretched min..max onto 0..255."""
    arr = np.asarray(img).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 255:
        return _grey_to_rgb(arr)
    if lo >= 0 and hi <= 65535:
        return _grey_to_rgb(np.rint(arr / 257.0))
    return _grey_to_rgb(_stretch(arr, lo, hi))


def _scale_float(img: Image.Image) -> Image.Image:
    """Mode "F" (32-bit float). Rule: NaN -> 0 and +-inf -> the finite extremes; values within
    0..1 are the usual float-image convention and multiplied by 255; values within 0..255 are
    kept; anything else is stretched min..max onto 0..255."""
    arr = np.asarray(img).astype(np.float64)
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    arr = np.nan_to_num(arr, nan=0.0, posinf=hi, neginf=lo)
    lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    if lo >= 0 and hi <= 1:
        return _grey_to_rgb(np.rint(arr * 255.0))
    if lo >= 0 and hi <= 255:
        return _grey_to_rgb(np.rint(arr))
    return _grey_to_rgb(_stretch(arr, lo, hi))


def _stretch(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi == lo:  # a constant picture carries no contrast: mid grey rather than a division by 0
        return np.full_like(arr, 128.0)
    return np.rint((arr - lo) * (255.0 / (hi - lo)))


def _grey_to_rgb(arr: np.ndarray) -> Image.Image:
    grey = np.clip(arr, 0, 255).astype(np.uint8)  # values are already in range: clip is a guard
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")


# Explicit table: every mode PIL can hand us, and how it becomes RGB.
_CONVERTERS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "1": _plain,
    "L": _plain,
    "P": _plain,
    "RGB": _plain,
    "RGBX": _plain,
    "CMYK": _plain,
    "YCbCr": _plain,
    "LAB": _plain,
    "HSV": _plain,
    "LA": _straight_alpha,
    "PA": _straight_alpha,
    "RGBA": _straight_alpha,
    "La": _premultiplied_alpha,
    "RGBa": _premultiplied_alpha,
    "I;16": _uint16,
    "I;16L": _uint16,
    "I;16B": _uint16,
    "I;16N": _uint16,
    "I": _scale_int32,
    "F": _scale_float,
}

