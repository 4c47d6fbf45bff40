"""GEMM peaks of this CPU in the runtimes the scorer runs in, at the model's own GEMM shapes.

Kinds, each one graph (or call) per shape, M = batch x rows:
- `fp32`: ORT MatMul, float32 (what the FP32 scorer's GEMMs run on);
- `int8`: ORT MatMulInteger, u8 activations x s8 weights -> int32 (the INT8 kernel itself: MLAS's
  VNNI / AMX u8s8 GEMM);
- `int8_qdq`: QuantizeLinear(x) -> DequantizeLinear -> MatMul <- DequantizeLinear(per-column s8 W),
  float out: ORT fuses it to MatMulIntegerToFloat, so this is the INT8 GEMM as the scorer runs it,
  activation quantization included;
- `bf16`: torch.mm in bfloat16, only where the CPU has bf16 instructions (avx512_bf16, amx_bf16).

The peak of a kind is the model's mix: sum of count x ops over the shapes / sum of count x time (the
least time over the rounds: a peak is what the kernel can do), i.e. the rate the model's weight
GEMMs would run at if they were all the model did. The callables are
timed by the caller, in the same rounds as the models, so that load on a shared machine hits both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from _gemm_work import Gemm

INT8_KINDS = ("int8", "int8_qdq")


def _graph(m: int, k: int, n: int, kind: str):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w8 = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "W")
    a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    if kind == "fp32":
        inits = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "W")]
        nodes = [helper.make_node("MatMul", ["A", "W"], ["Y"])]
    elif kind == "int8":
        inits = [w8, numpy_helper.from_array(np.array(128, np.uint8), "a_zp")]
        nodes = [helper.make_node("MatMulInteger", ["A", "W", "a_zp"], ["Y"])]
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:  # int8_qdq
        inits = [w8, numpy_helper.from_array(np.full(n, 0.01, np.float32), "w_s"),
                 numpy_helper.from_array(np.zeros(n, np.int8), "w_zp"),
                 numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
                 numpy_helper.from_array(np.array(128, np.uint8), "a_zp")]
        nodes = [helper.make_node("QuantizeLinear", ["A", "a_s", "a_zp"], ["Aq"]),
                 helper.make_node("DequantizeLinear", ["Aq", "a_s", "a_zp"], ["Ad"]),
                 helper.make_node("DequantizeLinear", ["W", "w_s", "w_zp"], ["Wd"], axis=1),
                 helper.make_node("MatMul", ["Ad", "Wd"], ["Y"])]
    graph = helper.make_graph(nodes, f"gemm_{kind}", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _ort_call(m: int, k: int, n: int, kind: str, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(_graph(m, k, n, kind).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    if kind == "int8":
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    else:
        a = rng.standard_normal((m, k), dtype=np.float32)
    return lambda: sess.run(None, {"A": a})


def _bf16_call(m: int, k: int, n: int) -> Callable[[], object]:
    import torch

    a = torch.randn(m, k, dtype=torch.bfloat16)
    w = torch.randn(k, n, dtype=torch.bfloat16)
    return lambda: torch.mm(a, w)


def gemm_calls(shapes: tuple[Gemm, ...], batch: int, threads: int, bf16: bool) -> dict[tuple[str, Gemm], Callable]:
    """{(kind, shape): callable running one M x K x N product, M = batch x rows}."""
    if bf16:
        import torch

        torch.set_num_threads(threads)
    calls: dict[tuple[str, Gemm], Callable] = {}
    for g in shapes:
        m = batch * g.rows
        for kind in ("fp32", *INT8_KINDS):
            calls[(kind, g)] = _ort_call(m, g.k, g.n, kind, threads)
        if bf16:
            calls[("bf16", g)] = _bf16_call(m, g.k, g.n)
    return calls


def peaks(seconds: dict[tuple[str, Gemm], float], batch: int) -> dict:
    """Per kind: the mix rate in GOP/s (see module doc); per shape: each kind's GOP/s."""
    kinds = sorted({kind for kind, _ in seconds}, key=("fp32", *INT8_KINDS, "bf16").index)
    shapes = list(dict.fromkeys(g for _, g in seconds))
    per_shape = []
    for g in shapes:
        ops = 2.0 * batch * g.rows * g.k * g.n
        per_shape.append({"m": batch * g.rows, "k": g.k, "n": g.n, "count": g.count,
                          **{f"{kind}_gops": ops / seconds[(kind, g)] / 1e9 for kind in kinds}})
    mix = {}
    for kind in kinds:
        total_ops = sum(2.0 * batch * g.rows * g.k * g.n * g.count for g in shapes)
        mix[kind] = total_ops / sum(seconds[(kind, g)] * g.count for g in shapes) / 1e9
    return {"gops": mix, "shapes": per_shape}
