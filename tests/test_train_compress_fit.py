"""Compress (PCA + bucketed k-means) and fit (score definition) on synthetic embedding arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rali_edge.errors import ConfigError, DataError
from rali_edge.train.compress import (
    CompressConfig,
    allocate_clusters,
    bucket_index,
    compress,
    compress_with_info,
    project,
)
from rali_edge.train.fit import FitConfig, fit_head, head_from_compress


def _data(n=400, d=24, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(1.0, 5.0, n)
    direction = rng.normal(size=d)
    emb = rng.normal(size=(n, d)) + np.outer(scores - 3.0, direction)
    return emb.astype(np.float32), scores


def test_bucketed_kmeans_gives_exactly_k_covering_every_bucket_with_member_means():
    emb, scores = _data()
    cfg = CompressConfig(pca_dim=8, num_buckets=20, num_basis=37, seed=3)
    res, info = compress_with_info(emb, scores, cfg)
    assert res.prototypes.shape == (37, 8) and res.proto_scores.shape == (37,)
    buckets = bucket_index(scores, 20, 1.0, 5.0)
    assert set(info.bucket_of.tolist()) == set(buckets.tolist())  # every non-empty bucket has a centroid
    # centroid score = mean score of its members: rebuild memberships by nearest centroid in the bucket
    feats = project(emb, res.pca_mean.astype(np.float64), res.pca_components.astype(np.float64), True)
    for b in np.unique(buckets):
        members = np.flatnonzero(buckets == b)
        cents = np.flatnonzero(info.bucket_of == b)
        d2 = ((feats[members][:, None, :] - res.prototypes[cents][None]) ** 2).sum(-1)
        owner = cents[d2.argmin(1)]
        for c in cents:
            mine = members[owner == c]
            assert len(mine) > 0
            np.testing.assert_allclose(res.proto_scores[c], scores[mine].mean(), atol=1e-5)
            np.testing.assert_allclose(res.prototypes[c], feats[mine].mean(0), atol=1e-5)


def test_compress_is_deterministic_and_pca_is_orthonormal():
    emb, scores = _data()
    cfg = CompressConfig(pca_dim=6, num_buckets=10, num_basis=25, seed=1)
    a, b = compress(emb, scores, cfg), compress(emb, scores, cfg)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a.pca_components @ a.pca_components.T, np.eye(6), atol=1e-5)


def test_allocation_rule():
    # one each, the rest proportional (largest remainder), capped by capacity
    alloc = allocate_clusters(np.array([0, 10, 30, 60, 1]), 10)
    assert alloc.tolist() == [0, 2, 3, 4, 1]  # quotas .6 1.8 3.6 -> 0 1 3, remainders .6 .8 .6
    assert allocate_clusters(np.array([2, 100]), 50).tolist() == [2, 48]  # bucket 0 is full at 2
    with pytest.raises(ConfigError, match="num_basis"):
        allocate_clusters(np.array([3, 3, 3]), 2)  # fewer than the non-empty buckets
    with pytest.raises(ConfigError, match="exceeds"):
        allocate_clusters(np.array([3, 3]), 7)  # more than the samples


def test_compress_errors_name_the_option():
    emb, scores = _data(n=30)
    with pytest.raises(ConfigError, match="num_basis"):
        compress(emb, scores, CompressConfig(pca_dim=4, num_buckets=10, num_basis=31))
    with pytest.raises(ConfigError, match="pca_dim"):
        compress(emb, scores, CompressConfig(pca_dim=64, num_buckets=4, num_basis=8))
    with pytest.raises(DataError, match="outside"):
        compress(emb, np.full(30, 7.0), CompressConfig(pca_dim=4, num_buckets=4, num_basis=4))


def test_fitting_lowers_the_loss_and_keeps_the_best_head():
    torch.manual_seed(0)
    emb, scores = _data(n=600, d=24, seed=1)
    res = compress(emb[:500], scores[:500], CompressConfig(pca_dim=8, num_buckets=16, num_basis=24))
    pca_mean, pca_components, prototypes, proto_scores = res  # the documented 4-tuple
    head = head_from_compress(pca_mean, pca_components, prototypes, proto_scores)
    assert float(head.logit_scale.detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        before = float(torch.mean((head(torch.from_numpy(emb[500:])) - torch.from_numpy(scores[500:]).float()) ** 2))
    comps_before = head.pca_components.detach().clone()
    out = fit_head(head, emb[:500], scores[:500], emb[500:], scores[500:],
                   FitConfig(epochs=30, batch_size=64, patience=30), progress=False)
    with torch.no_grad():
        after = float(torch.mean((out.head(torch.from_numpy(emb[500:])) - torch.from_numpy(scores[500:]).float()) ** 2))
    assert after < 0.7 * before
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    assert out.best_val_mse == pytest.approx(min(r["val_mse"] for r in out.history))
    assert torch.equal(out.head.pca_components, comps_before)  # components frozen by default
    assert float(out.head.logit_scale) != pytest.approx(1 / 0.07)  # temperature trains
