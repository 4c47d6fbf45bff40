"""An experiment, not shipped: ViT attention as one com.microsoft.MultiHeadAttention node (ORT's fused
CPU kernel), to measure whether a fused float attention beats the quantized q @ k / attn @ v.

The batch-first export (rali_edge/export/attention.py) writes, per block,
    q, k, v [B, L, H*D] -> Reshape [B, L, H, D] -> Transpose (q, v: 0,2,1,3; k: 0,2,3,1)
    -> MatMul(q, k) -> Softmax(-1) -> MatMul(., v) -> Transpose(0,2,1,3) -> Reshape [B, L, H*D]
with the 1/sqrt(D) scale folded into q; that is MultiHeadAttention(q, k, v, num_heads=H, scale=1),
exact up to float rounding. Applied to the FP32 graph before quantization, so the quantizer leaves
the attention float and quantizes the Q/K/V and output projections around it.
"""

from __future__ import annotations

from rali_edge.quantize.ort_fusions import _drop_unused_initializers
from rali_edge.quantize.patterns import _Graph

MS_DOMAIN = "com.microsoft"


def _perm(node) -> list[int] | None:
    from onnx import helper

    return next((list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"), None)


def _heads(g: _Graph, name: str, perm: list[int]):
    """(source [B, L, H*D], H, D, the Reshape and Transpose) when `name` = Transpose(perm)(Reshape(src))."""
    tr = g.producer.get(name)
    rs = g.producer.get(tr.input[0]) if tr is not None and tr.op_type == "Transpose" and _perm(tr) == perm else None
    shape = g.const(rs.input[1]) if rs is not None and rs.op_type == "Reshape" else None
    if shape is None or shape.size != 4 or shape[2] <= 0 or shape[3] <= 0:
        return None
    return rs.input[0], int(shape[2]), int(shape[3]), (tr, rs)


def _match(g: _Graph, qk, sole):
    """The MultiHeadAttention node replacing the attention that starts at MatMul `qk`, with the nodes it
    replaces and the one it stands in for; None when this is not the pattern above."""
    from onnx import helper

    q, k = _heads(g, qk.input[0], [0, 2, 1, 3]), _heads(g, qk.input[1], [0, 2, 3, 1])
    sm = sole(qk.output[0], "Softmax")
    av = sm and sole(sm.output[0], "MatMul")
    if not (q and k and av) or av.input[0] != sm.output[0] or any(a.i not in (-1, 3) for a in sm.attribute):
        return None
    v = _heads(g, av.input[1], [0, 2, 1, 3])
    tr = sole(av.output[0], "Transpose")
    rs = tr and sole(tr.output[0], "Reshape")
    shape = g.const(rs.input[1]) if rs else None
    if (v is None or shape is None or _perm(tr) != [0, 2, 1, 3] or not q[1:3] == k[1:3] == v[1:3]
            or shape.size != 3 or shape[2] != q[1] * q[2]
            or any(len(g.consumers[n.output[0]]) != 1 for part in (q, k, v) for n in part[3])):
        return None
    node = helper.make_node("MultiHeadAttention", [q[0], k[0], v[0]], [rs.output[0]], name=f"{qk.name}_mha",
                            domain=MS_DOMAIN, num_heads=q[1], scale=1.0)
    return node, rs, (qk, sm, av, tr, rs, *q[3], *k[3], *v[3])


def fuse_attention(model) -> int:
    """Rewrite every matching attention in place; returns how many."""
    from onnx import helper

    g = _Graph(model)
    outputs = set(g.outputs)

    def sole(name: str, op_type: str):
        users = g.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type and name not in outputs else None

    insert, drop = {}, set()
    for qk in (n for n in g.nodes if n.op_type == "MatMul"):
        found = _match(g, qk, sole)
        if found is not None:
            node, anchor, replaced = found
            insert[id(anchor)] = node
            drop.update(id(n) for n in replaced)
    if insert:
        nodes = [insert.get(id(n), n) for n in model.graph.node if id(n) in insert or id(n) not in drop]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        _drop_unused_initializers(model.graph)   # the head-split shapes
        if not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(insert)
