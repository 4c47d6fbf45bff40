"""What the align stage trains on: the triplets as unique images, texts and scores (`AlignData`), and
which of them each optimiser step uses (`AlignPlan`, a pure function of (seed, step), so a resumed run
draws the same batches as an uninterrupted one)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rali_edge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rali_edge.train.align import AlignConfig


@dataclass(frozen=True)
class AlignData:
    """Unique images, their candidate texts (indices into `texts`), the unique texts, and each image's
    ground-truth score (gt_score_norm, for the ranking loss)."""

    images: list[str]
    text_ids: list[list[int]]
    texts: list[str]
    scores: list[float]

    @classmethod
    def from_triplets(cls, triplets) -> AlignData:
        if not triplets:
            raise DataError("alignment needs at least one triplet")
        text_index: dict[str, int] = {}
        per_image: dict[str, list[int]] = {}
        score: dict[str, float] = {}
        for t in triplets:
            if score.setdefault(t.image, t.gt_score_norm) != t.gt_score_norm:
                raise DataError(f"triplets of image {t.image!r} disagree on its gt_score_norm "
                                f"({score[t.image]} and {t.gt_score_norm}); one image has one ground-truth score")
            tid = text_index.setdefault(t.text, len(text_index))
            ids = per_image.setdefault(t.image, [])
            if tid not in ids:
                ids.append(tid)
        images = list(per_image)
        return cls(images=images, text_ids=[per_image[i] for i in images], texts=list(text_index),
                   scores=[score[i] for i in images])

    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.images, self.text_ids, self.texts, self.scores]).encode()).hexdigest()


class AlignPlan:
    """Which images and texts each optimiser step uses: a pure function of (seed, step)."""

    def __init__(self, data: AlignData, config: AlignConfig, world: int):
        self.data, self.config, self.world = data, config, world
        self.per_step = config.batch_size * config.grad_accum * world
        self.steps_per_epoch = len(data.images) // self.per_step
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"alignment has {len(data.images)} images but one optimiser step needs {self.per_step} "
                "(batch_size x grad_accum x processes); lower align.batch_size or align.grad_accum"
            )
        self.total = config.max_steps or config.epochs * self.steps_per_epoch
        # Steps before this one train on random crops (when random_crop is set), the rest on whole inputs.
        self.crop_steps = round(self.total * (1.0 - config.full_input_fraction)) if config.random_crop else 0
        self._perm: tuple[int, torch.Tensor] | None = None

    def step(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(image indices, text ids) of optimiser step g, for all processes and micro-steps."""
        epoch, within = divmod(g, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.data.images), generator=gen))
        images = self._perm[1][within * self.per_step : (within + 1) * self.per_step].numpy()
        rng = np.random.default_rng([self.config.seed, epoch, within])
        texts = np.array([self.data.text_ids[i][rng.integers(len(self.data.text_ids[i]))] for i in images])
        return images, texts

    def micro(self, arr: np.ndarray, micro: int, rank: int) -> np.ndarray:
        start = (micro * self.world + rank) * self.config.batch_size
        return arr[start : start + self.config.batch_size]
