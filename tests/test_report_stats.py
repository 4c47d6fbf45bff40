"""The statistics behind the drift reports: paired bootstrap intervals, ranking agreement, slices and
the worst images, on hand-made cases with known answers and on seeded random data."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from rali_edge.errors import ConfigError, DataError
from rali_edge.metrics import plcc, srcc
from rali_edge.report.bootstrap import (
    Bootstrap,
    PairedBootstrap,
    resample_indices,
    resample_ranks,
    rowwise_pearson,
)
from rali_edge.report.gallery import THUMB_LONG_SIDE, THUMB_MAX_BYTES, thumbnail_jpeg, worst_images
from rali_edge.report.images import ImageTable, record_fields
from rali_edge.report.ranking import flipped_pairs, overlap, ranking_stats
from rali_edge.report.slices import (
    SMALL_SLICE,
    check_slice_by,
    choose_fields,
    default_fields,
    field_values,
    quality_bins,
    slice_rows,
)


def _scores(n: int, seed: int = 0, noise: float = 0.4, drift: float = 0.05):
    """(gt, float scores, artifact scores): the artifact is the float model plus a small perturbation."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(1, 5, n)
    ref = gt + rng.normal(0, noise, n)
    return gt, ref, ref + rng.normal(0, drift, n)


def _width(interval) -> float:
    return interval[1] - interval[0]


# ---------------------------------------------------------------- bootstrap


def test_vectorised_pieces_match_scipy():
    from scipy.stats import pearsonr, rankdata

    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=40), 1)       # rounded: ties, as resamples always have
    idx = resample_indices(40, 50, 7)
    np.testing.assert_array_equal(resample_ranks(values, idx), rankdata(values[idx], axis=1))
    x, y = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    expected = [pearsonr(a, b)[0] for a, b in zip(x, y)]
    np.testing.assert_allclose(rowwise_pearson(x, y), expected, rtol=1e-12)
    x[2] = 1.0                                       # a constant resample: undefined, not a number
    assert np.isnan(rowwise_pearson(x, y)[2])


def test_intervals_contain_the_point_estimates():
    gt, ref, got = _scores(300)
    boot = PairedBootstrap(ref, gt)
    found = boot.compare(got)
    assert found["valid"] == 1000
    points = {"plcc": plcc(got, gt), "srcc": srcc(got, gt), "dplcc": plcc(got, gt) - plcc(ref, gt),
              "dsrcc": srcc(got, gt) - srcc(ref, gt)}
    for name, value in points.items():
        lo, hi = found[f"{name}_ci"]
        assert lo < value < hi, (name, lo, value, hi)
    lo, hi = boot.reference()["plcc_ci"]
    assert lo < plcc(ref, gt) < hi


def test_intervals_shrink_with_more_images():
    small, large = (PairedBootstrap(ref, gt).compare(got) for gt, ref, got in (_scores(100), _scores(1600)))
    for key in ("plcc_ci", "srcc_ci", "dplcc_ci", "dsrcc_ci"):
        # 16x the images: about a quarter of the width (1 / sqrt(16)); at least clearly narrower
        assert _width(large[key]) < 0.6 * _width(small[key]), key


def test_same_seed_same_intervals_another_seed_others():
    gt, ref, got = _scores(200)
    first = PairedBootstrap(ref, gt, Bootstrap(seed=0)).compare(got)
    again = PairedBootstrap(ref.copy(), gt.copy(), Bootstrap(seed=0)).compare(got.copy())
    other = PairedBootstrap(ref, gt, Bootstrap(seed=1)).compare(got)
    assert first == again
    assert all(first[k] != other[k] for k in ("plcc_ci", "srcc_ci", "dplcc_ci", "dsrcc_ci"))


def test_the_bootstrap_is_paired():
    # An artifact that equals the float model has a change interval of exactly zero: every resample
    # compares the two on the same images.
    gt, ref, _ = _scores(80)
    found = PairedBootstrap(ref, gt).compare(ref.copy())
    assert found["dplcc_ci"] == (0.0, 0.0) and found["dsrcc_ci"] == (0.0, 0.0)


def test_bootstrap_refuses_bad_settings_and_too_few_images():
    with pytest.raises(ConfigError, match="resamples"):
        Bootstrap(resamples=5)
    with pytest.raises(ConfigError, match="level"):
        Bootstrap(level=1.0)
    with pytest.raises(ConfigError, match="at least 3"):
        PairedBootstrap([1.0, 2.0], [1.0, 2.0])


def test_constant_scores_give_no_interval():
    gt, ref, _ = _scores(50)
    found = PairedBootstrap(ref, gt).compare(np.full(50, 3.0))
    assert found["plcc_ci"] is None and found["dplcc_ci"] is None and found["valid"] == 0


# ---------------------------------------------------------------- ranking


def test_ranking_of_the_same_order():
    x = np.arange(20, dtype=float)
    stats = ranking_stats(x, 2 * x + 1)               # any increasing map keeps the order
    assert stats.kendall_tau == pytest.approx(1.0)
    assert (stats.flipped_pairs, stats.flip_share, stats.pairs) == (0, 0.0, 190)
    assert stats.k == 2 and stats.top_k_overlap == 1.0 and stats.bottom_k_overlap == 1.0


def test_ranking_of_the_reversed_order():
    x = np.arange(20, dtype=float)
    stats = ranking_stats(x, -x)
    assert stats.kendall_tau == pytest.approx(-1.0)
    assert stats.flipped_pairs == stats.pairs == 190 and stats.flip_share == 1.0
    assert stats.top_k_overlap == 0.0 and stats.bottom_k_overlap == 0.0


def test_one_swapped_pair():
    x = np.arange(10, dtype=float)
    y = x.copy()
    y[[8, 9]] = y[[9, 8]]                               # the two best images swap places
    stats = ranking_stats(x, y, fraction=0.2)           # k = 2: the top two are still the top two
    assert stats.flipped_pairs == 1 and stats.flip_share == pytest.approx(1 / 45)
    assert stats.kendall_tau == pytest.approx(1 - 2 / 45)   # no ties: tau = 1 - 2 * flip share
    assert stats.top_k_overlap == 1.0
    assert ranking_stats(x, y, fraction=0.1).top_k_overlap == 0.0   # k = 1: the best is another image


def test_flipped_pairs_are_counted_exactly_with_ties():
    rng = np.random.default_rng(5)
    for n in (2, 7, 60):
        x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
        brute = sum((x[i] - x[j]) * (y[i] - y[j]) < 0 for i, j in itertools.combinations(range(n), 2))
        assert flipped_pairs(x, y) == brute


def test_overlap_and_undefined_ranking():
    assert overlap([1, 2, 3, 4], [4, 3, 2, 1], k=2) == 0.0
    with pytest.raises(ConfigError, match="k=5"):
        overlap([1, 2, 3, 4], [1, 2, 3, 4], k=5)
    with pytest.raises(DataError, match="constant"):
        ranking_stats([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])


# ---------------------------------------------------------------- slices


def _table(n: int = 60, gt=None) -> ImageTable:
    classes = ["blur", "noise", "null"]
    return ImageTable(image=[f"{i}.png" for i in range(n)], path=[f"/nowhere/{i}.png" for i in range(n)],
                      dataset=["a" if i < n // 2 else "b" for i in range(n)], gt=gt,
                      fields={"distortion_class": [classes[i % 3] for i in range(n)],
                              "id": [f"x{i}" for i in range(n)],
                              "level": [str(i % 2) for i in range(n)]})


def test_quality_bins_are_quintiles_with_their_ranges():
    gt = np.arange(1, 11, dtype=float)
    labels = quality_bins(gt)
    assert labels[:2] == ["Q1 1.00-2.00"] * 2 and labels[-1] == "Q5 9.00-10.00"
    assert len(set(labels)) == 5


def test_slices_have_counts_small_flags_and_the_subset_figures():
    gt, ref, got = _scores(60, seed=2)
    table = _table(60, gt)
    values = field_values(table)
    assert set(values) == {"distortion_class", "id", "level", "dataset", "gt_quintile"}
    fields = default_fields(values)
    assert fields == ["distortion_class", "level", "dataset", "gt_quintile"]   # `id`: one image per value
    (rows,) = slice_rows(ref, [got], table, fields)
    by = {(r.field, r.value): r for r in rows}
    assert {v for f, v in by if f == "distortion_class"} == {"blur", "noise", "null"}
    blur = by["distortion_class", "blur"]
    mask = np.arange(60) % 3 == 0
    assert blur.n == 20 and not blur.small
    assert blur.plcc == pytest.approx(plcc(got[mask], gt[mask]))
    assert blur.dplcc == pytest.approx(plcc(got[mask], gt[mask]) - plcc(ref[mask], gt[mask]))
    assert blur.dplcc_ci[0] <= blur.dplcc <= blur.dplcc_ci[1]
    assert blur.mean_change == pytest.approx(float(np.mean(got[mask] - ref[mask])))
    quintiles = [r for r in rows if r.field == "gt_quintile"]
    assert sum(r.n for r in quintiles) == 60 and all(r.small for r in quintiles)   # 12 < SMALL_SLICE
    assert SMALL_SLICE == 20


def test_artifacts_sliced_together_get_the_figures_they_get_alone():
    # Each slice's float figures and resamples are shared by every artifact: sharing changes nothing.
    gt, ref, got = _scores(60, seed=4)
    other = got + np.random.default_rng(9).normal(0, 0.1, 60)
    table = _table(60, gt)
    together = slice_rows(ref, [got, other], table, ["distortion_class", "gt_quintile"])
    alone = [slice_rows(ref, [s], table, ["distortion_class", "gt_quintile"])[0] for s in (got, other)]
    assert together == alone and together[0] != together[1]


def test_slices_without_ground_truth_still_show_the_change():
    _, ref, got = _scores(30)
    (rows,) = slice_rows(ref, [got], _table(30), ["level"])
    assert [r.value for r in rows] == ["0", "1"]
    assert all(r.plcc is None and r.reason == "no ground truth" and r.mean_abs_change > 0 for r in rows)


def test_unknown_slice_field_names_the_fields_that_exist(tmp_path):
    values = field_values(_table(10, np.linspace(1, 5, 10)))
    with pytest.raises(ConfigError, match="fields that exist: dataset, distortion_class, gt_quintile, id, level"):
        choose_fields(("distortoin_class",), values)
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps([{"image": f"{i}.png", "gt_score_norm": 2.0, "severity": "slight", "std": 0.1}
                                for i in range(3)]))
    assert check_slice_by("severity, dataset", [meta], tmp_path) == ("severity", "dataset")
    with pytest.raises(ConfigError, match="fields that exist: dataset, gt_quintile, severity"):
        check_slice_by(["std"], [meta], tmp_path)          # a float field is not a slice field


def test_record_fields_keep_categorical_fields_only(tmp_path):
    from rali_edge.data.meta import read_meta

    meta = tmp_path / "m.json"
    meta.write_text(json.dumps([{"image": "a.png", "source": "s1", "level": 1, "std": 0.5},
                                {"image": "b.png", "distortion_class": "blur", "level": 2, "std": 0.25}]))
    fields = record_fields(read_meta(meta, tmp_path))
    assert fields == {"distortion_class": [None, "blur"], "source": ["s1", None], "level": ["1", "2"]}


# ---------------------------------------------------------------- worst images


def test_worst_images_are_the_largest_changes():
    gt, ref, _ = _scores(10)
    got = ref.copy()
    got[3] += 0.5
    got[7] -= 0.9
    got[1] += 0.1
    worst = worst_images(ref, got, _table(10, gt), n=2)
    assert [(w.rank, w.image) for w in worst] == [(1, "7.png"), (2, "3.png")]
    assert worst[0].change == pytest.approx(-0.9) and worst[0].gt == pytest.approx(gt[7])


def test_thumbnails_stay_within_their_bound(tmp_path):
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)   # worst case for JPEG
    Image.fromarray(noise).save(tmp_path / "noise.png")
    data = thumbnail_jpeg(str(tmp_path / "noise.png"))
    assert data[:2] == b"\xff\xd8" and len(data) <= THUMB_MAX_BYTES
    import io

    assert max(Image.open(io.BytesIO(data)).size) <= THUMB_LONG_SIDE


def test_image_table_pools_meta_files_and_matches_their_records(tmp_path):
    from rali_edge.evaluation.evalset import EvalSet
    from rali_edge.report.images import image_table

    metas = []
    for name, classes in (("koniq", ["blur", "noise", "null"]), ("spaq", ["darken", "blur", "noise", "null"])):
        items = [{"image": f"{name}/{i}.png", "gt_score_norm": 1.0 + i, "distortion_class": c, "std": 0.1}
                 for i, c in enumerate(classes)]
        (tmp_path / f"{name}.json").write_text(json.dumps(items))
        metas.append(tmp_path / f"{name}.json")

    def evalset(name, kept):   # what the loader keeps: the readable images, in meta order
        paths = [str(tmp_path / f"{name}/{i}.png") for i in kept]
        return EvalSet(name, paths, [f"{name}/{i}.png" for i in kept], np.zeros((len(kept), 3, 1, 1), np.uint8),
                       np.array([1.0 + i for i in kept]))

    table = image_table([evalset("koniq", [0, 1, 2]), evalset("spaq", [0, 2, 3])], metas, tmp_path)  # spaq/1 unreadable
    assert table.dataset == ["koniq"] * 3 + ["spaq"] * 3
    assert table.fields == {"distortion_class": ["blur", "noise", "null", "darken", "noise", "null"]}
    np.testing.assert_array_equal(table.gt, [1, 2, 3, 1, 3, 4])
    assert "dataset" in default_fields(field_values(table))      # several meta files: a slice per file
    with pytest.raises(DataError, match="spaq"):
        image_table([evalset("koniq", [0, 1, 2]), evalset("spaq", [3, 0])], metas, tmp_path)   # out of order


def test_large_sets_go_through_in_blocks_with_the_same_intervals(monkeypatch):
    # Blocks bound the memory; the figures come from the same kind of draw (only the blocks' seeds differ).
    from rali_edge.report import bootstrap

    gt, ref, got = _scores(400, seed=6)
    whole = PairedBootstrap(ref, gt).compare(got)
    monkeypatch.setattr(bootstrap, "BLOCK_ENTRIES", 400 * 150)       # 7 blocks of <= 150 resamples
    bootstrap.resample_indices.cache_clear()
    assert len(bootstrap.resample_blocks(400, 1000)) == 7
    blocked = PairedBootstrap(ref, gt).compare(got)
    assert blocked["valid"] == 1000 and blocked == PairedBootstrap(ref, gt).compare(got)   # reproducible
    for key in ("plcc_ci", "dplcc_ci", "srcc_ci", "dsrcc_ci"):
        assert blocked[key] != whole[key]
        assert abs(_width(blocked[key]) - _width(whole[key])) < 0.25 * _width(whole[key]), key
    bootstrap.resample_indices.cache_clear()


def test_drift_rows_share_the_float_bootstrap_and_get_what_they_get_alone(monkeypatch):
    # The reference's resamples are drawn once per dataset for every artifact compared with it; each
    # artifact's intervals are the ones it gets from a bootstrap drawn for it alone.
    import rali_edge.report.bootstrap as bootstrap_module
    from rali_edge.evaluation.evalset import EvalSet
    from rali_edge.evaluation.measure import Measurement, drift_rows
    from rali_edge.report.drift import OK, REFERENCE, drift_row

    gt, ref, got = _scores(80, seed=5)
    other = got + np.random.default_rng(3).normal(0, 0.1, 80)
    sets = [EvalSet(name, [], [], np.zeros((80, 3, 1, 1), np.uint8), gt) for name in ("a", "b")]
    reference = Measurement(Path("float"), REFERENCE, {s.dataset: {"score": ref} for s in sets})
    made = []
    monkeypatch.setattr(bootstrap_module.PairedBootstrap, "__init__",
                        _counting(bootstrap_module.PairedBootstrap.__init__, made))
    measured = [Measurement(Path(f"art{i}"), OK, {s.dataset: {"score": scores} for s in sets})
                for i, scores in enumerate((got, other))]
    shared = [drift_rows(m, sets, reference) for m in measured]
    assert len(made) == 2   # one per dataset, not one per (artifact, dataset)
    alone = [drift_row(f"art{i}", "a", gt, {"score": ref}, {"score": scores}) for i, scores in enumerate((got, other))]
    assert [rows[0] for rows in shared] == alone and alone[0].dplcc_ci != alone[1].dplcc_ci


def _counting(init, made: list):
    def counted(self, *args, **kwargs):
        made.append(1)
        init(self, *args, **kwargs)
    return counted
