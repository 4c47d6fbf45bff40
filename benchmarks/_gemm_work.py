"""The GEMM work of an exported scorer, read from its FP32 ONNX graph: what "share of peak" divides by.

Every MatMul, Gemm and Conv is counted at 2 operations per multiply-add, from the shapes the exporter
recorded (`value_info`; the batch axis is symbolic, every other axis concrete). The weight GEMMs (a
2-D constant weight) also give the shapes the GEMM peaks are measured at (`_gemm_peaks.py`): the
model's own mix, not a square matrix the model never multiplies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Gemm:
    """One (rows x k) @ (k x n) product per image, `count` times per image; rows = tokens (or pixels)."""

    rows: int
    k: int
    n: int
    count: int
    weight: bool   # a constant 2-D weight (a Linear); False: activation x activation (attention) or Conv

    @property
    def ops(self) -> float:
        """Operations per image, all `count` of them."""
        return 2.0 * self.rows * self.k * self.n * self.count


@dataclass(frozen=True)
class GemmWork:
    gemms: tuple[Gemm, ...]
    uncounted: tuple[str, ...]   # nodes whose shapes the graph does not record

    @property
    def ops_per_image(self) -> float:
        return sum(g.ops for g in self.gemms)

    def peak_shapes(self, min_share: float = 0.01) -> tuple[Gemm, ...]:
        """The weight GEMMs that carry at least `min_share` of the weight-GEMM work, heaviest first."""
        weights = [g for g in self.gemms if g.weight]
        total = sum(g.ops for g in weights) or 1.0
        return tuple(sorted((g for g in weights if g.ops / total >= min_share), key=lambda g: -g.ops))


def _dims(shapes: dict, name: str) -> list[int] | None:
    """Concrete dims of `name` after the (symbolic) batch axis, or None if unknown."""
    dims = shapes.get(name)
    if dims is None or any(not isinstance(d, int) or d <= 0 for d in dims[1:]):
        return None
    return dims[1:]


def _shapes(model) -> dict[str, list]:
    out = {}
    for v in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    return out


def _node_gemm(node, shapes: dict, inits: dict) -> Gemm | None:
    if node.op_type == "Conv":
        out, w = _dims(shapes, node.output[0]), inits.get(node.input[1])
        if out is None or w is None:
            return None
        c_out, c_in_per_group, *kernel = w.dims
        return Gemm(rows=int(np.prod(out[1:])), k=c_in_per_group * int(np.prod(kernel)), n=c_out, count=1,
                    weight=False)
    a = _dims(shapes, node.input[0])
    if a is None:
        return None
    if node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
        k, n = inits[node.input[1]].dims
        trans_b = any(x.name == "transB" and x.i for x in node.attribute)
        return Gemm(rows=int(np.prod(a[:-1])), k=a[-1], n=k if trans_b else n, count=1, weight=True)
    b = _dims(shapes, node.input[1])
    if b is None:
        return None
    # batched activation x activation (q @ k^T, attn @ v): the leading axes are batch-like
    return Gemm(rows=a[-2], k=a[-1], n=b[-1], count=int(np.prod(a[:-2])), weight=False)


def gemm_work(fp32_onnx: Path) -> GemmWork:
    """Every GEMM of one image through the graph, equal shapes merged."""
    import onnx

    model = onnx.load(str(fp32_onnx))
    shapes, inits = _shapes(model), {t.name: t for t in model.graph.initializer}
    merged: dict[tuple, int] = {}
    uncounted = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        g = _node_gemm(node, shapes, inits)
        if g is None:
            uncounted.append(node.name or node.op_type)
            continue
        key = (g.rows, g.k, g.n, g.weight)
        merged[key] = merged.get(key, 0) + g.count
    gemms = tuple(Gemm(rows, k, n, count, weight) for (rows, k, n, weight), count in merged.items())
    return GemmWork(gemms, tuple(uncounted))
