"""Calibration sets: which images, chosen how, preprocessed exactly as the exported graph expects.

The exported graphs take uint8 pixels [B,3,H,W] after resize-shortest-side + centre crop (the
bundle's PreprocessConfig), so the set holds exactly that: `resize_and_crop` + `to_uint8_tensor`,
the same code the scorer uses. With scores, images are drawn stratified over equal-width score
buckets (proportional to bucket population, at least one per non-empty bucket); without, uniformly.
Everything is deterministic for a seed and cached on disk by a hash of what went in.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.calibration.cache import cache_key, load_cached, save_cached
from rali_edge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig
    from rali_edge.data.meta import Record

DEFAULT_SIZE = 300
DEFAULT_BUCKETS = 10


class SmallCalibrationSetWarning(UserWarning):
    """Fewer calibration images than recommended: activation ranges may be poorly estimated."""


@dataclass(frozen=True)
class CalibrationSet:
    pixels: np.ndarray            # uint8 [N, 3, H, W], what the exported graph takes
    provenance: dict              # sources, count, seed, method, preprocess, images, cache key
    scores: np.ndarray | None = None   # labels of the chosen images, when every record had one
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def _records_from(source, image_root) -> tuple[list[Record], list[str]]:
    """A list of Records as is; a folder -> its images; a meta JSON file -> its records."""
    from rali_edge.data.meta import read_image_folder, read_meta

    if isinstance(source, (list, tuple)):
        records = list(source)
        return records, sorted({r.dataset for r in records if r.dataset})
    path = Path(source)
    if path.is_dir():
        return read_image_folder(path), [str(path.resolve())]
    if path.is_file():
        if image_root is None:
            raise ConfigError(f"{path}: a meta file needs image_root (the folder its image paths are relative to)")
        return read_meta(path, image_root), [str(path.resolve())]
    raise DataError(f"{path}: calibration source is neither a folder nor a meta file")


def _allocate(counts: np.ndarray, size: int) -> np.ndarray:
    """Largest-remainder allocation of `size` over buckets, proportional, >= 1 per non-empty bucket."""
    nonempty = counts > 0
    alloc = np.zeros_like(counts)
    if size >= nonempty.sum():
        alloc[nonempty] = 1
    remaining = size - alloc.sum()
    room = counts - alloc
    if remaining > 0 and room.sum() > 0:
        quota = remaining * room / room.sum()
        extra = np.floor(quota).astype(int)
        order = np.argsort(-(quota - extra), kind="stable")
        for i in order[: remaining - extra.sum()]:
            extra[i] += 1
        alloc += np.minimum(extra, room)
    return alloc


def select_indices(scores: list[float | None], size: int, seed: int, buckets: int) -> tuple[np.ndarray, str]:
    """Indices of the chosen records (sorted) and the method used."""
    n = len(scores)
    rng = np.random.default_rng(seed)
    if size >= n:
        return np.arange(n), "all"
    if any(s is None for s in scores):
        return np.sort(rng.choice(n, size=size, replace=False)), "random"
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    edges = np.linspace(lo, hi, buckets + 1)
    bucket = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, buckets - 1)
    counts = np.bincount(bucket, minlength=buckets)
    alloc = _allocate(counts, size)
    chosen = [rng.permutation(np.flatnonzero(bucket == b))[: alloc[b]] for b in range(buckets)]
    return np.sort(np.concatenate(chosen)), "stratified"


def _file_stamp(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _preprocess_images(records: list[Record], preprocess: PreprocessConfig) -> tuple[np.ndarray, list, list]:
    from tqdm.auto import tqdm

    from rali_edge.data.images import load_image
    from rali_edge.errors import ImageLoadError
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    arrays, kept, skipped = [], [], []
    for r in tqdm(records, desc="calibration images", unit="img", leave=False):
        try:
            img = load_image(r.path)
        except ImageLoadError as exc:
            skipped.append({"image": r.image, "reason": exc.reason})
            continue
        arrays.append(to_uint8_tensor(resize_and_crop(img, preprocess)).numpy())
        kept.append(r)
    if not arrays:
        raise DataError(f"no calibration image could be read ({len(skipped)} failed, e.g. {skipped[:1]})")
    return np.stack(arrays), kept, skipped


def build_calibration_set(source, preprocess: PreprocessConfig, size: int = DEFAULT_SIZE, seed: int = 0,
                          cache_dir: str | Path | None = None, image_root: str | Path | None = None,
                          buckets: int = DEFAULT_BUCKETS) -> CalibrationSet:
    """Choose, load and preprocess calibration images from Records, an image folder or a meta file.

    Warns (SmallCalibrationSetWarning, also in `notes`) when fewer than 300 images end up in the set.
    """
    if size < 1:
        raise ConfigError(f"calibration size must be >= 1, got {size}")
    if buckets < 1:
        raise ConfigError(f"calibration buckets must be >= 1, got {buckets}")
    records, source_files = _records_from(source, image_root)
    if not records:
        raise DataError("the calibration source holds no images")
    idx, method = select_indices([r.score for r in records], size, seed, buckets)
    chosen = [records[i] for i in idx]
    pre = dataclasses.asdict(preprocess)
    key = cache_key({"images": [_file_stamp(r.path) for r in chosen], "seed": seed, "size": size,
                     "buckets": buckets, "method": method, "preprocess": pre})
    cached = load_cached(cache_dir, key) if cache_dir is not None else None
    if cached is not None:
        pixels, provenance = cached
    else:
        pixels, kept, skipped = _preprocess_images(chosen, preprocess)
        provenance = {
            "sources": source_files, "count": int(len(pixels)), "requested": size, "seed": seed,
            "method": method, "buckets": buckets if method == "stratified" else None, "preprocess": pre,
            "images": [r.image for r in kept], "skipped": skipped, "cache_key": key,
        }
        provenance = json.loads(json.dumps(provenance))  # plain JSON types, as a cache hit returns them
        if cache_dir is not None:
            save_cached(cache_dir, key, pixels, provenance)
    by_image = {r.image: r.score for r in chosen}
    scores = [by_image[i] for i in provenance["images"]]
    notes: list[str] = []
    if len(pixels) < DEFAULT_SIZE:
        notes.append(f"only {len(pixels)} calibration images (recommended >= {DEFAULT_SIZE}); "
                     "activation ranges may be poorly estimated")
        warnings.warn(notes[-1], SmallCalibrationSetWarning, stacklevel=2)
    return CalibrationSet(
        pixels=pixels, provenance=provenance,
        scores=None if any(s is None for s in scores) else np.asarray(scores, dtype=np.float32),
        notes=tuple(notes),
    )


def from_pixels(pixels: np.ndarray, description: str, seed: int | None = None,
                preprocess: dict | None = None) -> CalibrationSet:
    """Wrap pixels already preprocessed (tests, benchmarks); provenance says where they came from."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ConfigError(f"calibration pixels must be uint8 [N,3,H,W], got {pixels.dtype} {list(pixels.shape)}")
    return CalibrationSet(pixels=pixels, provenance={
        "sources": [description], "count": int(len(pixels)), "seed": seed, "method": "given",
        "preprocess": preprocess, "images": None, "skipped": [], "cache_key": None,
    })
