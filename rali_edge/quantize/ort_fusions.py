"""Exact rewrites of a quantized QDQ model that ORT's own graph optimizer does not make.

`split_packed_qkv` (standard ONNX, any profile): see its docstring.

`quantize_before_transpose` (standard ONNX, any profile): see its docstring.

`fuse_matmul_bias` (cpu profile only): ORT turns `DQ(x) -> MatMul <- DQ(W)` into a MatMulIntegerToFloat
kernel at load time but leaves the following bias `Add` as a separate float pass over the whole output (~8% of the
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

from rali_edge.quantize.patterns import _Graph

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
    g = _Graph(model)
    outputs = set(g.outputs)
    drop: set[int] = set()
    replace: dict[int, object] = {}
    for mm in (n for n in g.nodes if n.op_type == "MatMul"):
        a_dq, w_dq = g.producer.get(mm.input[0]), g.producer.get(mm.input[1])
        users = g.consumers.get(mm.output[0], [])
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


def _ints(value: np.ndarray | None) -> list[int] | None:
    return None if value is None else value.astype(np.int64).reshape(-1).tolist()


def split_packed_qkv(model) -> int:
    """Replace nn.MultiheadAttention's packed-QKV unpacking chain by Split + Squeeze, in place; returns how many.

    torch exports `in_proj(x).unflatten(-1, (3, D)).unsqueeze(0).transpose(0, -2).squeeze(-2)[i]` as
    r = Reshape[.., .., 3, D] -> Unsqueeze(0) -> Transpose(perm 3,1,2,0,4) -> Squeeze(-2) -> Gather(i, axis 0):
    a 5-D float transpose of the whole [L, B, 3D] projection, then a copy per part (~5-8% of the INT8
    ViT-B/16 time here). Gather i is exactly r[:, :, i, :], i.e. output i of Split(r, axis=2) squeezed.
    """
    graph = model.graph
    g = _Graph(model)
    outputs = set(g.outputs)
    drop: set[int] = set()
    insert: dict[int, list] = {}
    for reshape in (n for n in g.nodes if n.op_type == "Reshape"):
        found = _packed_qkv_chain(g, reshape, outputs)
        if found is None:
            continue
        parts, chain, picks = found
        name = f"{reshape.name or 'qkv'}_split_{len(insert)}"
        insert[id(reshape)] = _split_and_squeeze(graph, reshape, parts, picks, name)
        drop.update(id(n) for n in chain)
    if insert:
        _replace_nodes(graph, insert, drop)
    return len(insert)


def _attr(node, key: str):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == key), None)


def _packed_qkv_chain(g: _Graph, reshape, outputs: set) -> tuple[int, list, dict] | None:
    """(parts, the Unsqueeze/Transpose/Squeeze/Gather nodes to drop, part index -> its Gather) when
    `reshape` starts the packed-QKV unpacking chain (split_packed_qkv), else None."""
    def only(name: str, op_type: str):
        users = g.consumers.get(name, [])
        ok = len(users) == 1 and users[0].op_type == op_type and name not in outputs
        return users[0] if ok else None

    shape = _ints(g.const(reshape.input[1]))
    unsq = only(reshape.output[0], "Unsqueeze")
    trans = unsq and only(unsq.output[0], "Transpose")
    squeeze = trans and only(trans.output[0], "Squeeze")
    if (not shape or len(shape) != 4 or shape[2] <= 0 or squeeze is None
            or _ints(g.const(unsq.input[1])) != [0]
            or list(_attr(trans, "perm") or []) != [3, 1, 2, 0, 4]
            or _ints(g.const(squeeze.input[1])) not in ([-2], [3])):
        return None
    parts, gathers = shape[2], g.consumers.get(squeeze.output[0], [])
    picks = {}
    for gather in gathers:
        index = g.const(gather.input[1]) if gather.op_type == "Gather" else None
        if index is None or index.ndim != 0 or (_attr(gather, "axis") or 0) != 0:  # scalar index drops the axis
            return None
        picks[int(index) % parts] = gather
    if not picks or len(picks) != len(gathers):
        return None
    return parts, [unsq, trans, squeeze, *gathers], picks


def _split_and_squeeze(graph, reshape, parts: int, picks: dict, name: str) -> list:
    """Split(reshape's output, axis 2) into `parts`, and a Squeeze per picked part writing its Gather's output."""
    from onnx import helper, numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.ones(parts, np.int64), f"{name}_sizes"))
    graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), f"{name}_axis"))
    pieces = [f"{name}_{j}" for j in range(parts)]
    new = [helper.make_node("Split", [reshape.output[0], f"{name}_sizes"], pieces, name=name, axis=2)]
    return new + [helper.make_node("Squeeze", [pieces[j], f"{name}_axis"], [gather.output[0]],
                                   name=f"{name}_squeeze_{j}") for j, gather in sorted(picks.items())]


def _replace_nodes(graph, insert: dict[int, list], drop: set[int]) -> None:
    """Rebuild the node list in order: nodes whose id is in `drop` go, insert[id(n)] follows n."""
    nodes = []
    for n in graph.node:
        if id(n) not in drop:
            nodes.append(n)
        nodes.extend(insert.get(id(n), ()))
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)


_LAYOUT_OPS = ("Transpose", "Reshape")


def _layout_chain(g: _Graph, name: str, outputs: set) -> list:
    """The Transpose/Reshape nodes producing `name`, top first, each read by nothing but the next."""
    chain = []
    node = g.producer.get(name)
    while (node is not None and node.op_type in _LAYOUT_OPS and node.output[0] not in outputs
           and len(g.consumers.get(node.output[0], [])) == 1):
        chain.insert(0, node)
        node = g.producer.get(node.input[0])
    return chain


def quantize_before_transpose(model) -> int:
    """Transpose/Reshape chain -> QuantizeLinear  becomes  QuantizeLinear -> the same chain, in place;
    returns how many QuantizeLinear nodes moved.

    Per-tensor quantization is element-wise, so it commutes with any permutation or reshape: the
    result is identical. The transposes then move 8-bit data instead of float (a ViT's head split of
    q, k and v before the attention matmuls). The whole chain moves, not only the last Transpose:
    with a Reshape left above the QuantizeLinear, ORT's QDQ propagation puts a float Q/DQ pair back
    in front of it. Only when every node of the chain feeds nothing but the next and the scale is a
    scalar (a per-axis scale would need its axis mapped through the chain).
    """
    g = _Graph(model)
    outputs = set(g.outputs)
    moved = 0
    for q in (n for n in g.nodes if n.op_type == "QuantizeLinear"):
        chain = _layout_chain(g, q.input[0], outputs)
        scale = g.const(q.input[1]) if len(q.input) > 1 else None
        if not any(n.op_type == "Transpose" for n in chain) or scale is None or scale.size != 1:
            continue
        quantized = q.output[0]
        q.input[0], q.output[0] = chain[0].input[0], f"{quantized}_before_layout"
        previous = q.output[0]
        for i, node in enumerate(chain):   # fresh names: the old ones carry float value_info
            node.input[0] = previous
            node.output[0] = quantized if i == len(chain) - 1 else f"{node.output[0]}_quantized"
            previous = node.output[0]
        moved += 1
    if moved:
        from rali_edge.quantize._graph import topological_sort

        topological_sort(model.graph)   # each chain now reads the QuantizeLinear listed after it
    return moved


def _drop_unused_initializers(graph) -> None:
    """Remove initializers no node reads any more (the rewrite above orphans shape constants)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
