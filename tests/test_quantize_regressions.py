"""Regressions reported against rali_edge.quantize: FP16 graph order, ragged entropy batches, stdout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rali_edge.calibration import from_pixels
from rali_edge.quantize import OnnxFp16Config, TensorRTInt8Config, quantize
from rali_edge.quantize._graph import topological_sort
from rali_edge.quantize.onnx_feed import equal_batch_size, feed_batches


def _ln_softmax_model(path):
    """x -> MatMul -> Add -> LayerNorm -> MatMul -> Softmax -> y: blocked ops between converted ones."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), n) for n in ("w1", "w2")]
    inits += [numpy_helper.from_array(np.ones(8, np.float32), "g"), numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Add", ["h1", "x"], ["h2"], name="add"),
        helper.make_node("LayerNormalization", ["h2", "g", "b"], ["h3"], name="ln", axis=-1),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"], name="mm2"),
        helper.make_node("Softmax", ["h4"], ["y"], name="sm", axis=-1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_topological_sort_reorders_and_keeps_sorted_graphs_unchanged(tmp_path):
    model = onnx.load(str(_ln_softmax_model(tmp_path / "m.onnx")))
    names = [n.name for n in model.graph.node]
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == names  # already sorted: left as is
    shuffled = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(shuffled)
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == names
    onnx.checker.check_model(model, full_check=True)


def test_fp16_graph_passes_the_full_onnx_checker_and_runs(tmp_path):
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src = _ln_softmax_model(tmp_path / "m.onnx")
    # The converter alone leaves the Casts around the FP32-kept ops out of order: what was reported.
    raw = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                   op_block_list=["LayerNormalization", "Softmax"])
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(raw, full_check=True)
    result = quantize(OnnxFp16Config(), src, tmp_path / "h.onnx")
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert {t.name: t.data_type for t in model.graph.initializer}["w1"] == TensorProto.FLOAT16
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == np.float32 and np.abs(got - want).max() < 5e-3


@pytest.mark.parametrize(("count", "batch", "want"), [(13, 8, 1), (16, 8, 8), (300, 8, 6), (12, 8, 6), (3, 8, 3)])
def test_equal_batch_size_divides_the_set(count, batch, want):
    assert equal_batch_size(count, batch) == want


def test_feed_batches_equal_keeps_every_image_in_one_shape():
    cal = from_pixels(np.zeros((13, 3, 4, 4), np.uint8), "zeros")
    ragged = feed_batches(cal, "uint8", 8, fixed=False)
    assert [len(b) for b in ragged] == [8, 5]  # MinMax takes this
    equal = feed_batches(cal, "uint8", 8, fixed=False, equal=True)
    assert len({b.shape for b in equal}) == 1 and sum(len(b) for b in equal) == 13
    fixed = feed_batches(cal, "uint8", 8, fixed=True, equal=True)
    assert [len(b) for b in fixed] == [8]  # a fixed-batch graph only takes full batches


@pytest.mark.slow
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_with_a_ragged_set_and_no_stdout(int8_case, tmp_path, capfd, method):
    from rali_edge.runtime import open_runner

    cal = from_pixels(int8_case["calibration"].pixels[:13], "13 calibration images", seed=0)
    capfd.readouterr()
    result = quantize(TensorRTInt8Config(method=method), int8_case["onnx"], tmp_path / "trt.onnx", cal)
    out, _ = capfd.readouterr()
    assert out == ""  # ORT's calibrator prints; the library must not write to stdout
    assert result.details["calibration_batches"] == 13  # 13 is prime: 13 batches of one, none dropped
    assert result.calibration["count"] == 13
    pixels = int8_case["calibration"].pixels[:8]
    got = open_runner(result.path).run(pixels)["score"]
    want = open_runner(int8_case["onnx"]).run(pixels)["score"]
    assert np.abs(got - want).mean() < 0.1
