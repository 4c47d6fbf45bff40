"""Rewrites of an ORT QDQ model that ORT's own graph optimizer does not make (cpu profile only).

`fuse_matmul_bias`: ORT turns `DQ(x) -> MatMul <- DQ(W)` into a MatMulIntegerToFloat kernel at load
time but leaves the following bias `Add` as a separate float pass over the whole output (~8% of the
INT8 ViT-B/16 time here). MatMulIntegerToFloat (com.microsoft) takes the bias as its 7th input and
adds it while the int32 accumulators are converted, so the rewrite writes that node directly:

    QuantizeLinear(x) -> DequantizeLinear -> MatMul <- DequantizeLinear(W_int8)     (per-column or per-tensor)
                                               |
                                             Add(bias[N])
  becomes  MatMulIntegerToFloat(x_q, W_int8, x_scale, w_scale, x_zp, w_zp, bias)

The result is exact up to float rounding (same integer product, same scales). It uses a contrib op,
so the artifact is for ONNX Runtime only, which the cpu profile is for; TensorRT's profile never calls it.
"""

from __future__ import annotations

import numpy as np

MS_DOMAIN = "com.microsoft"


def _bias_of(add, matmul_out: str, inits: dict, numpy_helper, n_cols: int) -> str | None:
    """The Add's other input when it is a constant float vector of the MatMul's column count."""
    other = [i for i in add.input if i != matmul_out]
    if len(add.input) != 2 or len(other) != 1 or other[0] not in inits:
        return None
    arr = numpy_helper.to_array(inits[other[0]])
    return other[0] if arr.dtype == np.float32 and arr.shape == (n_cols,) else None


def _weight_dq_ok(dq, inits: dict) -> bool:
    """A constant int8 weight, dequantized per tensor or per column (axis 1 of a 2-D weight)."""
    if dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[0] not in inits:
        return False
    w = inits[dq.input[0]]
    if len(w.dims) != 2:
        return False
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    scale_dims = list(inits[dq.input[1]].dims) if dq.input[1] in inits else None
    return scale_dims in ([], [1]) or (axis in (1, -1) and scale_dims == [w.dims[1]])


def fuse_matmul_bias(model) -> int:
    """Rewrite every fusable QDQ MatMul + bias Add in place (see module doc); returns how many."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    drop: set[int] = set()
    replace: dict[int, object] = {}
    for mm in (n for n in graph.node if n.op_type == "MatMul"):
        a_dq, w_dq = producer.get(mm.input[0]), producer.get(mm.input[1])
        users = consumers.get(mm.output[0], [])
        if (a_dq is None or w_dq is None or a_dq.op_type != "DequantizeLinear" or len(a_dq.input) < 3
                or not _weight_dq_ok(w_dq, inits) or len(users) != 1 or users[0].op_type != "Add"
                or mm.output[0] in outputs):
            continue
        bias = _bias_of(users[0], mm.output[0], inits, numpy_helper, inits[w_dq.input[0]].dims[1])
        if bias is None:
            continue
        add = users[0]
        fused = helper.make_node(
            "MatMulIntegerToFloat",
            [a_dq.input[0], w_dq.input[0], a_dq.input[1], w_dq.input[1], a_dq.input[2], w_dq.input[2], bias],
            [add.output[0]], name=f"{mm.name}_bias_fused", domain=MS_DOMAIN)
        replace[id(add)] = fused
        drop.add(id(mm))
    if not replace:
        return 0
    new_nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    # DequantizeLinear nodes whose every consumer was fused away are dead now.
    used = {i for n in new_nodes for i in n.input} | outputs
    new_nodes = [n for n in new_nodes if not (n.op_type == "DequantizeLinear" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(new_nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(replace)
