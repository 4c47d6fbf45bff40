"""Meta files -> what every evaluation runs on: uint8 pixels, resized and cropped as the scorer's
preprocessing says (what every artifact takes), the ground truth, and the images that could not be read."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from PIL import Image

    from rali_edge.bundle import PreprocessConfig


@dataclass
class EvalSet:
    dataset: str                  # the meta file's stem
    paths: list[str]              # the images that were read, in meta order
    images: list[str]             # their `image` field as written in the meta file
    pixels: np.ndarray            # uint8 [N, 3, H, W]
    gt: np.ndarray | None         # gt_score_norm when every record has one
    bad_images: list[dict] = field(default_factory=list)   # {"path", "reason"} of unreadable images

    def __len__(self) -> int:
        return len(self.pixels)


def ground_truth(records) -> np.ndarray | None:
    """The records' scores (gt_score_norm) as float64, or None when any record has none."""
    scores = [r.score for r in records]
    return None if any(s is None for s in scores) else np.asarray(scores, np.float64)


def load_eval_sets(metas: Sequence[str | os.PathLike], image_root: str | os.PathLike,
                   preprocess: PreprocessConfig,
                   prepare: Callable[[Image.Image, PreprocessConfig], np.ndarray] | None = None) -> list[EvalSet]:
    """One EvalSet per meta file; unreadable images are listed, a dataset with none readable is an error.

    `prepare` (RGB image, preprocess -> uint8 [3, S, S]) replaces the training pixel pipeline, e.g. a
    device preprocessing (rali_edge.evaluation.device_preprocess); None: the training one."""
    from rali_edge.data.images import load_images
    from rali_edge.data.meta import read_metas
    from rali_edge.model.preprocess import uint8_batch

    if not metas:
        raise ConfigError("no meta files given (--meta)")
    sets = []
    for dataset, records in read_metas(metas, image_root).items():
        good, bad = load_images([r.path for r in records])
        if not good:
            first = f" (e.g. {bad[0].path}: {bad[0].reason})" if bad else ""
            raise DataError(f"{dataset}: none of its {len(records)} images could be read{first}")
        kept = [records[i] for i, _ in good]
        if prepare is None:
            pixels = uint8_batch([img for _, img in good], preprocess).numpy()
        else:
            pixels = np.stack([np.asarray(prepare(img, preprocess), dtype=np.uint8) for _, img in good])
        sets.append(EvalSet(dataset, [str(r.path) for r in kept], [r.image for r in kept], pixels, ground_truth(kept),
                            [{"path": b.path, "reason": b.reason} for b in bad]))
    return sets


def unreadable(sets: Sequence[EvalSet]) -> list[str]:
    """Every image that could not be read, as gate failures (the exit-code contract counts them)."""
    return [f"{s.dataset}: {b['path']} could not be read ({b['reason']})" for s in sets for b in s.bad_images]
