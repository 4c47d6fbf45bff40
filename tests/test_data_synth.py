"""Synthetic IQA dataset: determinism, split without leakage, coverage, score monotonicity, CLI."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.data.distortions import DISTORTIONS, MAX_JITTER, SEVERITY_NAMES
from rali_edge.data.images import load_image
from rali_edge.data.meta import DISTORTION_CLASSES, SEVERITIES, read_metas
from rali_edge.data.synth import BASE_IMAGES, TRAIN_ONLY_IMAGES, plan_sources, synthesize
from rali_edge.errors import ConfigError

SMALL = dict(sources=4, size=32, progress=False)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth") / "ds", seed=0, **SMALL)


def _records(ds) -> list[dict]:
    return json.loads(ds.train_meta.read_text()) + json.loads(ds.test_meta.read_text())


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
    again = synthesize(tmp_path / "again", seed=0, **SMALL)
    first, second = _tree_hashes(small.root), _tree_hashes(again.root)
    assert len(first) == 4 * 56 + 3  # images + two metas + synth.json
    assert first == second
    other = _tree_hashes(synthesize(tmp_path / "other", seed=1, **SMALL).root)
    assert other["metas/train.json"] != first["metas/train.json"]
    common = set(first) & set(other)
    assert sum(first[k] != other[k] for k in common) > len(common) // 2


def test_layout_counts_and_fields(small):
    records = _records(small)
    assert small.n_train + small.n_test == len(records) == 4 * 56
    assert small.n_train > 0 and small.n_test > 0
    for r in records:
        assert set(r) >= {"image", "gt_score", "gt_score_norm", "distortion_class", "severity", "source", "distortion"}
        assert not Path(r["image"]).is_absolute() and (small.root / r["image"]).is_file()
        assert 1.0 <= r["gt_score_norm"] <= 5.0
        assert r["gt_score"] == pytest.approx(25 * (r["gt_score_norm"] - 1), abs=1e-3)
        assert r["distortion_class"] in DISTORTION_CLASSES and r["severity"] in SEVERITIES
        if r["distortion"] == "pristine":
            assert (r["distortion_class"], r["severity"]) == ("null", "null") and r["gt_score_norm"] > 4.7
        else:
            assert r["distortion_class"] == DISTORTIONS[r["distortion"]].q_class
            assert r["severity"] == SEVERITY_NAMES[r["level"] - 1]
    img = load_image(small.root / records[0]["image"])
    assert img.size == (32, 32)


def test_every_type_and_level_per_source(small):
    seen = defaultdict(set)
    for r in _records(small):
        seen[r["source"]].add((r["distortion"], r["level"]))
    expected = {("pristine", 0)} | {(d, lv) for d in DISTORTIONS for lv in range(1, 6)}
    assert len(DISTORTIONS) >= 11
    assert len(seen) == 4 and all(s == expected for s in seen.values())


def test_scores_strictly_monotone_and_jittered(small):
    by = defaultdict(dict)
    pristine = {}
    for r in _records(small):
        if r["distortion"] == "pristine":
            pristine[r["source"]] = r["gt_score_norm"]
        else:
            by[(r["source"], r["distortion"])][r["level"]] = r["gt_score_norm"]
    for (source, _), levels in by.items():
        scores = [pristine[source]] + [levels[lv] for lv in range(1, 6)]
        assert all(a > b for a, b in zip(scores, scores[1:])), scores
    # jitter: not a discrete set of table values, but within MAX_JITTER of them
    for (source, name), levels in by.items():
        for lv, s in levels.items():
            assert abs(s - DISTORTIONS[name].scores[lv - 1]) <= MAX_JITTER + 1e-9
    assert len({s for levels in by.values() for s in levels.values()}) > 0.9 * sum(len(v) for v in by.values())


def test_distortions_change_the_pixels(small):
    for source in {r["source"] for r in _records(small)}:
        clean = np.asarray(load_image(small.root / "images" / source / "pristine.png"), dtype=np.float64)
        for name in DISTORTIONS:
            worst = np.asarray(load_image(small.root / "images" / source / f"{name}_5.png"), dtype=np.float64)
            assert np.abs(worst - clean).mean() > 1.0, (source, name)


def test_split_by_source_without_leakage(small):
    train = {r["source"] for r in json.loads(small.train_meta.read_text())}
    test = {r["source"] for r in json.loads(small.test_meta.read_text())}
    assert train and test and not train & test
    # With more sources than base images, crops of one base picture stay on one side.
    n = 2 * len(BASE_IMAGES) + 3
    for seed in range(5):
        plan = plan_sources(seed, n)
        split_of_base = defaultdict(set)
        for s in plan:
            split_of_base[s.base.name].add(s.split)
        assert all(len(v) == 1 for v in split_of_base.values())
        n_test_bases = sum(v == {"test"} for v in split_of_base.values())
        assert n_test_bases == round(0.25 * len(BASE_IMAGES))
        assert len({s.name for s in plan}) == n


def test_readable_by_meta_reader(small):
    metas = read_metas([small.train_meta, small.test_meta], small.root)
    assert {k: len(v) for k, v in metas.items()} == {"train": small.n_train, "test": small.n_test}
    rec = metas["train"][0]
    assert rec.score is not None and rec.source and rec.extras["distortion"]


def test_overwrite_rules_and_bad_arguments(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        synthesize(foreign, **SMALL)
    assert (foreign / "thesis.txt").read_text() == "precious"
    target = tmp_path / "ds"
    synthesize(target, seed=0, sources=2, size=16, progress=False)
    ds = synthesize(target, seed=3, sources=3, size=16, progress=False)  # replaces an earlier synth output
    assert ds.n_train + ds.n_test == 3 * 56
    assert json.loads((target / "synth.json").read_text())["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    for kwargs in (dict(sources=1), dict(size=8), dict(seed=-1), dict(sources=2.5)):
        with pytest.raises(ConfigError):
            synthesize(tmp_path / "x", progress=False, **kwargs)


def test_cli_synth(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--seed", "2", "--sources", "3", "--size", "16"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "train:" in result.output and "test:" in result.output
    assert (out / "metas" / "train.json").is_file() and (out / "metas" / "test.json").is_file()
    leaves = tmp_path / "leaves"
    result = runner.invoke(app, ["data", "synth", "--out", str(leaves), "--sources", "2", "--size", "16",
                                 "--procedural", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((leaves / "synth.json").read_text())["procedural"] == 2
    assert (leaves / "images" / "leaves_1" / "pristine.png").is_file()
    photos = tmp_path / "photos"
    result = runner.invoke(app, ["data", "synth", "--out", str(photos), "--sources", "2", "--size", "16",
                                 "--train-only-crops", "1"])
    assert result.exit_code == 0, result.output
    assert (photos / "images" / "luispedro_0" / "pristine.png").is_file()
    clash = tmp_path / "file.txt"
    clash.write_text("x")
    result = runner.invoke(app, ["data", "synth", "--out", str(clash), "--sources", "2", "--size", "16"])
    assert result.exit_code == 2 and "not a folder" in result.output


@pytest.mark.slow
def test_default_dataset(tmp_path):
    ds = synthesize(tmp_path / "default", progress=False)
    assert ds.n_train + ds.n_test == 24 * 56
    assert 0.15 < ds.n_test / (ds.n_train + ds.n_test) < 0.35


@pytest.mark.parametrize("size", [32, 96])
def test_each_distortion_grows_with_level(small, size):
    source = json.loads(small.train_meta.read_text())[0]["source"]
    clean_img = load_image(small.root / "images" / source / "pristine.png").resize((size, size))
    clean = np.asarray(clean_img)
    for name, dist in DISTORTIONS.items():
        change = [np.abs(dist.apply(clean, lv, np.random.default_rng(0)).astype(np.float64) - clean).mean()
                  for lv in range(1, 6)]
        assert change[0] > 0 and all(a < b for a, b in zip(change, change[1:])), (name, change)


def test_procedural_sources_train_only_deterministic(tmp_path):
    kwargs = dict(sources=2, size=32, progress=False, procedural=3)
    ds = synthesize(tmp_path / "a", seed=0, **kwargs)
    train = {r["source"] for r in json.loads(ds.train_meta.read_text())}
    test = {r["source"] for r in json.loads(ds.test_meta.read_text())}
    leaves = {f"leaves_{j}" for j in range(3)}
    assert leaves <= train and not leaves & test and test  # test stays photographs only
    assert ds.n_train + ds.n_test == 5 * 56
    info = json.loads((ds.root / "synth.json").read_text())
    assert info["procedural"] == 3 and info["base_images"]["leaves_0"].startswith("procedural")
    again = synthesize(tmp_path / "b", seed=0, **kwargs)
    assert _tree_hashes(ds.root) == _tree_hashes(again.root)
    # Different pictures, not one repeated, and every distortion still changes them.
    pristine = [np.asarray(load_image(ds.root / "images" / name / "pristine.png"), dtype=np.float64) for name in sorted(leaves)]
    assert np.abs(pristine[0] - pristine[1]).mean() > 10 and np.abs(pristine[1] - pristine[2]).mean() > 10
    for name in DISTORTIONS:
        worst = np.asarray(load_image(ds.root / "images" / "leaves_0" / f"{name}_5.png"), dtype=np.float64)
        assert np.abs(worst - pristine[0]).mean() > 1.0, name
    with pytest.raises(ConfigError, match="procedural"):
        synthesize(tmp_path / "x", sources=2, size=16, progress=False, procedural=-1)


def test_dead_leaves_look_like_pictures():
    from rali_edge.data.procedural import dead_leaves

    img = dead_leaves(64, np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert np.array_equal(img, dead_leaves(64, np.random.default_rng(0)))
    grey = img.astype(np.float64).mean(-1)
    assert 30 < grey.mean() < 225 and grey.std() > 15  # exposed and with contrast, not flat
    # Sharp edges (a pristine source must not look blurred): strong neighbour differences exist.
    assert np.abs(np.diff(grey, axis=1)).max() > 40


def test_train_only_photographs_never_test_and_change_nothing_else(tmp_path):
    kwargs = dict(sources=3, size=32, progress=False, procedural=1)
    plain = synthesize(tmp_path / "plain", seed=1, **kwargs)
    extra = synthesize(tmp_path / "extra", seed=1, train_only_crops=2, **kwargs)
    names = {f"{b.name}_{k}" for k in range(2) for b in TRAIN_ONLY_IMAGES}
    train = {r["source"] for r in json.loads(extra.train_meta.read_text())}
    assert names <= train
    assert extra.n_train == plain.n_train + len(names) * 56 and extra.n_test == plain.n_test
    # Every image of the run without them, test split included, is byte-identical with them.
    before, after = _tree_hashes(plain.root), _tree_hashes(extra.root)
    assert {k: v for k, v in after.items() if k.startswith("images/") and k in before} == \
        {k: v for k, v in before.items() if k.startswith("images/")}
    assert json.loads(extra.test_meta.read_text()) == json.loads(plain.test_meta.read_text())
    info = json.loads((extra.root / "synth.json").read_text())
    assert info["train_only_crops"] == 2 and info["base_images"]["aero_0"] == "pywt/data/aero.npz"
    # Two crops of one picture differ; the grey ones are tinted into colour like the other grey bases.
    a0, a1 = (np.asarray(load_image(extra.root / "images" / f"aero_{k}" / "pristine.png"), dtype=np.float64)
              for k in range(2))
    assert np.abs(a0 - a1).mean() > 5
    assert np.abs(a0[..., 0] - a0[..., 2]).max() > 0
    plan = plan_sources(1, 3, 1, train_only_crops=2)
    assert [s.index for s in plan] == list(range(len(plan))) and all(s.split == "train" for s in plan[3:])
    with pytest.raises(ConfigError, match="train_only_crops"):
        synthesize(tmp_path / "x", sources=2, size=16, progress=False, train_only_crops=-1)


def test_npz_sample_pictures_read_safely(tmp_path):
    from rali_edge.data.synth import _read_npz
    from rali_edge.errors import DataError

    good = tmp_path / "good.npz"
    np.savez(good, data=np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert _read_npz("good", good).size == (8, 8)
    floats = tmp_path / "floats.npz"
    np.savez(floats, data=np.zeros((8, 8)))
    with pytest.raises(DataError, match="float64 array"):
        _read_npz("floats", floats)
    other_key = tmp_path / "other.npz"
    np.savez(other_key, image=np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="cannot read array 'data'"):
        _read_npz("other", other_key)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, data=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read"):
        _read_npz("pickled", pickled)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read"):
        _read_npz("corrupt", corrupt)
