"""Small ONNX graph utilities the converters need (pure onnx protobuf work, no runtime)."""

from __future__ import annotations

import heapq
from collections import defaultdict

from rali_edge.errors import ExportError


def _subgraph_inputs(node) -> set[str]:
    """Outer-scope names a node's subgraphs (If/Loop/Scan bodies) read: implicit inputs of the node."""
    import onnx

    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(i for i in (*n.input, *_subgraph_inputs(n)) if i and i not in local)
    return names


def topological_sort(graph) -> None:
    """Reorder `graph.node` in place so every node comes after the producers of its inputs.

    Stable (Kahn's algorithm taking the earliest ready node first), so an already sorted graph is
    left unchanged. Needed after onnxruntime.transformers.float16, which appends the Cast nodes it inserts
    around blocked ops at the end of the node list, which onnx.checker rejects.
    """
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    indegree = [0] * len(nodes)
    users: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        deps = {producer[name] for name in (*n.input, *_subgraph_inputs(n)) if name in producer}
        deps.discard(i)
        indegree[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready = [i for i in range(len(nodes)) if indegree[i] == 0]  # already a heap: ascending
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indegree[u] -= 1
            if indegree[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = [nodes[i].name or nodes[i].op_type for i in range(len(nodes)) if indegree[i] > 0]
        raise ExportError(f"the graph has a cycle; cannot sort it (nodes involved: {stuck[:5]})")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
