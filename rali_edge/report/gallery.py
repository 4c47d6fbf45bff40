"""The images an artifact gets most wrong: the N largest |artifact - float| score changes, and the
small JPEG thumbnails the HTML report embeds for them.

Size bound: a thumbnail is at most THUMB_LONG_SIDE px on its long side and THUMB_MAX_BYTES bytes of
JPEG (quality THUMB_QUALITY, lowered step by step, then the size halved, until it fits), i.e. at most
4/3 of that as base64 in the page. The HTML report's whole bound is report/html.py's HTML_MAX_BYTES.
Images are read with the one safe loader; one that cannot be read any more gets no thumbnail (the
reason is shown instead), never a failed report.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass

import numpy as np

from rali_edge.errors import ConfigError, RaliEdgeError
from rali_edge.report.images import ImageTable

DEFAULT_WORST = 8
THUMB_LONG_SIDE = 128
THUMB_QUALITY = 70
THUMB_MAX_BYTES = 8_000
_QUALITY_STEPS = (THUMB_QUALITY, 55, 40, 25)


@dataclass(frozen=True)
class WorstImage:
    rank: int                    # 1 = largest |change|
    image: str                   # as written in the meta file
    dataset: str
    path: str                    # on disk
    float_score: float
    score: float
    change: float                # score - float_score
    gt: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def worst_images(float_scores, scores, table: ImageTable, n: int = DEFAULT_WORST) -> list[WorstImage]:
    """The `n` images with the largest |scores - float_scores| (ties: first in meta order)."""
    ref, got = np.asarray(float_scores, np.float64), np.asarray(scores, np.float64)
    change = got - ref
    order = np.argsort(-np.abs(change), kind="stable")[:max(0, n)]
    return [WorstImage(rank=i + 1, image=table.image[j], dataset=table.dataset[j], path=table.path[j],
                       float_score=float(ref[j]), score=float(got[j]), change=float(change[j]),
                       gt=None if table.gt is None else float(table.gt[j]))
            for i, j in enumerate(order.tolist())]


def _jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def thumbnail_jpeg(path: str, long_side: int = THUMB_LONG_SIDE, max_bytes: int = THUMB_MAX_BYTES) -> bytes:
    """A JPEG of the image at most `long_side` px and `max_bytes` bytes. Raises RaliEdgeError when the
    image cannot be read."""
    from PIL import Image

    from rali_edge.data.images import load_image

    img = load_image(path)
    side = long_side
    while True:
        small = img.copy()
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in _QUALITY_STEPS:
            data = _jpeg(small, quality)
            if len(data) <= max_bytes:
                return data
        if side <= 8:   # an 8 px JPEG is well under a kilobyte: only an absurd bound gets here
            raise ConfigError(f"cannot make a thumbnail of {path} within {max_bytes} bytes")
        side //= 2      # even the lowest quality is too big: fewer pixels


class Thumbnails:
    """`data:` URIs of thumbnails, made once per path (an image worst for several artifacts is read once)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str | None, str | None]] = {}

    def uri(self, path: str) -> tuple[str | None, str | None]:
        """(data URI, None) or (None, why there is no thumbnail)."""
        if path not in self._cache:
            try:
                data = base64.b64encode(thumbnail_jpeg(path)).decode("ascii")
                self._cache[path] = (f"data:image/jpeg;base64,{data}", None)
            except RaliEdgeError as exc:
                self._cache[path] = (None, str(exc))
        return self._cache[path]
