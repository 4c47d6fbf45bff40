"""Does the artifact reorder the images? Ranking agreement between float and artifact scores.

- `kendall_tau`: Kendall tau-b of artifact scores against float scores (`rali_edge.metrics.krcc`,
  scipy's kendalltau): 1 = the same order.
- `top_k_overlap` / `bottom_k_overlap`: of the k images the float model scores highest (lowest),
  the share the artifact also puts in its k highest (lowest); k = round(fraction * n), at least 1.
  What a photo-curation app keeps or drops. Equal scores at the cut are ordered by image index.
- `flipped_pairs`: image pairs the two order strictly the opposite way (float says i > j, artifact
  says i < j), COUNTED EXACTLY (inversions after sorting by float score, O(n log n)); a pair tied in
  either score is not a flip. `flip_share = flipped_pairs / pairs` with pairs = n (n - 1) / 2.
  Without ties, flip_share = (1 - tau) / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rali_edge.errors import ConfigError, DataError

DEFAULT_TOP_FRACTION = 0.1


@dataclass(frozen=True)
class RankingStats:
    n: int
    kendall_tau: float
    k: int
    top_k_overlap: float
    bottom_k_overlap: float
    flipped_pairs: int
    pairs: int
    flip_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def flipped_pairs(reference, scores) -> int:
    """Pairs (i, j) with (reference_i - reference_j) * (scores_i - scores_j) < 0, counted exactly."""
    x, y = np.asarray(reference, np.float64), np.asarray(scores, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"flipped_pairs: shapes {x.shape} and {y.shape} must be equal and 1-D")
    # Sort by x, ties in x by y ascending: a pair later in this order with a strictly smaller y is a
    # flip, and pairs tied in x never count (their y are ascending).
    order = np.lexsort((y, x))
    _, ranks = np.unique(y[order], return_inverse=True)   # dense ranks 0..m-1, equal y -> equal rank
    return _strict_inversions(ranks.astype(np.int64), int(ranks.max(initial=-1)) + 1)


def _strict_inversions(ranks: np.ndarray, m: int) -> int:
    """Pairs i < j with ranks[i] > ranks[j], with a Fenwick tree of counts seen so far."""
    tree = [0] * (m + 1)
    seen = inversions = 0
    for r in ranks.tolist():
        i, not_greater = r + 1, 0
        while i > 0:                   # how many seen so far have rank <= r
            not_greater += tree[i]
            i -= i & -i
        inversions += seen - not_greater
        i = r + 1
        while i <= m:
            tree[i] += 1
            i += i & -i
        seen += 1
    return inversions


def _k_best(values: np.ndarray, k: int, highest: bool) -> set[int]:
    keys = -values if highest else values
    return set(np.argsort(keys, kind="stable")[:k].tolist())   # ties: lower index first


def overlap(reference, scores, k: int, highest: bool = True) -> float:
    """Share of the reference's k highest (or lowest) images that are also among the scores' k."""
    x, y = np.asarray(reference, np.float64), np.asarray(scores, np.float64)
    if not 1 <= k <= x.size:
        raise ConfigError(f"k={k} must be between 1 and the number of images ({x.size})")
    return len(_k_best(x, k, highest) & _k_best(y, k, highest)) / k


def top_k(n: int, fraction: float = DEFAULT_TOP_FRACTION) -> int:
    if not 0 < fraction <= 1:
        raise ConfigError(f"top fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


def ranking_stats(reference, scores, fraction: float = DEFAULT_TOP_FRACTION) -> RankingStats:
    """Ranking agreement of `scores` with `reference` (float) scores. DataError when undefined (fewer
    than 3 images, constant scores)."""
    from rali_edge.metrics import krcc

    x, y = np.asarray(reference, np.float64), np.asarray(scores, np.float64)
    tau = krcc(y, x)
    n, k = int(x.size), top_k(int(x.size), fraction)
    flips, pairs = flipped_pairs(x, y), n * (n - 1) // 2
    return RankingStats(n=n, kendall_tau=tau, k=k, top_k_overlap=overlap(x, y, k, True),
                        bottom_k_overlap=overlap(x, y, k, False), flipped_pairs=flips, pairs=pairs,
                        flip_share=flips / pairs)
