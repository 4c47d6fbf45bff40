"""Feature compression (paper section 4): PCA D -> M, then bucketed k-means to K basis vectors.

PCA: exact eigendecomposition of the centred training embeddings' scatter matrix (float64; SVD when
there are fewer samples than dimensions), signs fixed so the largest-magnitude
entry of each component is positive (sklearn's `svd_flip` convention): the result is deterministic.
The head applies `((feats - pca_mean) / |pca_scale|) @ pca_components.T` with `pca_scale` = 1 at
initialisation, so the projection here is exactly what the head computes before training.

Bucketed k-means: the score range [low, high] (default [1, 5]) is split into N equal buckets
(right edge of the last bucket included; scores a hair outside the range are clipped into the end
buckets, scores clearly outside raise DataError). The K clusters are spread over buckets by this rule:

1. every non-empty bucket gets one cluster (so every populated score region keeps a basis vector);
2. the remaining R = K - (non-empty buckets) are spread in proportion to bucket population n_b
   (distinct members), largest-remainder style: floor(R * n_b / n) each, then one more to the buckets with the largest
   fractional remainders (ties: the lower bucket first);
3. no bucket gets more clusters than it has distinct feature vectors; what a full bucket cannot
   take is re-spread over the others with the same rule until all K are placed.

K larger than the number of distinct training samples, or smaller than the number of non-empty
buckets, is a ConfigError naming the option to change (no silent merging).

Clustering runs on the L2-normalised PCA features. The paper's equation (1) clusters the raw PCA
coordinates, but the head compares directions only (cosine similarity), so clustering directions
is the consistent choice; `normalize=False` gives the paper's literal variant. Each centroid is the
mean of its members' (clustered) features and its score the mean of their scores (equation 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rali_edge.errors import ConfigError, DataError

_SCORE_SLACK = 1e-3  # scores this close outside [low, high] are rounding, not bad data


@dataclass(frozen=True)
class CompressConfig:
    """Options of the compress stage; `[compress]` in the training TOML."""

    pca_dim: int = 512  # M
    num_buckets: int = 240  # N
    num_basis: int = 250  # K
    score_low: float = 1.0
    score_high: float = 5.0
    normalize: bool = True  # cluster L2-normalised PCA features (see module docstring)
    n_init: int = 3  # k-means restarts per bucket (fixed, so results are reproducible)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pca_dim", "num_buckets", "num_basis", "n_init"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"compress.{name} must be a positive integer, got {value!r}")
        if not self.score_high > self.score_low:
            raise ConfigError(f"compress.score_high ({self.score_high}) must exceed score_low ({self.score_low})")


class CompressResult(NamedTuple):
    """Unpacks as (pca_mean, pca_components, prototypes, proto_scores); float32 numpy arrays."""

    pca_mean: np.ndarray  # [D]
    pca_components: np.ndarray  # [M, D], orthonormal rows
    prototypes: np.ndarray  # [K, M]
    proto_scores: np.ndarray  # [K]


class CompressInfo(NamedTuple):
    bucket_of: np.ndarray  # [K] the bucket each prototype came from
    explained_variance_ratio: np.ndarray  # [M]


def fit_pca(embeddings: np.ndarray, pca_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [D], components [M, D], explained variance ratio [M]), exact and sign-fixed."""
    x = np.asarray(embeddings, dtype=np.float64)
    n, d = x.shape
    if pca_dim > min(n, d):
        raise ConfigError(
            f"compress.pca_dim ({pca_dim}) cannot exceed min(number of training embeddings, embedding size) "
            f"= min({n}, {d}); lower compress.pca_dim"
        )
    mean = x.mean(axis=0)
    centred = x - mean
    if n > d:  # eigenvectors of the D x D scatter matrix: same subspace as the SVD, several times faster
        var, vecs = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(var)[::-1]
        var, vt = np.clip(var[order], 0.0, None), vecs[:, order].T
    else:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        var = s**2
    vt = vt[:pca_dim]
    signs = np.sign(vt[np.arange(pca_dim), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    ratio = var[:pca_dim] / var.sum() if var.sum() > 0 else np.zeros(pca_dim)
    return mean, vt, ratio


def bucket_index(scores: np.ndarray, num_buckets: int, low: float, high: float) -> np.ndarray:
    """Bucket of each score: N equal bins on [low, high], the top edge in the last bin."""
    s = np.asarray(scores, dtype=np.float64)
    bad = (s < low - _SCORE_SLACK) | (s > high + _SCORE_SLACK) | ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"score {s[i]!r} (sample {i}) lies outside the bucket range [{low}, {high}]; "
            "scores must be gt_score_norm on that scale (or set compress.score_low/score_high)"
        )
    width = (high - low) / num_buckets
    return np.clip(np.floor((s - low) / width).astype(np.int64), 0, num_buckets - 1)


def allocate_clusters(capacity: np.ndarray, num_basis: int) -> np.ndarray:
    """Clusters per bucket (see the module docstring): >= 1 per non-empty bucket, proportional to
    population with largest remainders, never above a bucket's capacity (distinct members)."""
    capacity = np.asarray(capacity, dtype=np.int64)
    nonempty = capacity > 0
    n_nonempty = int(nonempty.sum())
    if num_basis < n_nonempty:
        raise ConfigError(
            f"compress.num_basis ({num_basis}) is smaller than the number of non-empty score buckets "
            f"({n_nonempty}); every non-empty bucket needs a basis vector: raise compress.num_basis to at "
            f"least {n_nonempty} or lower compress.num_buckets"
        )
    if num_basis > int(capacity.sum()):
        raise ConfigError(
            f"compress.num_basis ({num_basis}) exceeds the number of distinct training embeddings "
            f"({int(capacity.sum())}); lower compress.num_basis or train on more images"
        )
    alloc = nonempty.astype(np.int64)
    remaining = num_basis - n_nonempty
    while remaining > 0:  # one pass unless a bucket hits its capacity; then re-spread what is left
        room = capacity - alloc
        weights = np.where(room > 0, capacity, 0)
        # exact integer quotas: remaining * w_b / sum(w) = whole + rest / sum(w), so ties are true ties
        whole, rest = np.divmod(remaining * weights, weights.sum())
        give = np.minimum(whole, room)
        order = sorted(np.flatnonzero(give < room), key=lambda b: (-rest[b], b))
        give[order[: remaining - int(give.sum())]] += 1
        alloc += give
        remaining -= int(give.sum())
    return alloc


def _distinct_count(x: np.ndarray) -> int:
    return int(np.unique(x, axis=0).shape[0]) if len(x) else 0


def _cluster_bucket(x: np.ndarray, s: np.ndarray, k: int, n_init: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k centroids of one bucket (mean of members) and their scores (mean of member scores)."""
    if k == 1:
        return x.mean(axis=0, keepdims=True), np.array([s.mean()])
    if k == len(x):
        return x.copy(), s.copy()
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).labels_
    counts = np.bincount(labels, minlength=k)
    if (counts == 0).any():  # cannot happen with k <= distinct points; fail loudly if it does
        raise DataError(f"k-means left {(counts == 0).sum()} of {k} clusters empty in one score bucket")
    centroids = np.stack([x[labels == j].mean(axis=0) for j in range(k)])
    scores = np.array([s[labels == j].mean() for j in range(k)])
    return centroids, scores


def project(embeddings: np.ndarray, mean: np.ndarray, components: np.ndarray, normalize: bool) -> np.ndarray:
    """PCA coordinates as the head computes them at initialisation (pca_scale = 1)."""
    x = (np.asarray(embeddings, dtype=np.float64) - mean) @ components.T
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def compress(embeddings: np.ndarray, scores: np.ndarray, config: CompressConfig | None = None) -> CompressResult:
    """PCA + bucketed k-means on training embeddings [L, D] and their scores [L] (paper eqs. 1-2)."""
    return compress_with_info(embeddings, scores, config)[0]


def compress_with_info(embeddings: np.ndarray, scores: np.ndarray,
                       config: CompressConfig | None = None) -> tuple[CompressResult, CompressInfo]:
    """`compress`, plus which bucket each prototype came from and the PCA's explained variance."""
    config = config or CompressConfig()
    emb = np.asarray(embeddings)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if emb.ndim != 2 or len(emb) != len(sc) or len(sc) == 0:
        raise DataError(f"compress needs embeddings [L, D] and L scores, got {emb.shape} and {sc.shape}")
    if not np.isfinite(emb).all():
        raise DataError("compress: embeddings contain NaN or infinite values")
    mean, comps, ratio = fit_pca(emb, config.pca_dim)
    feats = project(emb, mean, comps, config.normalize)
    buckets = bucket_index(sc, config.num_buckets, config.score_low, config.score_high)
    members = [np.flatnonzero(buckets == b) for b in range(config.num_buckets)]
    capacity = np.array([_distinct_count(feats[m]) for m in members])
    alloc = allocate_clusters(capacity, config.num_basis)
    protos, proto_scores, bucket_of = [], [], []
    for b, k in enumerate(alloc):
        if k == 0:
            continue
        c, s = _cluster_bucket(feats[members[b]], sc[members[b]], int(k), config.n_init, config.seed + b)
        protos.append(c)
        proto_scores.append(s)
        bucket_of.append(np.full(int(k), b))
    result = CompressResult(
        pca_mean=mean.astype(np.float32),
        pca_components=comps.astype(np.float32),
        prototypes=np.concatenate(protos).astype(np.float32),
        proto_scores=np.concatenate(proto_scores).astype(np.float32),
    )
    return result, CompressInfo(bucket_of=np.concatenate(bucket_of), explained_variance_ratio=ratio.astype(np.float32))
