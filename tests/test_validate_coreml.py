"""Core ML INT8-weight packages are written for real on every host; their accuracy is measured where Core ML
can predict (macOS) and SIMULATED elsewhere."""

from __future__ import annotations

import json

import pytest

from rali_edge.quantize import CoreMLWeightsConfig, quant_json_path, quantize
from rali_edge.runtime.coreml_runner import CoreMLRunner


@pytest.mark.slow
def test_coreml_int8_weights_are_measured_or_simulated_and_labelled(scorer_case, tmp_path):
    pytest.importorskip("coremltools")
    from rali_edge.export.api import export_bundle
    from rali_edge.validate import validate_artifacts

    fp16 = export_bundle(scorer_case["bundle"], "coreml", out_dir=tmp_path).path
    # The tiny model's weights are small: lower the size threshold so they are quantized at all.
    q = quantize(CoreMLWeightsConfig(weight_threshold=256), fp16, tmp_path / "int8w.mlpackage")
    assert q.size_bytes < q.source_size_bytes
    assert json.loads(quant_json_path(q.path).read_text())["calibration"] is None
    report = validate_artifacts([fp16, q.path], scorer_case["bundle"], [scorer_case["test"]], scorer_case["root"],
                                max_plcc_drop=0.01)
    _, half, int8w = report.rows
    if CoreMLRunner.available()[0]:  # macOS: Core ML predicts, both packages are measured for real
        assert half.status == int8w.status == "ok"
        assert half.score_mae > 0
    else:
        assert half.status == int8w.status == "simulated"
        assert "macOS" in int8w.reason and "int8" in int8w.reason and "int8" not in half.reason
        assert 0 < half.score_mae < int8w.score_mae  # fp16 alone drifts less than int8 weights + fp16
    assert abs(int8w.dplcc) <= 0.01 and report.passed
