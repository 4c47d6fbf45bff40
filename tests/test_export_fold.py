"""The folded graph equals the unfolded RaliScorer (float64, 1e-5) for both backbone kinds; the attention
rewrite inside it is exact (float64, 1e-6 relative)."""

from __future__ import annotations

import pytest
import torch

from rali_edge.export.fold import FoldedScorer, fold_scorer
from rali_edge.export.spec import ExportSpec
from rali_edge.model.tiny import make_random_scorer


def _normalize64(pixels: torch.Tensor, pre) -> torch.Tensor:
    mean = torch.tensor(pre.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float64).view(1, 3, 1, 1)
    return (pixels.to(torch.float64) / 255.0 - mean) / std


@pytest.mark.parametrize("library", ["open_clip", "hf"])
@pytest.mark.parametrize("input_kind", ["uint8", "unit", "normalized"])
def test_fold_equals_unfolded_float64(library, input_kind):
    torch.manual_seed(0)
    scorer, pre = make_random_scorer(library, seed=2)
    scorer = scorer.double()
    spec = ExportSpec(image_size=pre.image_size, input_kind=input_kind, with_embedding=True)
    folded = fold_scorer(scorer, pre, spec)
    pixels = torch.randint(0, 256, (5, 3, pre.image_size, pre.image_size), dtype=torch.uint8)
    x = _normalize64(pixels, pre)
    feed = {"uint8": pixels, "unit": pixels.double() / 255.0, "normalized": x}[input_kind]
    with torch.no_grad():
        feats = scorer.backbone.encode_image(x)
        want_score, want_emb = scorer.head(feats), scorer.head.project(feats)
        score, emb = folded(feed)
    assert score.dtype == torch.float64 and score.shape == (5,)
    assert torch.max(torch.abs(score - want_score)) < 1e-5
    assert torch.max(torch.abs(emb - want_emb)) < 1e-5
    # the scores differ between images, so the comparison is not trivially constant
    assert float(want_score.max() - want_score.min()) > 1e-6


@pytest.mark.parametrize("library", ["open_clip", "hf"])
def test_fold_attention_rewrite_is_exact_float64(library):
    """The batch-first attention fold_scorer puts in the tower (export/attention.py) changes nothing."""
    from rali_edge.export.attention import BatchFirstAttention

    scorer, pre = make_random_scorer(library, seed=5)
    scorer = scorer.double()
    spec = ExportSpec(image_size=pre.image_size, input_kind="normalized", with_embedding=True)
    folded = fold_scorer(scorer, pre, spec)
    plain = fold_scorer(scorer, pre, spec, attention_rewrite=False)
    assert any(isinstance(m, BatchFirstAttention) for m in folded.modules())
    assert not any(isinstance(m, BatchFirstAttention) for m in plain.modules())
    x = _normalize64(torch.randint(0, 256, (4, 3, pre.image_size, pre.image_size), dtype=torch.uint8), pre)
    with torch.no_grad():
        (score, emb), (want_score, want_emb) = folded(x), plain(x)
    assert torch.max(torch.abs(score - want_score)) <= 1e-6 * torch.max(torch.abs(want_score))
    assert torch.max(torch.abs(emb - want_emb)) <= 1e-6 * torch.max(torch.abs(want_emb))


@pytest.mark.parametrize("library", ["open_clip", "hf"])
def test_projection_and_pca_fold_into_one_linear(library):
    scorer, pre = make_random_scorer(library, seed=1)
    folded = fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size))
    assert isinstance(folded, FoldedScorer)
    names = dict(folded.trunk.named_modules())
    assert not any(n.endswith("visual_projection") for n in names)  # HF projection left the trunk
    assert getattr(folded.trunk, "proj", None) is None  # open_clip projection left the trunk
    with torch.no_grad():
        pooled = folded.trunk(torch.zeros(1, 3, pre.image_size, pre.image_size))
    assert pooled.shape == (1, folded.affine.in_features)
    assert folded.affine.out_features == scorer.head.pca_dim and folded.affine.bias is not None
    conv = folded.trunk.get_submodule(scorer.backbone.patch_embedding_name().removeprefix("vision_model.")
                                      if library == "open_clip" else "vision_model.embeddings.patch_embedding")
    assert conv.bias is not None  # mean folded into a bias (HF's patch conv had none)
    if library == "open_clip":
        assert scorer.backbone.image_encoder().proj is not None  # deep copy: the scorer keeps it


def test_fold_leaves_scorer_outputs_unchanged():
    scorer, pre = make_random_scorer("hf", seed=3)
    x = torch.randn(2, 3, pre.image_size, pre.image_size)
    with torch.no_grad():
        before = scorer(x)
        fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size))
        after = scorer(x)
    assert torch.equal(before, after)


def test_single_output_and_fixed_batch():
    scorer, pre = make_random_scorer("open_clip", seed=4)
    folded = fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size, batch=1))
    with torch.no_grad():
        out = folded(torch.zeros(1, 3, pre.image_size, pre.image_size, dtype=torch.uint8))
    assert isinstance(out, torch.Tensor) and out.shape == (1,)


@pytest.mark.parametrize("input_kind", ["uint8", "normalized"])
def test_resnet_tower_keeps_explicit_normalization(input_kind):
    """A ResNet stem conv is padded: normalisation cannot fold exactly, so the graph normalises first."""
    from rali_edge.export.fold import InputNormalization
    from rali_edge.model.tiny import tiny_resnet_backbone_config

    scorer, pre = make_random_scorer(seed=3, backbone_config=tiny_resnet_backbone_config(image_size=32, width=8))
    assert scorer.backbone.patch_embedding_name() is None
    scorer = scorer.double()
    folded = fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size, input_kind=input_kind))
    has_norm = any(isinstance(m, InputNormalization) for m in folded.modules())
    assert has_norm == (input_kind == "uint8")
    pixels = torch.randint(0, 256, (4, 3, pre.image_size, pre.image_size), dtype=torch.uint8)
    x = _normalize64(pixels, pre)
    with torch.no_grad():
        want = scorer.head(scorer.backbone.encode_image(x))
        got = folded(pixels if input_kind == "uint8" else x)
    assert torch.max(torch.abs(got - want)) < 1e-5
    assert float(want.max() - want.min()) > 1e-6
