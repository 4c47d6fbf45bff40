"""Exact edge-graph rewrites that let ExecuTorch's XNNPACK partitioner take more of the folded scorer,
and a summary of what it took (113 -> 29 partitions on a ViT-B/16 with a dynamic batch).

executorch and torch are imported inside the functions: `import rali_edge` stays light.
"""

from __future__ import annotations

from collections import Counter


def delegable_shapes(graph_module):
    """Exact edge-graph rewrites that let XNNPACK take more of the graph (run before partitioning):

    - a view whose target shape has exactly one symbolic size (the dynamic batch, or batch x heads)
      gets -1 there: XNNPACK's reshape infers one size but refuses symbolic ones, and every refused
      view splits the graph and runs as a portable copy;
    - an expand to its input's own shape (what torch.matmul's decomposition leaves around the
      attention bmm) is dropped: XNNPACK has no expand, so each one also split the graph.
    """
    from torch.fx.passes.infra.pass_base import PassResult

    changed = False
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "view_copy" in name:
            changed |= _infer_symbolic_size(node)
        elif "expand_copy" in name and _same_shape(node.args[0], node):
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
            changed = True
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, changed)


def _infer_symbolic_size(node) -> bool:
    shape = list(node.args[1])
    symbolic = [i for i, s in enumerate(shape) if not isinstance(s, int)]
    if len(symbolic) != 1 or -1 in shape:
        return False
    shape[symbolic[0]] = -1
    node.args = (node.args[0], shape, *node.args[2:])
    return True


def _same_shape(a, b) -> bool:
    va, vb = getattr(a, "meta", {}).get("val"), b.meta.get("val")
    return va is not None and vb is not None and tuple(va.shape) == tuple(vb.shape)


_NOT_COMPUTE = ("getitem", "sym_size", "executorch_call_delegate", "_operator")


def partition_summary(graph_module) -> dict:
    """How many XNNPACK partitions the program has and which ops run outside them (portable kernels)."""
    import operator

    calls = [n for n in graph_module.graph.nodes if n.op == "call_function"]
    delegates = sum(1 for n in calls if "executorch_call_delegate" in str(n.target))
    outside = Counter(
        _op_name(n.target) for n in calls
        if n.target not in (operator.getitem, operator.mul) and not any(w in str(n.target) for w in _NOT_COMPUTE)
    )
    return {"xnnpack_partitions": delegates, "outside_delegate": dict(sorted(outside.items()))}


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))   # EdgeOpOverload: "aten.native_layer_norm.default"
    return name.split(".")[-2] if name.count(".") >= 2 else name
