"""INT8 quantization that includes LayerNormalization logs no "Axis 1 is out-of-range" warnings (issue 29).

With per_channel=True, ORT's QDQ quantizer asks for axis 1 of every normalization scale (a 1-D tensor),
warns on the root logger once per LayerNorm, and quantizes it per-tensor. onnx_int8 declares those
weights per-tensor up front (per_tensor_overrides): the same model, without the flood.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rali_edge.quantize import OnnxInt8Config, quantize
from rali_edge.quantize.config import DEFAULT_INT8_OPS
from rali_edge.quantize.onnx_overrides import per_tensor_overrides

OUT_OF_RANGE = "out-of-range"
LN_OPS = (*DEFAULT_INT8_OPS, "LayerNormalization")


def _out_of_range(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if OUT_OF_RANGE in r.getMessage()]


def _model():
    """x -> Conv(bias) -> Flatten -> MatMul -> LayerNorm -> MatMul(1-D vector) -> y, all weights initializers."""
    rng = np.random.default_rng(0)
    arrays = {
        "cw": rng.standard_normal((2, 1, 1, 1)), "cb": rng.standard_normal(2),
        "w1": rng.standard_normal((8, 8)), "g": rng.uniform(0.5, 1.5, 8), "b": rng.standard_normal(8) * 0.1,
        "v": rng.standard_normal(8),
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv"),
        helper.make_node("Flatten", ["c"], ["f"], name="flat", axis=1),
        helper.make_node("MatMul", ["f", "w1"], ["h"], name="mm"),
        helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], name="ln", axis=-1),
        helper.make_node("MatMul", ["n", "v"], ["y"], name="dot"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_overrides_name_only_quantized_weights_without_a_channel_axis():
    model = _model()
    # The LayerNorm scale and the 1-D MatMul operand; not the Conv/MatMul weights (4-D, 2-D), not biases.
    assert per_tensor_overrides(model, LN_OPS, (), per_channel=True) == {"g": [{}], "v": [{}]}
    assert per_tensor_overrides(model, LN_OPS, ("ln",), per_channel=True) == {"v": [{}]}  # kept float
    assert per_tensor_overrides(model, DEFAULT_INT8_OPS, (), per_channel=True) == {"v": [{}]}
    assert per_tensor_overrides(model, LN_OPS, (), per_channel=False) == {}  # ORT never asks for an axis
    shared = _model()
    shared.graph.node[0].input[2] = "g"  # the LayerNorm scale is also the Conv's bias: leave it to ORT
    assert per_tensor_overrides(shared, LN_OPS, (), per_channel=True) == {"v": [{}]}


def test_ort_warns_without_the_overrides_and_writes_the_same_model_with_them(tmp_path, caplog):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src = tmp_path / "m.onnx"
    model = _model()
    onnx.save(model, str(src))
    batches = [np.random.default_rng(i).standard_normal((4, 1, 2, 2)).astype(np.float32) for i in range(3)]

    class Reader:
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    def run(out, extra):
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(LN_OPS),
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"WeightSymmetric": True, **extra})
        loaded = onnx.load(str(out))
        return ([(n.op_type, list(n.input), list(n.output)) for n in loaded.graph.node],
                {t.name: numpy_helper.to_array(t).tolist() for t in loaded.graph.initializer})

    with caplog.at_level(logging.WARNING):
        plain = run(tmp_path / "plain.onnx", {})
    # The cause, as ORT 1.32 reports it: one line per 1-D weight it was asked to quantize per channel.
    assert sorted(_out_of_range(caplog)) == [
        "Axis 1 is out-of-range for weight 'g' with rank 1", "Axis 1 is out-of-range for weight 'v' with rank 1"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fixed = run(tmp_path / "fixed.onnx", {"TensorQuantOverrides": per_tensor_overrides(model, LN_OPS, (), True)})
    assert not _out_of_range(caplog)
    assert fixed == plain  # ORT's own fallback, declared: not one byte of the model changes


def _calibration(scorer_case):
    import warnings

    from rali_edge.bundle import load_bundle
    from rali_edge.calibration import build_calibration_set

    root = scorer_case["root"]
    pre = load_bundle(scorer_case["bundle"]).config.preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 240 < 300 images: the small-set warning is expected here
        return build_calibration_set(scorer_case["train"], pre, size=240, seed=0, image_root=root,
                                     cache_dir=root / "cache")


def _validate(path, scorer_case, budget: float | None):
    from rali_edge.validate import validate_artifacts

    return validate_artifacts([path], scorer_case["bundle"], [scorer_case["test"]], scorer_case["root"],
                              max_plcc_drop=budget, max_srcc_drop=budget)


@pytest.mark.slow
def test_default_int8_logs_no_out_of_range_axis_and_keeps_its_budget(scorer_case, tmp_path, caplog):
    """The default cpu profile (LayerNorm float): quiet, and the checks of test_quantize_int8 still hold."""
    with caplog.at_level(logging.WARNING):
        result = quantize(OnnxInt8Config(), scorer_case["onnx"], tmp_path / "int8.onnx", _calibration(scorer_case))
    assert not _out_of_range(caplog)
    report = _validate(result.path, scorer_case, 0.01)
    ref, row = report.rows
    assert ref.status == "reference" and row.status == "ok" and report.passed
    assert abs(row.dplcc) <= 0.01 and abs(row.dsrcc) <= 0.01
    assert row.score_mae < 0.1 and row.embedding_cosine > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["cpu", "tensorrt"])
def test_int8_with_layernorm_quantized_logs_no_out_of_range_axis(scorer_case, tmp_path, caplog, profile):
    """The benchmark's `int8-plain` case (LayerNormalization in op_types) on the tiny scorer, through the API."""
    config = OnnxInt8Config(profile=profile, op_types=LN_OPS, exclude_layernorm=False)
    with caplog.at_level(logging.WARNING):
        result = quantize(config, scorer_case["onnx"], tmp_path / f"ln-{profile}.onnx", _calibration(scorer_case))
    assert not _out_of_range(caplog)

    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert norms
    for ln in norms:  # each scale goes through Q/DQ, per tensor (one scale), as ORT's own fallback did
        dq = producer[ln.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[1]].size == 1
    # INT8 LayerNorms cost accuracy (why the default keeps them float: PLCC -0.04 here), so no budget;
    # the model runs in ORT and still tracks the float one.
    row = _validate(result.path, scorer_case, None).rows[1]
    assert row.status == "ok" and row.embedding_cosine > 0.9 and row.plcc > 0.7
