"""RaliScorer / Scorer: official formula end to end, bundle round trip, inputs of every kind, bad files."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from rali_edge.bundle import load_bundle
from rali_edge.errors import BundleError, ConfigError, ImageLoadError
from rali_edge.model.preprocess import preprocess_images, uint8_batch
from rali_edge.model.scorer import RaliScorer, load_scorer
from rali_edge.model.tiny import make_random_bundle


def _photos():
    return [Image.fromarray(a) for a in (data.astronaut(), data.chelsea(), data.coffee())]


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def bundle_dir(request, tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp(request.param) / "b", library=request.param, seed=3)


def test_make_random_bundle_is_fast_and_deterministic(tmp_path):
    make_random_bundle(tmp_path / "warm")  # imports
    t0 = time.perf_counter()
    a = make_random_bundle(tmp_path / "a", seed=5)
    assert time.perf_counter() - t0 < 1.0
    b = make_random_bundle(tmp_path / "b", seed=5)
    ta, tb = load_bundle(a).tensors, load_bundle(b).tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert load_bundle(a).config.provenance.notes["random_weights"] is True


def test_bundle_layout_and_scores_equal_official_formula(bundle_dir, official_scores):
    bundle = load_bundle(bundle_dir)
    names = set(bundle.tensors)
    assert {f"head.{n}" for n in ("pca_mean", "pca_scale", "pca_components", "prototypes", "proto_scores",
                                  "logit_scale")} <= names
    assert all(n.startswith(("backbone.", "head.")) for n in names)
    scorer = load_scorer(bundle_dir)
    imgs = _photos()
    px = preprocess_images(imgs, bundle.config.preprocess)
    with torch.no_grad():
        feats = scorer.scorer.backbone.encode_image(px).double().numpy()
    h = {k: v.double().numpy() for k, v in bundle.head_tensors().items()}
    want = official_scores(feats, h["pca_mean"], h["pca_scale"], h["pca_components"], h["prototypes"],
                           h["proto_scores"], float(h["logit_scale"]))
    got = scorer.score(imgs)
    assert got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all((got >= 1) & (got <= 5)) and np.ptp(got) > 0


def test_round_trip_scores_identical(bundle_dir, tmp_path):
    scorer = load_scorer(bundle_dir)
    again_dir = scorer.scorer.save(tmp_path / "again", scorer.config.preprocess, scorer.config.provenance)
    again = load_scorer(again_dir)
    imgs = _photos()
    np.testing.assert_array_equal(again.score(imgs), scorer.score(imgs))
    np.testing.assert_array_equal(again.embed(imgs), scorer.embed(imgs))
    assert load_bundle(again_dir).config == scorer.config


def test_score_accepts_paths_pil_and_tensors(bundle_dir, tmp_path):
    scorer = load_scorer(bundle_dir)
    imgs = _photos()
    paths = []
    for i, img in enumerate(imgs):
        p = tmp_path / f"img{i}.png"
        img.save(p)
        paths.append(p)
    ref = scorer.score(imgs)
    np.testing.assert_allclose(scorer.score(paths), ref, atol=1e-6)
    np.testing.assert_allclose(scorer.score([str(p) for p in paths], batch_size=2), ref, atol=1e-6)
    np.testing.assert_allclose(scorer.score(paths[1]), ref[1:2], atol=1e-6)
    np.testing.assert_allclose(scorer.score(preprocess_images(imgs, scorer.preprocess), batch_size=1), ref, atol=1e-5)
    np.testing.assert_allclose(scorer.score(uint8_batch(imgs, scorer.preprocess)), ref, atol=1e-5)
    assert scorer.embed(imgs).shape == (3, scorer.config.backbone.embed_dim)
    assert scorer.score([]).shape == (0,)
    with pytest.raises(ConfigError, match="tensor"):
        scorer.score(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ImageLoadError):
        scorer.score(tmp_path / "missing.png")


def test_score_files_reports_bad_files_and_scores_the_rest(bundle_dir, tmp_path):
    scorer = load_scorer(bundle_dir)
    good = []
    for i, img in enumerate(_photos()):
        p = tmp_path / f"ok{i}.jpg"
        img.save(p, quality=95)
        good.append(p)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good[0].read_bytes()[:200])
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    order = [good[0], corrupt, good[1], tmp_path / "missing.png", not_image, good[2]]
    res = scorer.score_files(order, batch_size=2)
    assert res.paths == [str(p) for p in good]
    np.testing.assert_allclose(res.scores, scorer.score(good), atol=1e-6)
    assert sorted(f.path for f in res.failures) == sorted(str(p) for p in (corrupt, tmp_path / "missing.png", not_image))
    assert all(f.reason for f in res.failures)


def test_tampered_bundle_and_mismatched_backbone_refused(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    tensors = dict(bundle.tensors)
    name = next(n for n in tensors if n.startswith("backbone."))
    del tensors[name]
    from rali_edge.bundle import save_bundle

    broken = save_bundle(tmp_path / "broken", bundle.config, tensors)
    with pytest.raises(BundleError, match="backbone tensors"):
        load_scorer(broken)
    with pytest.raises(BundleError):
        RaliScorer.from_bundle(load_bundle(tmp_path / "nothing"))


@pytest.mark.gpu
def test_scores_on_cuda_match_cpu(bundle_dir):
    imgs = _photos()
    np.testing.assert_allclose(load_scorer(bundle_dir, device="cuda").score(imgs), load_scorer(bundle_dir).score(imgs),
                               atol=1e-4)
