"""Find, by graph pattern, the ONNX nodes that must stay in float when a scorer is quantized.

Names differ between exporters (dynamo vs TorchScript) and after any rewrite, so nothing here looks
at node names: only op types, edges and constant values.

- head: from the PCA affine layer (CLIP projection and PCA folded into one) to the `score` output
  (PCA, L2 normalisation, basis similarity, softmax, score); quantizing it biases scores.
- LayerNormalization, Softmax: numerically fragile in int8.
- QuickGELU (CLIP's `x * sigmoid(1.702 x)`) and erf-GELU (`0.5 x (1 + erf(x / sqrt 2))`), and the
  fused `Gelu` op when an exporter emits it.
- stem: the convolutions that read the picture at full resolution (the first Conv after the image
  input, and the stride-1 Convs after it on the same pixel grid). Their activations carry the
  pixel-level cues a quality scorer reads (noise, blur, blocking); 8-bit activations there erase the
  faint ones (the demo's CNN tower lost 0.04 PLCC with its stem in INT8, 0.0004 with it float).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from rali_edge.errors import ConfigError

QUICK_GELU_ALPHA = 1.702
_TOL = 1e-2


@dataclass(frozen=True)
class FloatPlan:
    """Node names (after `ensure_node_names`) that stay float, grouped by why."""

    head: tuple[str, ...] = ()
    layernorm: tuple[str, ...] = ()
    softmax: tuple[str, ...] = ()
    gelu: tuple[str, ...] = ()
    stem: tuple[str, ...] = ()
    extra: tuple[str, ...] = field(default=())

    def all(self) -> list[str]:
        seen: dict[str, None] = {}
        for group in (self.head, self.layernorm, self.softmax, self.gelu, self.stem, self.extra):
            seen.update(dict.fromkeys(group))
        return list(seen)

    def summary(self) -> dict[str, int]:
        return {"head": len(self.head), "layernorm": len(self.layernorm), "softmax": len(self.softmax),
                "gelu": len(self.gelu), "stem": len(self.stem), "extra": len(self.extra)}


def ensure_node_names(model) -> None:
    """Give unnamed nodes unique names in place (ORT excludes nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"rali_{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    names = [n.name for n in model.graph.node]
    if len(set(names)) != len(names):
        # Duplicate names would make exclusion ambiguous: make them unique, keep first as is.
        seen: set[str] = set()
        for i, node in enumerate(model.graph.node):
            if node.name in seen:
                node.name = f"{node.name}__{i}"
            seen.add(node.name)


class _Graph:
    """Producer/consumer indexes and constant lookup over one ONNX graph (no subgraphs needed)."""

    def __init__(self, model):
        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output if out}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for inp in n.input:
                if inp:
                    self.consumers[inp].append(n)
        # Converted on first use: a ViT-L graph carries over a GB of weights that no lookup here needs.
        self._initializers = {t.name: t for t in model.graph.initializer}
        self._values: dict[str, np.ndarray | None] = {}
        self.outputs = [o.name for o in model.graph.output]
        self.inputs = [i.name for i in model.graph.input if i.name not in self._initializers]

    def _own_value(self, name: str) -> np.ndarray | None:
        """The value of an initializer or of a Constant node's `value` / `value_float`, else None."""
        from onnx import numpy_helper

        if name not in self._values:
            value = None
            if name in self._initializers:
                value = numpy_helper.to_array(self._initializers[name])
            else:
                node = self.producer.get(name)
                for attr in node.attribute if node is not None and node.op_type == "Constant" else ():
                    if attr.name == "value":
                        value = numpy_helper.to_array(attr.t)
                    elif attr.name == "value_float":
                        value = np.asarray(attr.f, dtype=np.float32)
            self._values[name] = value
        return self._values[name]

    def const(self, name: str) -> np.ndarray | None:
        """Constant value behind `name`, looking through Cast/Identity of a constant."""
        value = self._own_value(name)
        if value is not None:
            return value
        node = self.producer.get(name)
        if node is not None and node.op_type in ("Cast", "Identity") and node.input:
            return self.const(node.input[0])
        return None

    def scalar_near(self, name: str, value: float) -> bool:
        c = self.const(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) <= _TOL * abs(value)

    def ancestors(self, names: list[str]) -> set[int]:
        seen: set[int] = set()
        stack = [self.producer[n] for n in names if n in self.producer]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend(self.producer[i] for i in node.input if i in self.producer)
        return seen

    def descendants(self, node) -> set[int]:
        seen: set[int] = set()
        stack = [node]
        while stack:
            cur = stack.pop()
            for out in cur.output:
                for c in self.consumers.get(out, []):
                    if id(c) not in seen:
                        seen.add(id(c))
                        stack.append(c)
        return seen


_LINEAR_OPS = ("MatMul", "Gemm")


def _weight_input(g: _Graph, node) -> bool:
    """Whether one of the node's inputs is a constant (directly, or through Transpose/Cast/Identity)."""
    for name in node.input:
        producer = g.producer.get(name)
        if g.const(name) is not None or (producer is not None and producer.op_type == "Transpose"
                                         and producer.input and g.const(producer.input[0]) is not None):
            return True
    return False


def find_head(g: _Graph, output: str = "score") -> list:
    """The scoring head: from the PCA affine layer to `output` (PCA, L2 norm, basis, softmax, score).

    Pattern: the last Softmax on the path to `output` is fed by the basis similarity (a MatMul/Gemm with
    constant weights); walking up from the basis layer's activation input through the normalisation
    ops, the first MatMul/Gemm with constant weights is the PCA affine layer (the projection and the
    PCA folded into one). Every node that both descends from it and feeds `output` is the head. This
    holds for ViT and ResNet towers alike and never reads node names.
    """
    if output not in g.outputs:
        raise ConfigError(f"the graph has no output named {output!r} (outputs: {g.outputs})")
    up = g.ancestors([output])
    softmaxes = [n for n in g.nodes if n.op_type == "Softmax" and id(n) in up]
    soft_ids = {id(n) for n in softmaxes}
    last = [n for n in softmaxes if not (g.descendants(n) & soft_ids & up)]
    if len(last) != 1:
        raise ConfigError(f"found {len(last)} final Softmax nodes on the path to {output!r}; expected the "
                          "scoring head's one (is this a rali-edge scorer graph?)")
    basis = g.producer.get(last[0].input[0])
    if basis is None or basis.op_type not in _LINEAR_OPS:
        raise ConfigError("the scoring softmax is not fed by a MatMul/Gemm (basis similarity); "
                          "cannot locate the scoring head")
    affine = _first_linear_above(g, basis)
    after = g.descendants(affine) | {id(affine)}
    return [n for n in g.nodes if id(n) in after and id(n) in up]


def _first_linear_above(g: _Graph, basis) -> object:
    """Breadth-first up from the basis layer's non-constant input: the first MatMul/Gemm with weights."""
    frontier = [g.producer[i] for i in basis.input if i in g.producer and g.const(i) is None
                and g.producer[i].op_type != "Transpose"]
    seen: set[int] = set()
    while frontier:
        nxt = []
        for node in frontier:
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in _LINEAR_OPS and _weight_input(g, node):
                return node
            nxt.extend(g.producer[i] for i in node.input if i in g.producer)
        frontier = nxt
    raise ConfigError("no MatMul/Gemm with constant weights above the basis layer; cannot locate the PCA layer")


def find_quick_gelu(g: _Graph) -> list:
    """Mul(x, Sigmoid(Mul(x, 1.702))) in any operand order, plus its Sigmoid and inner Mul."""
    found = []
    for sig in (n for n in g.nodes if n.op_type == "Sigmoid"):
        inner = g.producer.get(sig.input[0])
        if inner is None or inner.op_type != "Mul":
            continue
        xs = [i for i in inner.input if not g.scalar_near(i, QUICK_GELU_ALPHA)]
        if len(xs) != 1 or len(inner.input) != 2:
            continue
        x = xs[0]
        for outer in g.consumers.get(sig.output[0], []):
            if outer.op_type == "Mul" and set(outer.input) == {x, sig.output[0]}:
                found.extend([inner, sig, outer])
    return found


def find_erf_gelu(g: _Graph) -> list:
    """0.5 * x * (1 + erf(x / sqrt(2))) (any association order), and fused Gelu nodes."""
    found = [n for n in g.nodes if n.op_type == "Gelu"]
    for erf in (n for n in g.nodes if n.op_type == "Erf"):
        scale = g.producer.get(erf.input[0])
        if scale is None or not _is_div_sqrt2(g, scale):
            continue
        x = next(i for i in scale.input if g.const(i) is None)
        group = [scale, erf]
        add = _single_consumer(g, erf.output[0], "Add")
        if add is None:
            continue
        group.append(add)
        # Then Muls by 0.5 and by x in any order: 0.5 * (x * s), x * (0.5 * s) or (0.5 * x) * s.
        cur = add
        for _ in range(2):
            mul = _single_consumer(g, cur.output[0], "Mul")
            if mul is None:
                break
            other = [i for i in mul.input if i != cur.output[0]]
            half = g.producer.get(other[0]) if len(other) == 1 else None
            if half is not None and half.op_type == "Mul" and x in half.input and any(
                g.scalar_near(j, 0.5) for j in half.input
            ):
                group.extend([half, mul])
                break
            if not (x in other or any(g.scalar_near(i, 0.5) for i in other)):
                break
            group.append(mul)
            cur = mul
        found.extend(group)
    return found


def _is_div_sqrt2(g: _Graph, node) -> bool:
    if node.op_type == "Div":
        return g.scalar_near(node.input[1], float(np.sqrt(2.0)))
    if node.op_type == "Mul":
        return any(g.scalar_near(i, float(1 / np.sqrt(2.0))) for i in node.input)
    return False


def _single_consumer(g: _Graph, name: str, op_type: str):
    users = g.consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


# Ops that leave the pixel grid of their input as it is: the stem search walks through them.
_SAME_GRID_OPS = frozenset({"Cast", "Identity", "Mul", "Add", "Sub", "Div", "Relu", "Clip", "LeakyRelu", "PRelu",
                            "Elu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "BatchNormalization"})


def _stride_one(node) -> bool:
    strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [])
    return all(s == 1 for s in strides)


def find_stem(g: _Graph) -> list:
    """The Convs that read the picture at full resolution: the first Conv on the way from the image
    input (through element-wise ops only, e.g. the input normalisation), then every stride-1 Conv
    reached from it through element-wise ops, before any pooling, strided Conv or reshape.

    A ResNet stem (conv, conv, conv, pool) gives its three convs, a ViT its patch convolution."""
    first: list = []
    frontier, seen = list(g.inputs), set()
    while frontier and not first:
        nxt = []
        for name in frontier:
            for node in g.consumers.get(name, []):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type == "Conv":
                    first.append(node)
                elif node.op_type in _SAME_GRID_OPS:
                    nxt.extend(node.output)
        frontier = nxt
    stem, tensors = list(first), [o for n in first for o in n.output]
    while tensors:
        for node in g.consumers.get(tensors.pop(), []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Conv" and _stride_one(node):
                stem.append(node)
                tensors.extend(node.output)
            elif node.op_type in _SAME_GRID_OPS:
                tensors.extend(node.output)
    return stem


def find_float_nodes(model, keep_head: bool = True, keep_layernorm: bool = True, keep_softmax: bool = True,
                     keep_gelu: bool = True, keep_stem: bool = True, output: str = "score") -> FloatPlan:
    """What stays float in `model` (an onnx.ModelProto); names nodes first if they are unnamed."""
    ensure_node_names(model)
    g = _Graph(model)
    names = lambda nodes: tuple(dict.fromkeys(n.name for n in nodes))  # noqa: E731
    return FloatPlan(
        head=names(find_head(g, output)) if keep_head else (),
        layernorm=names(n for n in g.nodes if n.op_type == "LayerNormalization") if keep_layernorm else (),
        softmax=names(n for n in g.nodes if n.op_type == "Softmax") if keep_softmax else (),
        gelu=names(find_quick_gelu(g) + find_erf_gelu(g)) if keep_gelu else (),
        stem=names(find_stem(g)) if keep_stem else (),
    )


def transformer_blocks(model) -> list[list[str]]:
    """Node names grouped by transformer block: each block runs from one LayerNorm pair to the next.

    A pre-norm ViT block holds two LayerNorms (ln_1, ln_2); nodes are assigned to the block of the
    most recent ln_1 in topological order. Used by the sensitivity search to quantize one block at a time.
    """
    ensure_node_names(model)
    g = _Graph(model)
    head = {n.name for n in find_head(g)}
    norms = [i for i, n in enumerate(g.nodes) if n.op_type == "LayerNormalization"]
    # ln_pre, then (ln_1, ln_2) per block, then ln_post: block starts are every second norm after ln_pre.
    if len(norms) < 4 or (len(norms) - 2) % 2:
        raise ConfigError(f"cannot split {len(norms)} LayerNorms into ln_pre + 2 per block + ln_post")
    starts = norms[1:-1:2]
    blocks: list[list[str]] = []
    for b, start in enumerate(starts):
        end = starts[b + 1] if b + 1 < len(starts) else norms[-1]
        blocks.append([n.name for n in g.nodes[start:end] if n.name not in head])
    return blocks


@dataclass(frozen=True)
class SensitivityUnit:
    """What the sensitivity search quantizes (or keeps float) as one piece."""

    label: str                 # "block 3" or the layer's node name
    nodes: tuple[str, ...]


def sensitivity_units(model, op_types: tuple[str, ...], keep_stem: bool = True) -> tuple[str, list[SensitivityUnit]]:
    """(kind, units): transformer blocks for towers with LayerNorms (ViTs), else one unit per
    quantizable layer (`op_types` nodes outside the head, and outside the stem when it stays float
    anyway) for towers without any LayerNorm (CNNs, whose residual stages have no single boundary
    node to split at)."""
    ensure_node_names(model)
    if any(n.op_type == "LayerNormalization" for n in model.graph.node):
        blocks = transformer_blocks(model)
        return "transformer block", [SensitivityUnit(f"block {i}", tuple(b)) for i, b in enumerate(blocks)]
    g = _Graph(model)
    fixed = {n.name for n in find_head(g) + (find_stem(g) if keep_stem else [])}
    layers = [n.name for n in g.nodes if n.op_type in op_types and n.name not in fixed]
    if not layers:
        raise ConfigError("no quantizable layer outside the scoring head: nothing for the sensitivity search to rank")
    return "layer", [SensitivityUnit(name, (name,)) for name in layers]

