"""End to end: synthetic data -> template texts -> `rali-edge train` (configs/train/synth_tiny.toml) -> bundle
-> scores on the held-out test split, plus a shuffled-labels negative control.

Floor: PLCC and SRCC >= 0.30 on the 224 test images (different base pictures from training).
Observed on this machine: PLCC 0.520 / SRCC 0.532 (the run is deterministic for the fixed seeds).
With the training labels shuffled (same aligned encoder, compress + fit redone): PLCC 0.042 / SRCC -0.025;
with 224 images a PLCC of 0.30 is > 4 standard errors above what unrelated labels give.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "synth_tiny.toml"
FLOOR = 0.30


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _train(out: Path, train_meta: Path, root: Path, triplets: Path) -> None:
    from rali_edge.cli.app import app

    args = ["train", "--config", str(CONFIG), "--out", str(out), "--quiet",
            "--set", f"data.train_meta=['{train_meta}']", "--set", f"data.image_root='{root}'",
            "--set", f"data.triplets='{triplets}'"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "bundle:" in result.output


def _test_correlations(bundle: Path, test_meta: Path, root: Path) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    from rali_edge import load_scorer
    from rali_edge.data.meta import read_meta

    records = read_meta(test_meta, root)
    pred = load_scorer(bundle).score([r.path for r in records], batch_size=64)
    gt = np.array([r.score for r in records])
    return float(pearsonr(pred, gt)[0]), float(spearmanr(pred, gt)[0])


@pytest.mark.slow
def test_train_end_to_end_beats_the_floor_and_shuffled_labels_do_not(tmp_path):
    from rali_edge.data.meta import read_meta
    from rali_edge.data.synth import synthesize
    from rali_edge.teacher.template import describe_with_template

    ds = synthesize(tmp_path / "synth", seed=0, sources=16, size=64, progress=False)
    triplets = tmp_path / "triplets.jsonl"
    describe_with_template(read_meta(ds.train_meta, ds.root), [0, 1, 2], triplets, progress=False)

    out = tmp_path / "run"
    _train(out, ds.train_meta, ds.root, triplets)
    plcc, srcc = _test_correlations(out / "bundle", ds.test_meta, ds.root)
    assert plcc >= FLOOR and srcc >= FLOOR, (plcc, srcc)

    # every stage left its marker and logs; a second run skips everything
    for stage in ("align", "compress", "fit"):
        assert json.loads((out / stage / "stage_done.json").read_text())["stage"] == stage
    assert len((out / "align" / "log.jsonl").read_text().splitlines()) == 300
    prov = json.loads((out / "bundle" / "config.json").read_text())["provenance"]
    assert prov["notes"]["random_weights"] is True and str(triplets) in prov["data"]
    before = (out / "bundle" / "manifest.json").read_bytes()
    _train(out, ds.train_meta, ds.root, triplets)
    assert (out / "bundle" / "manifest.json").read_bytes() == before

    # negative control: the same aligned encoder, compress + fit on shuffled scores
    meta = json.loads(ds.train_meta.read_text())
    scores = [m["gt_score_norm"] for m in meta]
    np.random.default_rng(1).shuffle(scores)
    for m, s in zip(meta, scores):
        m["gt_score_norm"] = s
    shuffled = tmp_path / "shuffled.json"
    shuffled.write_text(json.dumps(meta))
    control = tmp_path / "control"
    shutil.copytree(out / "align", control / "align")  # align does not read the meta scores
    _train(control, shuffled, ds.root, triplets)
    bad_plcc, bad_srcc = _test_correlations(control / "bundle", ds.test_meta, ds.root)
    assert bad_plcc < FLOOR and bad_srcc < FLOOR, (bad_plcc, bad_srcc)
