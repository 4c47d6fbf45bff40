"""RaliHead equals the official RALI formula (REFERENCE section 1), written out in numpy (`official_scores`,
tests/_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rali_edge.errors import BundleError
from rali_edge.model.head import HEAD_TENSORS, RaliHead


def _random_head_tensors(d=24, m=10, k=7, seed=0):
    g = np.random.default_rng(seed)
    return dict(
        pca_mean=g.normal(size=d), pca_scale=g.normal(size=d),  # negative entries: abs() matters
        pca_components=g.normal(size=(m, d)), prototypes=g.normal(size=(k, m)),
        proto_scores=g.uniform(1, 5, size=k), logit_scale=np.float64(14.3),
    )


@pytest.mark.parametrize("logit_scale", [1 / 0.07, 3.0, -2.0])
def test_head_equals_official_formula(logit_scale, official_scores):
    t = _random_head_tensors()
    t["logit_scale"] = np.float64(logit_scale)  # negative: the clamp(min=1e-6) path
    feats = np.random.default_rng(1).normal(size=(9, 24))
    head = RaliHead.from_tensors({k: torch.tensor(v, dtype=torch.float32) for k, v in t.items()})
    got = head(torch.tensor(feats, dtype=torch.float32)).detach().numpy()
    want = official_scores(feats, t["pca_mean"], t["pca_scale"], t["pca_components"], t["prototypes"],
                           t["proto_scores"], float(t["logit_scale"]))
    assert got.shape == (9,)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(got) > 0 or logit_scale < 0  # scores depend on the image unless the softmax is flat


def test_head_scores_stay_in_basis_range_and_project_is_unit():
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in _random_head_tensors().items()}
    head = RaliHead.from_tensors(t)
    feats = torch.randn(16, 24)
    s = head(feats).detach()
    assert float(s.min()) >= float(t["proto_scores"].min()) - 1e-5
    assert float(s.max()) <= float(t["proto_scores"].max()) + 1e-5
    torch.testing.assert_close(head.project(feats).norm(dim=1), torch.ones(16))
    assert head.temperature() == pytest.approx(1 / 14.3, rel=1e-6)


def test_head_round_trip_and_buffers():
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in _random_head_tensors().items()}
    head = RaliHead.from_tensors(t)
    assert set(head.tensors()) == set(HEAD_TENSORS)
    assert "pca_mean" in dict(head.named_buffers())
    assert "pca_mean" not in dict(head.named_parameters())
    again = RaliHead.from_tensors(head.tensors())
    x = torch.randn(3, 24)
    torch.testing.assert_close(again(x), head(x), rtol=0, atol=0)


def test_trainable_selects_components():
    head = RaliHead.from_tensors({k: torch.tensor(v, dtype=torch.float32) for k, v in _random_head_tensors().items()})
    names = {id(p): n for n, p in head.named_parameters()}
    assert {names[id(p)] for p in head.trainable(components=False)} == {
        "pca_scale", "prototypes", "proto_scores", "logit_scale"}
    assert not head.pca_components.requires_grad
    assert "pca_components" in {names[id(p)] for p in head.trainable(components=True)}
    assert head.pca_components.requires_grad


def test_head_rejects_bad_tensors():
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in _random_head_tensors().items()}
    with pytest.raises(BundleError, match="missing"):
        RaliHead.from_tensors({k: v for k, v in t.items() if k != "prototypes"})
    t["prototypes"] = torch.randn(7, 11)
    with pytest.raises(BundleError, match="prototypes"):
        RaliHead.from_tensors(t)
