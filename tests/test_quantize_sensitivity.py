"""Per-block sensitivity ranking and the automatic drift budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rali_edge.quantize import quant_json_path
from rali_edge.quantize.sensitivity import (
    DriftBudgetNotMet,
    EvalData,
    block_sensitivity,
    quantize_to_budget,
    write_sensitivity_table,
)


def _eval_data(case) -> EvalData:
    from rali_edge.bundle import load_bundle
    from rali_edge.evaluation.evalset import load_eval_sets

    pre = load_bundle(case["bundle"]).config.preprocess
    s = load_eval_sets([case["test"]], case["root"], pre)[0]
    return EvalData(s.pixels, s.gt)


@pytest.mark.slow
def test_block_sensitivity_ranks_every_block(int8_case, tmp_path):
    rows = block_sensitivity(int8_case["onnx"], int8_case["calibration"], _eval_data(int8_case))
    assert sorted(r.block for r in rows) == [0, 1]
    assert rows[0].score_mae >= rows[1].score_mae > 0
    write_sensitivity_table(rows, tmp_path / "s.json", tmp_path / "s.md")
    assert json.loads((tmp_path / "s.json").read_text())["ranked"][0]["block"] == rows[0].block
    assert (tmp_path / "s.md").read_text().count("\n") == 4


@pytest.mark.slow
def test_budget_search_meets_a_loose_budget_and_reports_it(int8_case, tmp_path):
    result = quantize_to_budget(int8_case["onnx"], tmp_path / "b.onnx", int8_case["calibration"], 0.02,
                                data=_eval_data(int8_case))
    budget = result.details["drift_budget"]
    assert budget["steps"][-1]["within_budget"] and -budget["steps"][-1]["dplcc"] <= 0.02
    assert budget["latency"]["int8_ms"] > 0 and budget["size_bytes"] == result.size_bytes
    doc = json.loads(quant_json_path(result.path).read_text())
    assert doc["details"]["drift_budget"]["float_blocks"] == budget["float_blocks"]
    assert doc["source"] == str(int8_case["onnx"])


@pytest.mark.slow
def test_budget_search_fails_clearly_when_nothing_meets_it(int8_case, perturbed_copy, tmp_path, monkeypatch):
    import rali_edge.quantize.sensitivity as sens

    real = sens._quantize_to

    def broken(prepared, out, config, calibration):  # every candidate scores upside down
        real(prepared, out, config, calibration)
        perturbed_copy(out, out)

    monkeypatch.setattr(sens, "_quantize_to", broken)
    with pytest.raises(DriftBudgetNotMet, match=r"even with all 2 units \(transformer blocks\)"):
        quantize_to_budget(int8_case["onnx"], tmp_path / "b.onnx", int8_case["calibration"], 0.01,
                           data=_eval_data(int8_case))
    assert not (tmp_path / "b.onnx").exists()


@pytest.mark.slow
def test_budget_search_splits_a_resnet_tower_into_layers(tmp_path):
    """No LayerNorm, no transformer blocks: a CNN tower is ranked and kept float layer by layer."""

    from rali_edge.calibration.sets import from_pixels
    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle, tiny_resnet_backbone_config

    bundle = make_random_bundle(tmp_path / "rn", backbone_config=tiny_resnet_backbone_config(image_size=32, width=8))
    onnx_path = export_bundle(bundle, "onnx", "fp32", out_dir=tmp_path / "x").path
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
    calib = from_pixels(pixels, "random test pixels", seed=0)
    data = EvalData(pixels, None)
    rows = block_sensitivity(onnx_path, calib, data)
    assert len(rows) > 5 and all(r.nodes == 1 and r.label for r in rows)
    assert rows[0].score_mae >= rows[-1].score_mae
    write_sensitivity_table(rows, tmp_path / "s.json", tmp_path / "s.md")
    assert rows[0].label in (tmp_path / "s.md").read_text()
    # Budget 0 on labels that track the float model: only met by keeping layers in float (or luck at step 0).
    from rali_edge.quantize.sensitivity import _scores, prepare

    ref = _scores(prepare(onnx_path, tmp_path, True), pixels)
    result = quantize_to_budget(onnx_path, tmp_path / "b.onnx", calib, 0.0, data=EvalData(pixels, ref))
    budget = result.details["drift_budget"]
    assert budget["unit_kind"] == "layer" and budget["steps"][-1]["within_budget"]
    assert len(budget["float_units"]) == len(budget["float_blocks"])
