"""MatMul + bias Add -> MatMulIntegerToFloat(bias): exactness, where it applies, where it must not."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rali_edge.errors import ConfigError
from rali_edge.quantize import OnnxInt8Config, TensorRTInt8Config, quantize
from rali_edge.quantize.ort_fusions import fuse_matmul_bias, quantize_before_transpose, split_packed_qkv


def _qdq_linear(per_channel: bool, shared_dq: bool = False):
    """x[2,5,16] -> Q -> DQ -> MatMul(DQ(W int8)) -> Add(bias) -> y; optionally the DQ also feeds z."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (16, 8), dtype=np.int8)
    ws = (rng.random(8).astype(np.float32) + 0.5) * 0.01 if per_channel else np.float32(0.01)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.asarray(ws, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(8 if per_channel else (), np.int8), "wz"),
             numpy_helper.from_array(np.float32(0.02), "xs"), numpy_helper.from_array(np.uint8(120), "xz"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dqw", axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["mm"], name="mm"),
             helper.make_node("Add", ["b", "mm"], ["y"], name="add")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])]
    if shared_dq:
        nodes.append(helper.make_node("Relu", ["xd"], ["z"], name="relu"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, 16]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("shared_dq", [False, True])
def test_bias_fusion_is_exact_and_removes_the_add(per_channel, shared_dq):
    model = _qdq_linear(per_channel, shared_dq)
    x = np.random.default_rng(1).standard_normal((2, 5, 16)).astype(np.float32)
    want = _run(model, x)
    assert fuse_matmul_bias(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Add" not in ops and "MatMul" not in ops and ops.count("MatMulIntegerToFloat") == 1
    assert ops.count("DequantizeLinear") == (1 if shared_dq else 0)  # a DQ still read elsewhere stays
    got = _run(model, x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_bias_fusion_leaves_float_matmuls_and_non_bias_adds_alone():
    model = _qdq_linear(True)
    add = next(n for n in model.graph.node if n.op_type == "Add")
    add.input[0] = "mm"  # Add(mm, mm): no constant bias
    add.input[1] = "mm"
    assert fuse_matmul_bias(model) == 0
    float_mm = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.ones((4, 3), np.float32), "w"), numpy_helper.from_array(np.ones(3, np.float32), "b")]))
    assert fuse_matmul_bias(float_mm) == 0


def test_tensorrt_profile_refuses_bias_fusion():
    with pytest.raises(ConfigError, match="TensorRT"):
        OnnxInt8Config(profile="tensorrt", fuse_bias=True)
    assert OnnxInt8Config().bias_fusion and not OnnxInt8Config(profile="tensorrt").bias_fusion


def _packed_qkv(perm=(3, 1, 2, 0, 4)):
    """torch's export of nn.MultiheadAttention's packed in_proj unpacking, on x[L=5, B=2, 3*D=12]."""
    ints = lambda v, n: numpy_helper.from_array(np.asarray(v, np.int64), n)  # noqa: E731
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="r"),
             helper.make_node("Unsqueeze", ["r", "zero"], ["u"], name="u"),
             helper.make_node("Transpose", ["u"], ["t"], name="t", perm=list(perm)),
             helper.make_node("Squeeze", ["t", "m2"], ["s"], name="s")]
    nodes += [helper.make_node("Gather", ["s", f"i{i}"], [f"p{i}"], name=f"g{i}", axis=0) for i in range(3)]
    inits = [ints([5, -1, 3, 4], "shape"), ints([0], "zero"), ints([-2], "m2")]
    inits += [ints(i, f"i{i}") for i in range(3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, 12])],
                              [helper.make_tensor_value_info(f"p{i}", TensorProto.FLOAT, [5, 2, 4]) for i in range(3)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_packed_qkv_unpacking_becomes_one_exact_split():
    model = _packed_qkv()
    x = np.random.default_rng(2).standard_normal((5, 2, 12)).astype(np.float32)
    want = _run(model, x)
    for i, part in enumerate(want):  # what the chain means: the i-th third of the last axis
        np.testing.assert_array_equal(part, x[..., 4 * i:4 * (i + 1)])
    assert split_packed_qkv(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Split", "Squeeze", "Squeeze", "Squeeze"]
    assert {t.name for t in model.graph.initializer} == {"shape", "r_split_0_sizes", "r_split_0_axis"}  # orphans gone
    for g, w in zip(_run(model, x), want):
        np.testing.assert_array_equal(g, w)
    other = _packed_qkv(perm=(0, 1, 2, 3, 4))  # a different layout is not this pattern
    assert split_packed_qkv(other) == 0


@pytest.mark.slow
def test_default_cpu_profile_fuses_biases_with_the_same_scores(int8_case, tmp_path):
    from rali_edge.runtime import open_runner

    fused = int8_case["int8"]
    assert fused.details["bias_fused_matmuls"] > 0
    model = onnx.load(str(fused.path))
    assert any(n.op_type == "MatMulIntegerToFloat" and len(n.input) == 7 for n in model.graph.node)
    plain = quantize(OnnxInt8Config(fuse_bias=False), int8_case["onnx"], tmp_path / "plain.onnx",
                     int8_case["calibration"])
    assert plain.details["bias_fused_matmuls"] == 0
    # the export writes batch-first attention (export/attention.py): no packed QKV is left to split
    assert fused.details["qkv_splits"] == plain.details["qkv_splits"] == 0
    pixels = int8_case["calibration"].pixels[:16]
    got, want = open_runner(fused.path).run(pixels)["score"], open_runner(plain.path).run(pixels)["score"]
    np.testing.assert_allclose(got, want, atol=1e-4)
    trt = quantize(TensorRTInt8Config(method="minmax"), int8_case["onnx"], tmp_path / "trt.onnx",
                   int8_case["calibration"])
    assert not any(n.domain == "com.microsoft" for n in onnx.load(str(trt.path)).graph.node)


def _activation_products(path) -> list[tuple[int, int]]:
    """(zero-point dtype of operand A, of operand B) for each quantized activation x activation MatMul."""
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def dq_of_activation(name):
        dq = producer.get(name)
        ok = dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] not in inits
        return inits[dq.input[2]].data_type if ok else None

    out = []
    for mm in (n for n in model.graph.node if n.op_type == "MatMul"):
        a, b = dq_of_activation(mm.input[0]), dq_of_activation(mm.input[1])
        if a is not None and b is not None:
            out.append((a, b))
    return out


@pytest.mark.slow
def test_attention_operands_are_signed_by_default_and_float_when_asked(int8_case, tmp_path):
    # the tiny ViT has 2 blocks: q @ k and attn @ v in each
    signed = _activation_products(int8_case["int8"].path)
    assert len(signed) == 4 and int8_case["int8"].details["signed_attention_operands"] == 4
    assert all(a == TensorProto.UINT8 and b == TensorProto.INT8 for a, b in signed)   # u8 x s8: the VNNI kernel
    unsigned = quantize(OnnxInt8Config(signed_attention_operands=False), int8_case["onnx"], tmp_path / "u.onnx",
                        int8_case["calibration"])
    assert _activation_products(unsigned.path) == [(TensorProto.UINT8, TensorProto.UINT8)] * 4
    # quantize_attention_matmuls=False keeps them float (ORT's MatMulConstBOnly does nothing in QDQ format)
    float_attention = quantize(OnnxInt8Config(quantize_attention_matmuls=False), int8_case["onnx"],
                               tmp_path / "f.onnx", int8_case["calibration"])
    assert _activation_products(float_attention.path) == []
    assert float_attention.details["float_nodes"]["extra"] == 4
    trt = quantize(TensorRTInt8Config(method="minmax"), int8_case["onnx"], tmp_path / "trt.onnx",
                   int8_case["calibration"])
    assert all(a == b == TensorProto.INT8 for a, b in _activation_products(trt.path))   # all s8 already


def _head_split(per_axis: bool = False, shared: bool = False):
    """x[2,6,8] -> Reshape[2,6,2,4] -> Transpose(0,2,1,3) -> Q -> DQ -> y (optionally z = Transpose out)."""
    ints = lambda v, n: numpy_helper.from_array(np.asarray(v, np.int64), n)  # noqa: E731
    scale = np.full(2, 0.05, np.float32) if per_axis else np.float32(0.05)
    zp = np.full(2, 7, np.int8) if per_axis else np.int8(7)
    axis = {"axis": 1} if per_axis else {}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="r"),
             helper.make_node("Transpose", ["r"], ["t"], name="t", perm=[0, 2, 1, 3]),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["q"], name="q", **axis),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq", **axis)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2, 6, 4])]
    if shared:
        nodes.append(helper.make_node("Relu", ["t"], ["z_out"], name="relu"))
        outputs.append(helper.make_tensor_value_info("z_out", TensorProto.FLOAT, [2, 2, 6, 4]))
    inits = [ints([2, 6, 2, 4], "shape"), numpy_helper.from_array(np.asarray(scale), "s"),
             numpy_helper.from_array(np.asarray(zp), "z")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 8])],
                              outputs, inits, value_info=[helper.make_tensor_value_info("t", TensorProto.FLOAT,
                                                                                        [2, 2, 6, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_quantize_moves_before_the_head_split_exactly():
    model = _head_split()
    x = np.random.default_rng(3).standard_normal((2, 6, 8)).astype(np.float32)
    want = _run(model, x)
    assert quantize_before_transpose(model) == 1
    onnx.checker.check_model(model, full_check=True)   # the old float value_info names are not reused
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "Reshape", "Transpose", "DequantizeLinear"]
    np.testing.assert_array_equal(_run(model, x)[0], want[0])
    # a per-axis scale (its axis would have to follow the permutation) and a shared Transpose stay put
    assert quantize_before_transpose(_head_split(per_axis=True)) == 0
    assert quantize_before_transpose(_head_split(shared=True)) == 0


@pytest.mark.slow
def test_default_cpu_profile_quantizes_before_the_head_transposes_with_the_same_scores(int8_case, tmp_path):
    from rali_edge.runtime import open_runner

    moved = int8_case["int8"]
    assert moved.details["quantize_moved_before_transpose"] == 8   # q, k, v and attn @ v in each of 2 blocks
    late = quantize(OnnxInt8Config(quantize_before_transpose=False), int8_case["onnx"], tmp_path / "late.onnx",
                    int8_case["calibration"])
    assert late.details["quantize_moved_before_transpose"] == 0
    pixels = int8_case["calibration"].pixels[:16]
    got, want = open_runner(moved.path).run(pixels)["score"], open_runner(late.path).run(pixels)["score"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not OnnxInt8Config(profile="tensorrt").early_quantize
