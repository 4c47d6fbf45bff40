"""`export --precision int8/fp16`: float export -> rali_edge.quantize -> validation, in one call."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from rali_edge.calibration.sets import from_pixels
from rali_edge.export.api import export_bundle
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("b") / "oc", library="open_clip", seed=14)


@pytest.fixture(scope="module")
def calibration(bundle):
    from rali_edge.bundle import load_bundle
    from rali_edge.export.samples import sample_pixels

    # real photos (flipped copies too), as the validation images are real photos; 16 = 2 full
    # calibration batches (the entropy calibrator fails on a ragged last batch: reported to quantize)
    pixels = sample_pixels(load_bundle(bundle).config.preprocess)
    pixels = np.concatenate([pixels, pixels[..., ::-1], pixels[..., ::-1, :]])[:16]
    return from_pixels(np.ascontiguousarray(pixels), "skimage sample photos", seed=0)


def test_onnx_int8_round_trip(bundle, calibration, tmp_path):
    res = export_bundle(bundle, "onnx", precision="int8", calibration=calibration, out_dir=tmp_path)
    assert res.validation["max_abs_diff_score"] <= 0.1 and res.validation["size_bytes"] < res.validation["float_size_bytes"]
    model = onnx.load(str(res.path))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rali_edge.precision"] == "int8" and props["rali_edge.format"] == "onnx"
    quant = json.loads((tmp_path / (res.path.name + ".quant.json")).read_text())
    assert quant["calibration"]["count"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([res.path.name, res.path.name + ".quant.json"])
    px = calibration.pixels[:3]
    got, want = open_runner(res.path).run(px), open_runner(bundle).run(px)
    assert np.max(np.abs(got["score"] - want["score"])) <= 0.1


def test_tensorrt_int8_is_qdq_and_strongly_typed(bundle, calibration, tmp_path):
    res = export_bundle(bundle, "tensorrt", precision="int8", calibration=calibration, out_dir=tmp_path, name="m")
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    script = (tmp_path / "m.trtexec.sh").read_text()
    assert "--stronglyTyped" in script and "--int8" not in script and "--fp16" not in script
    assert res.validation["onnx"]["max_abs_diff_score"] <= 0.1


def test_coreml_int8_weights(bundle, tmp_path):
    res = export_bundle(bundle, "coreml", precision="int8", out_dir=tmp_path)
    assert res.validation["spec_checked"] and res.validation["compute_precision"] == "fp16"
    assert res.validation["size_bytes"] < res.validation["float_size_bytes"]
    assert open_runner(res.path).metadata.precision == "int8-weights"


def test_onnx_fp16(bundle, tmp_path):
    res = export_bundle(bundle, "onnx", precision="fp16", out_dir=tmp_path)
    assert res.validation["max_abs_diff_score"] <= 2e-2
