"""Calibration sets: deterministic, stratified over score buckets, preprocessed like the graph, cached."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rali_edge.bundle import PreprocessConfig
from rali_edge.calibration import build_calibration_set
from rali_edge.calibration.sets import SmallCalibrationSetWarning, select_indices
from rali_edge.errors import ConfigError

PRE = PreprocessConfig(image_size=16, resize=20)


def _dataset(root: Path, scores: list[float | None]) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    items = []
    for i, s in enumerate(scores):
        arr = rng.integers(0, 256, (24 + i % 5, 30, 3), dtype=np.uint8)  # odd sizes: resize + crop matter
        Image.fromarray(arr).save(root / "img" / f"{i}.png")
        item = {"image": f"img/{i}.png"}
        if s is not None:
            item.update(gt_score=s, gt_score_norm=s)
        items.append(item)
    meta = root / "meta.json"
    meta.write_text(json.dumps(items))
    return meta


def test_selection_is_deterministic_for_a_seed():
    scores = list(np.random.default_rng(1).uniform(1, 5, 500))
    a, method = select_indices(scores, 100, seed=3, buckets=10)
    b, _ = select_indices(scores, 100, seed=3, buckets=10)
    c, _ = select_indices(scores, 100, seed=4, buckets=10)
    assert method == "stratified" and len(a) == 100 and len(set(a)) == 100
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_stratification_follows_bucket_population_and_keeps_rare_buckets():
    # 900 scores near 1-2, 90 in the middle, 10 near 5: a uniform draw of 50 would often miss the top.
    rng = np.random.default_rng(0)
    scores = list(np.concatenate([rng.uniform(1, 1.4, 900), rng.uniform(2.6, 3.0, 90), rng.uniform(4.6, 5, 10)]))
    idx, _ = select_indices(scores, 50, seed=0, buckets=10)
    chosen = np.asarray(scores)[idx]
    low, mid, high = (chosen < 2).sum(), ((chosen > 2.5) & (chosen < 3.1)).sum(), (chosen > 4.5).sum()
    # Proportional would be 45 / 4.5 / 0.5: each non-empty bucket gets one first, the rest by population.
    assert low + mid + high == 50 and high == 1
    assert abs(low - 45) <= 2 and abs(mid - 5) <= 1


def test_unlabelled_records_are_drawn_uniformly():
    idx, method = select_indices([None] * 50, 10, seed=0, buckets=10)
    assert method == "random" and len(set(idx)) == 10


def test_set_from_meta_is_preprocessed_like_the_graph_and_has_provenance(tmp_path):
    from rali_edge.data.images import load_image
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    meta = _dataset(tmp_path, list(np.linspace(1, 5, 40)))
    with pytest.warns(SmallCalibrationSetWarning):
        cal = build_calibration_set(meta, PRE, size=12, seed=0, image_root=tmp_path)
    assert cal.pixels.dtype == np.uint8 and cal.pixels.shape == (12, 3, 16, 16)
    prov = cal.provenance
    assert prov["count"] == 12 and prov["seed"] == 0 and prov["method"] == "stratified"
    assert prov["sources"] == [str(meta.resolve())] and prov["preprocess"]["image_size"] == 16
    assert any("recommended" in n for n in cal.notes)
    first = prov["images"][0]
    want = to_uint8_tensor(resize_and_crop(load_image(tmp_path / first), PRE)).numpy()
    assert np.array_equal(cal.pixels[0], want)
    assert cal.scores is not None and len(cal.scores) == 12


def test_cache_is_reused_and_invalidated_by_changed_inputs(tmp_path, monkeypatch):
    import rali_edge.calibration.sets as sets

    meta = _dataset(tmp_path / "d", [None] * 10)
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationSetWarning)
        a = build_calibration_set(meta, PRE, size=5, seed=1, cache_dir=cache, image_root=tmp_path / "d")
        assert len(list(cache.glob("*.npz"))) == 1
        calls = []
        real = sets._preprocess_images
        monkeypatch.setattr(sets, "_preprocess_images", lambda *a_, **k: calls.append(1) or real(*a_, **k))
        b = build_calibration_set(meta, PRE, size=5, seed=1, cache_dir=cache, image_root=tmp_path / "d")
        assert calls == [] and np.array_equal(a.pixels, b.pixels) and a.provenance == b.provenance
        build_calibration_set(meta, PRE, size=5, seed=2, cache_dir=cache, image_root=tmp_path / "d")
        assert calls == [1] and len(list(cache.glob("*.npz"))) == 2


def test_folder_source_and_bad_arguments(tmp_path):
    _dataset(tmp_path, [None] * 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationSetWarning)
        cal = build_calibration_set(tmp_path / "img", PRE, size=100, seed=0)
    assert len(cal) == 6 and cal.provenance["method"] == "all" and cal.scores is None
    with pytest.raises(ConfigError):
        build_calibration_set(tmp_path / "img", PRE, size=0)
    with pytest.raises(ConfigError, match="image_root"):
        build_calibration_set(tmp_path / "meta.json", PRE)
