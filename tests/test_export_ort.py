"""ORT mobile format: converted from the validated ONNX, runs in ONNX Runtime, keeps its metadata."""

from __future__ import annotations

import numpy as np
import pytest

from rali_edge.bundle import load_bundle
from rali_edge.export.api import export_bundle
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner


@pytest.mark.slow
def test_ort_round_trip(tmp_path):
    bundle = make_random_bundle(tmp_path / "hf", library="hf", seed=7)
    res = export_bundle(bundle, "ort", with_embedding=True, out_dir=tmp_path / "out")
    assert res.path.suffix == ".ort" and res.path.read_bytes()[4:8] == b"ORTM"  # flatbuffer id
    assert res.validation["max_abs_diff_score"] <= 1e-4
    assert sorted(p.name for p in res.path.parent.iterdir()) == [res.path.name]  # no ONNX left behind
    runner = open_runner(res.path)
    assert runner.metadata.format == "ort" and runner.metadata.bundle_checksum == load_bundle(bundle).checksum
    px = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    got, want = runner.run(px), open_runner(bundle).run(px)
    assert np.max(np.abs(got["score"] - want["score"])) <= 1e-4
    assert np.max(np.abs(got["embedding"] - want["embedding"])) <= 1e-4
