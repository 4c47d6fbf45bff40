"""Paired bootstrap over images: percentile intervals for PLCC, SRCC and their change against float.

One index matrix `[resamples, n]` is drawn per (n, resamples, seed) and reused for the float model
and every artifact, so each resample compares the float model and the artifact on the SAME images
(a paired bootstrap): the interval of a change reflects how the artifact moved the scores, not
which images a resample happened to draw. Large sets go through it in blocks of resamples
(BLOCK_ENTRIES), each block drawn from its own seeded generator: memory stays flat. PLCC is computed for every resample at once (row-wise
Pearson). SRCC is the Pearson correlation of each resample's average ranks (as `rankdata(axis=1)`
gives them, from counts: a resample's repeated images are ties, as scipy's spearmanr treats them).

A resample where a correlation is undefined (its scores or its ground truth are constant) is left
out; `valid` says how many were used, and with fewer than half valid there is no interval (None).
The interval is the percentile one: the (1 - level) / 2 and (1 + level) / 2 quantiles of the valid
resamples. The seed is fixed by default, so a report is reproducible bit for bit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from rali_edge.errors import ConfigError

Interval = tuple[float, float]


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: resamples of the images, the seed of the draw, the coverage."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 10:
            raise ConfigError(f"bootstrap resamples must be an integer >= 10, got {self.resamples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"bootstrap seed must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.level, float) and 0.5 <= self.level < 1.0):
            raise ConfigError(f"bootstrap level must be a float in [0.5, 1), got {self.level!r}")

    def to_dict(self) -> dict:
        return {"method": "paired percentile bootstrap over images", "resamples": self.resamples,
                "seed": self.seed, "level": self.level}


DEFAULT_BOOTSTRAP = Bootstrap()


# Resamples are processed in blocks of at most this many (resample, image) entries, so memory stays
# flat for any number of images (about 32 MB per float64 array; one block for up to 4,000 images).
BLOCK_ENTRIES = 4_000_000


def resample_blocks(n: int, resamples: int) -> list[tuple[int, int]]:
    """The [start, stop) resample ranges processed together for n images."""
    step = max(1, BLOCK_ENTRIES // n)
    return [(a, min(a + step, resamples)) for a in range(0, resamples, step)]


@functools.lru_cache(maxsize=4)
def resample_indices(n: int, resamples: int, seed: int, block: int = 0) -> np.ndarray:
    """The read-only image indices of block `block` of the resamples for (n, resamples, seed): drawn
    from a generator seeded by all four, so the same call always gives the same matrix."""
    start, stop = resample_blocks(n, resamples)[block]
    idx = np.random.default_rng([seed, n, block]).integers(0, n, size=(stop - start, n), dtype=np.int64)
    idx.setflags(write=False)
    return idx


def rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of `x` and `y` ([B, n]); NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
    num = np.einsum("ij,ij->i", xc, yc)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[~(den > 1e-12 * max(1.0, float(np.max(den, initial=0.0))))] = np.nan   # constant rows: undefined
    return np.clip(r, -1.0, 1.0)


def resample_ranks(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank) of `values[idx]`, row by row: what
    `scipy.stats.rankdata(values[idx], axis=1)` gives, from counts instead of a sort per row. A value
    drawn c times, with `less` drawn values below it, has rank less + (c + 1) / 2."""
    resamples = idx.shape[0]
    distinct, group = np.unique(values, return_inverse=True)
    drawn = group[idx]
    flat = (np.arange(resamples)[:, None] * distinct.size + drawn).ravel()
    counts = np.bincount(flat, minlength=resamples * distinct.size).reshape(resamples, distinct.size)
    counts = counts.astype(np.float64)
    average = np.cumsum(counts, axis=1) - counts + (counts + 1) / 2
    return np.take_along_axis(average, drawn, axis=1)


@dataclass(frozen=True)
class _Resampled:
    """One score vector's correlations with the ground truth on every resample (NaN: undefined)."""

    plcc: np.ndarray
    srcc: np.ndarray


def _interval(values: np.ndarray, level: float) -> tuple[Interval | None, int]:
    ok = values[np.isfinite(values)]
    if ok.size * 2 < values.size:
        return None, int(ok.size)
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi)), int(ok.size)


class PairedBootstrap:
    """Intervals of the float model's PLCC/SRCC and of any artifact's PLCC/SRCC and their changes,
    all on one shared set of resamples. Needs at least 3 images and a ground truth."""

    def __init__(self, float_scores, gt, config: Bootstrap = DEFAULT_BOOTSTRAP):
        self.config = config
        self._gt = np.asarray(gt, np.float64)
        n = self._gt.size
        if n < 3:
            raise ConfigError(f"a bootstrap interval needs at least 3 images, got {n}")
        self._blocks = len(resample_blocks(n, config.resamples))
        self._kept = None
        if self._blocks == 1:   # one block: draw it and its ground-truth side once, for every artifact
            self._kept = self._block(0)
        self._float = self._resample(np.asarray(float_scores, np.float64))

    def _block(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices, resampled ground truth, its ranks) of block k."""
        if self._kept is not None:
            return self._kept
        idx = resample_indices(self._gt.size, self.config.resamples, self.config.seed, k)
        return idx, self._gt[idx], resample_ranks(self._gt, idx)

    def _resample(self, scores: np.ndarray) -> _Resampled:
        if scores.shape != self._gt.shape:
            raise ConfigError(f"{scores.size} scores for {self._gt.size} ground-truth values")
        plcc, srcc = [], []
        for k in range(self._blocks):
            idx, gt_b, gt_ranks = self._block(k)
            plcc.append(rowwise_pearson(scores[idx], gt_b))
            srcc.append(rowwise_pearson(resample_ranks(scores, idx), gt_ranks))
        return _Resampled(np.concatenate(plcc), np.concatenate(srcc))

    def reference(self) -> dict:
        """{"plcc_ci", "srcc_ci", "valid"} of the float model itself."""
        return self._summary(self._float, None)

    def compare(self, scores) -> dict:
        """{"plcc_ci", "srcc_ci", "dplcc_ci", "dsrcc_ci", "valid"} of an artifact's scores (same images)."""
        return self._summary(self._resample(np.asarray(scores, np.float64)), self._float)

    def _summary(self, got: _Resampled, ref: _Resampled | None) -> dict:
        level = self.config.level
        out, valid = {}, []
        for name in ("plcc", "srcc"):
            out[f"{name}_ci"], v = _interval(getattr(got, name), level)
            valid.append(v)
            if ref is not None:
                out[f"d{name}_ci"], v = _interval(getattr(got, name) - getattr(ref, name), level)
                valid.append(v)
        out["valid"] = min(valid)
        return out

