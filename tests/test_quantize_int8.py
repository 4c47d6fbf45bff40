"""INT8 (ORT static QDQ) on a small scorer trained on synthetic data: drift, float head, provenance."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from rali_edge.errors import ConfigError, NotRunnableHere
from rali_edge.quantize import (
    CoreMLW8A8Config,
    OnnxFp16Config,
    OnnxInt8Config,
    TensorRTInt8Config,
    quant_json_path,
    quantize,
)

# Budget for this model (2-layer width-32 ViT, head fitted on 240 synthetic images, 120 test images).
MAX_DROP = 0.01


@pytest.mark.slow
def test_int8_cpu_profile_keeps_plcc_and_srcc_within_budget(int8_case):
    from rali_edge.validate import validate_artifacts

    report = validate_artifacts([int8_case["int8"].path], int8_case["bundle"], [int8_case["test"]],
                                int8_case["root"], max_plcc_drop=MAX_DROP, max_srcc_drop=MAX_DROP)
    ref, row = report.rows
    assert ref.status == "reference" and ref.plcc > 0.7  # the fitted scorer means something
    assert row.status == "ok" and abs(row.dplcc) <= MAX_DROP and abs(row.dsrcc) <= MAX_DROP
    assert row.score_mae < 0.1 and row.embedding_cosine > 0.99
    assert report.passed


@pytest.mark.slow
def test_int8_keeps_head_float_and_writes_provenance(int8_case):
    result = int8_case["int8"]
    model = onnx.load(str(result.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    producer = {o: n for n in model.graph.node for o in n.output}
    # Walk back from `score` to the last LayerNorm: no Q/DQ anywhere on that path (the head is float).
    stack, seen = ["score"], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or node.op_type == "LayerNormalization":
            continue
        seen.add(node.name)
        assert node.op_type not in ("QuantizeLinear", "DequantizeLinear"), f"head node {node.name} is quantized"
        stack.extend(node.input)
    assert result.size_bytes < result.source_size_bytes
    doc = json.loads(quant_json_path(result.path).read_text())
    assert doc["config"]["kind"] == "onnx_int8" and doc["config"]["profile"] == "cpu"
    cal = doc["calibration"]
    assert cal["count"] == 240 and cal["seed"] == 0 and cal["method"] == "all"
    assert cal["sources"] == [str(int8_case["train"].resolve())] and cal["preprocess"]["image_size"] == 32
    assert any("recommended" in n for n in doc["notes"])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rali_edge.precision"] == "int8" and "rali_edge.input_kind" in meta


@pytest.mark.slow
def test_tensorrt_profile_is_symmetric_s8(int8_case, tmp_path):
    from onnx import numpy_helper

    result = quantize(TensorRTInt8Config(method="minmax"), int8_case["onnx"], tmp_path / "trt.onnx",
                      int8_case["calibration"])
    model = onnx.load(str(result.path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)


@pytest.mark.slow
def test_fp16_keeps_layernorm_and_softmax_fp32(int8_case, tmp_path):
    from rali_edge.validate import validate_artifacts

    result = quantize(OnnxFp16Config(), int8_case["onnx"], tmp_path / "fp16.onnx")
    assert result.details["kept_fp32_ops"] == ["LayerNormalization", "Softmax"]
    model = onnx.load(str(result.path))
    fp16_inits = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_inits and model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    row = validate_artifacts([result.path], int8_case["bundle"], [int8_case["test"]], int8_case["root"]).rows[1]
    assert row.status == "ok" and row.max_abs_change < 0.05 and abs(row.dplcc) < 0.005


def test_modelopt_and_coreml_w8a8_fail_clearly_here(tmp_path):
    import importlib.util
    import sys

    from rali_edge.calibration import from_pixels

    cal = from_pixels(np.zeros((2, 3, 8, 8), np.uint8), "zeros")
    import onnx
    from onnx import TensorProto, helper

    src = tmp_path / "m.onnx"   # a valid ONNX: the quantizer's own check must be what fails
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(src))
    if importlib.util.find_spec("modelopt") is None:
        with pytest.raises(ConfigError, match="ModelOpt"):
            quantize(TensorRTInt8Config(quantizer="modelopt"), src, tmp_path / "q.onnx", cal)
    if sys.platform != "darwin":
        pkg = tmp_path / "m.mlpackage"
        pkg.mkdir()
        (pkg / "Manifest.json").write_text("{}")
        with pytest.raises(NotRunnableHere, match="macOS"):
            quantize(CoreMLW8A8Config(), pkg, tmp_path / "q.mlpackage", cal)


@pytest.mark.slow
def test_float_input_graphs_are_calibrated_in_their_own_input_kind(int8_case, tmp_path):
    from rali_edge.export.api import export_bundle
    from rali_edge.runtime import open_runner

    norm = export_bundle(int8_case["bundle"], "onnx", out_dir=tmp_path, input_kind="normalized").path
    q = quantize(TensorRTInt8Config(method="minmax"), norm, tmp_path / "norm-int8.onnx", int8_case["calibration"])
    pixels = int8_case["calibration"].pixels[:16]
    want = open_runner(norm).run(pixels)["score"]
    got = open_runner(q.path).run(pixels)["score"]
    assert np.abs(got - want).mean() < 0.1  # calibrated on normalised floats, not raw 0..255 values


@pytest.mark.slow
@pytest.mark.parametrize("config_cls", [OnnxInt8Config, TensorRTInt8Config])
def test_the_full_resolution_stem_stays_float_unless_asked(tmp_path, config_cls):
    """A CNN tower's 3-conv stem keeps float weights and inputs; the convs after the first pooling are INT8."""
    from rali_edge.calibration import from_pixels
    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle, tiny_timm_backbone_config

    bundle = make_random_bundle(tmp_path / "b", backbone_config=tiny_timm_backbone_config("test_resnet", 32))
    src = export_bundle(bundle, "onnx", out_dir=tmp_path / "x").path
    cal = from_pixels(np.random.default_rng(0).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8), "noise")
    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]

    def int8_convs(path):
        model = onnx.load(str(path))
        producer = {o: n for n in model.graph.node for o in n.output}
        return {n.name for n in model.graph.node if n.op_type == "Conv"
                and getattr(producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"}

    kept = quantize(config_cls(), src, tmp_path / "q.onnx", cal)
    assert kept.details["float_nodes"]["stem"] == 3
    assert int8_convs(kept.path) == set(convs[3:])
    plain = quantize(config_cls(keep_stem_float=False), src, tmp_path / "all.onnx", cal)
    assert plain.details["float_nodes"]["stem"] == 0 and int8_convs(plain.path) == set(convs)
