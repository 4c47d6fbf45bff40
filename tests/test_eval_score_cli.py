"""`rali-edge score` and `rali-edge eval` through the real CLI app, on a tiny random bundle."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.metrics import plcc, srcc

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from rali_edge.model.tiny import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "b", seed=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        arr = base[i % 4][:200, :200].astype(np.float64)
        arr = np.clip(arr + rng.normal(0, 10 * i, arr.shape), 0, 255).astype(np.uint8)
        p = root / "set" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(arr).save(p)
        paths.append(p)
    return root, paths


def test_score_folder_to_csv_and_json(bundle, images, tmp_path):
    from rali_edge.model.scorer import load_scorer

    root, paths = images
    want = load_scorer(bundle).score(paths)
    res = runner.invoke(app, ["score", str(bundle), str(root / "set"), "--out", str(tmp_path / "s.csv"),
                              "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    np.testing.assert_allclose([float(r["score"]) for r in rows], want, atol=1e-5)
    res = runner.invoke(app, ["score", str(bundle), str(paths[0]), "--out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["rows"] == [{"path": str(paths[0]), "score": pytest.approx(float(want[0]), abs=1e-5), "error": ""}]
    assert doc["metadata"]["rali_edge.format"] == "bundle"


def test_score_reports_bad_files_and_exits_nonzero(bundle, images, tmp_path):
    _, paths = images
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = runner.invoke(app, ["score", str(bundle), str(paths[0]), str(bad), str(paths[1])])
    assert res.exit_code == 1
    assert "broken.png" in res.output and "1 of 3 inputs could not be scored" in res.output
    assert str(paths[0]) in res.output and str(paths[1]) in res.output
    res = runner.invoke(app, ["score", str(bundle), str(paths[0]), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "unsupported extension" in res.output


def _meta(path, items):
    path.write_text(json.dumps(items))
    return path


def test_eval_table_and_json(bundle, images, tmp_path):
    from rali_edge.model.scorer import load_scorer

    root, paths = images
    gt = np.linspace(1, 5, len(paths))
    items = [{"image": str(p.relative_to(root)), "gt_score": float(g) * 20, "gt_score_norm": float(g)}
             for p, g in zip(paths, gt)]
    a = _meta(tmp_path / "set_a.json", items[:5])
    b = _meta(tmp_path / "set_b.json", items[3:])
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["eval", str(bundle), "--meta", str(a), "--meta", str(b), "--image-root", str(root),
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "official" in res.output and "set_a" in res.output and "average" in res.output
    rep = json.loads(out.read_text())
    assert rep["logistic"] is False and [d["dataset"] for d in rep["datasets"]] == ["set_a", "set_b"]
    pred = load_scorer(bundle).score(paths)
    da = rep["datasets"][0]
    assert da["n"] == 5
    assert da["metrics"]["plcc"] == pytest.approx(plcc(pred[:5], gt[:5]), abs=1e-5)
    assert da["metrics"]["srcc"] == pytest.approx(srcc(pred[:5], gt[:5]), abs=1e-9)
    assert rep["average"]["plcc"] == pytest.approx(np.mean([d["metrics"]["plcc"] for d in rep["datasets"]]))
    res = runner.invoke(app, ["eval", str(bundle), "--meta", str(a), "--image-root", str(root), "--logistic"])
    assert res.exit_code == 0, res.output and "logistic" in res.output


def test_eval_missing_image_listed_and_bad_meta_is_clear(bundle, images, tmp_path):
    root, paths = images
    items = [{"image": str(p.relative_to(root)), "gt_score": 1.0, "gt_score_norm": 1.0 + i}
             for i, p in enumerate(paths[:4])]
    items.append({"image": "set/nope.png", "gt_score": 1.0, "gt_score_norm": 2.5})
    m = _meta(tmp_path / "withmissing.json", items)
    res = runner.invoke(app, ["eval", str(bundle), "--meta", str(m), "--image-root", str(root)])
    assert res.exit_code == 1 and "nope.png" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = runner.invoke(app, ["eval", str(bundle), "--meta", str(bad), "--image-root", str(root)])
    assert res.exit_code == 2 and "bad.json" in res.output
