"""ExecuTorch programs (.pte) of the folded scorer: lowering to XNNPACK, the FP16 and INT8 variants,
metadata, and validation in ExecuTorch's own runtime.

Path: `torch.export` -> `to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])` ->
`.to_executorch()`. Two exact graph rewrites first (`delegable_shapes`) let XNNPACK take the views
and no-op expands it would otherwise refuse (113 -> 29 partitions on a ViT-B/16 with a dynamic batch).
What XNNPACK has no kernel for (LayerNorm, the class-token select, the head's L2 norm) runs in
ExecuTorch's portable kernels between partitions; `partition_summary` reports them.

Metadata is written twice: as a constant method `rali_edge_metadata` inside the program (a JSON
string, readable by any ExecuTorch runtime with `execute("rali_edge_metadata")`), and as a sidecar
`<artifact>.json` for tools that cannot load the program. Runners read the program's copy first.

A dynamic batch axis is bounded (DYNAMIC_MAX_BATCH): ExecuTorch plans its memory for the largest
batch (about 1.8 MB per image of the bound for a ViT-B/16). Runners run larger batches in chunks of
the bound, which they read back from the program's input shape.

executorch and torchao are imported inside the functions: `import rali_edge` stays light.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ExportError, ValidationFailed

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rali_edge.export.spec import ExportSpec

EXTRA = "pip install 'rali-edge[executorch]'"
METADATA_METHOD = "rali_edge_metadata"
SIDECAR_SUFFIX = ".json"
# The upper bound of a dynamic batch axis: the benchmark's speed batch, a phone-sized arena.
DYNAMIC_MAX_BATCH = 8
# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) of the dtypes we write.
SCALAR_TYPES = {0: "uint8", 5: "float16", 6: "float32"}


# ---------------------------------------------------------------- availability


def executorch_available() -> tuple[bool, str]:
    """(True, "") when ExecuTorch and torchao (its quantizer's base) can be imported here."""
    for module in ("executorch", "torchao"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed ({EXTRA})"
    return True, ""


def require_executorch() -> None:
    ok, why = executorch_available()
    if not ok:
        raise ExportError(f"the executorch format needs ExecuTorch: {why}")


def sidecar_path(artifact: str | Path) -> Path:
    p = Path(artifact)
    return p.with_name(p.name + SIDECAR_SUFFIX)


# ---------------------------------------------------------------- capture and lowering


def dynamic_shapes(spec: ExportSpec, max_batch: int | None = DYNAMIC_MAX_BATCH):
    """torch.export's dynamic_shapes for the batch axis (None for a fixed batch)."""
    from torch.export import Dim

    if not spec.dynamic:
        return None
    return ({0: Dim("batch", min=1, max=max_batch)},) if max_batch else ({0: Dim("batch", min=1)},)


def capture(module: nn.Module, spec: ExportSpec, max_batch: int | None = DYNAMIC_MAX_BATCH):
    """torch.export of `module` on the spec's example input (non-strict: the towers use Python control flow)."""
    import torch

    example = (spec.example_inputs(),)
    return torch.export.export(module, example, dynamic_shapes=dynamic_shapes(spec, max_batch), strict=False)


def lower(exported, props: dict[str, str]) -> tuple[bytes, dict]:
    """XNNPACK-delegated program bytes, with `props` as the constant method METADATA_METHOD."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(exported, transform_passes=[delegable_shapes],
                                       partitioner=[XnnpackPartitioner()],
                                       constant_methods={METADATA_METHOD: json.dumps(props, sort_keys=True)})
    details = partition_summary(edge.exported_program().graph_module)
    program = edge.to_executorch()
    plan = next(p for p in program.executorch_program.execution_plan if p.name == "forward")
    details["planned_memory_bytes"] = int(sum(plan.non_const_buffer_sizes))
    return program.buffer, details


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


def float_weight_bytes(module: nn.Module) -> int:
    """Size of the float32 weights: what an INT8 program is compared with (there is no float file)."""
    tensors = [*module.parameters(), *module.buffers()]
    return int(sum(t.numel() * 4 for t in tensors if t.is_floating_point()))


# ---------------------------------------------------------------- FP16


def cast_module(dtype: torch.dtype) -> nn.Module:
    """A module that casts its input to `dtype` (built here: torch is imported lazily)."""
    from torch import nn

    class Cast(nn.Module):
        def forward(self, x):
            return x.to(dtype)

    return Cast()


def float32_layer_norm(norm: nn.LayerNorm) -> nn.Module:
    """`norm` computed in float32 on float16 input, its output cast back to float16."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    class Float32LayerNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = copy.deepcopy(norm).float()

        def forward(self, x):
            n = self.norm
            return F.layer_norm(x.to(torch.float32), n.normalized_shape, n.weight, n.bias, n.eps).to(x.dtype)

    return Float32LayerNorm()


def half_encoder(folded: nn.Module) -> nn.Module:
    """FP16 here: the image encoder (the trunk: patch conv with the folded normalisation, the
    transformer, the pooling) runs in float16, weights and activations, except its LayerNorms; its
    input is cast from the uint8 pixels and its pooled output back to float32. LayerNorm stays
    float32 because ExecuTorch runs it outside XNNPACK, in portable kernels whose float16 LayerNorm
    is wrong at ViT-B width (score off by 1.3 on a ViT-B/16; exact in float32). The head (PCA
    projection, cosine similarity, softmax, weighted sum) stays float32: a few small matmuls, and the
    softmax over 1/tau-scaled logits is where float16 would lose most. Input uint8, score float32."""
    import torch
    from torch import nn

    trunk = folded.trunk.half()
    for name, module in list(trunk.named_modules()):
        if isinstance(module, nn.LayerNorm):
            parent, _, attr = name.rpartition(".")
            setattr(trunk.get_submodule(parent) if parent else trunk, attr, float32_layer_norm(module))
    folded.trunk = nn.Sequential(cast_module(torch.float16), trunk, cast_module(torch.float32))
    return folded


# ---------------------------------------------------------------- INT8 (PT2E)


def quantize_int8(folded: nn.Module, spec: ExportSpec, config, pixels: np.ndarray | None) -> tuple[nn.Module, dict]:
    """PT2E INT8 with XNNPACKQuantizer (ExecuTorchInt8Config says what): annotate, calibrate on
    `pixels` (uint8 NCHW; static activations only), convert. Returns the quantized graph module (to
    be exported again with the job's spec) and what was quantized."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = config.activations == "dynamic"
    qconfig = get_symmetric_quantization_config(is_per_channel=config.per_channel, is_dynamic=dynamic)
    quantizer = XNNPACKQuantizer()
    if config.keep_head_float:
        quantizer.set_module_name("trunk", qconfig)   # FoldedScorer.trunk: the image encoder
    else:
        quantizer.set_global(qconfig)
    # Captured with an unbounded dynamic batch whatever the job's batch: calibration chunks of any size.
    graph = capture(folded, _dynamic_spec(spec), max_batch=None).module()
    stem = stem_nodes(graph) if config.keep_stem_float else set()
    quantizer.set_filter_function(_quantizable(stem, config.quantize_elementwise))
    prepared = prepare_pt2e(graph, quantizer)
    if config.needs_calibration:
        if pixels is None or len(pixels) == 0:
            raise ExportError("static INT8 activations need calibration images")
        calibrate(prepared, pixels, config.calibration_batch)
    else:   # the weight observers still need one pass; dynamic activation observers keep no ranges
        calibrate(prepared, spec.example_inputs().numpy(), config.calibration_batch)
    converted = convert_pt2e(prepared)
    n = _count_quantize_ops(converted)
    if n == 0:   # e.g. FoldedScorer.trunk renamed: the name filter matched nothing; never ship float as int8
        raise ExportError("XNNPACKQuantizer quantized nothing in the folded scorer (no module named 'trunk'?)")
    ops = "conv, linear" + (", add, mul, cat" if config.quantize_elementwise else "")
    where = "image encoder" if config.keep_head_float else "image encoder and head"
    acts = "dynamic (scales computed at run time)" if dynamic else "static (per-tensor scales from calibration)"
    return converted, {"quantized": f"{where}: {ops}; activations {acts}", "float": _float_parts(config),
                       "per_channel": config.per_channel, "float_stem": sorted(stem), "quantize_ops": n,
                       "calibration_images": 0 if pixels is None or dynamic else int(len(pixels))}


# The element-wise ops XNNPACKQuantizer would quantize: in a ViT they carry the residual stream.
_ELEMENTWISE = frozenset({"add", "add_", "mul", "mul_", "cat"})


def _quantizable(stem: set[str], elementwise: bool):
    """The quantizer's node filter: nothing in the stem, element-wise ops only when asked."""
    def keep(node) -> bool:
        return node.name not in stem and (elementwise or _base(node) not in _ELEMENTWISE)

    return keep


def _count_quantize_ops(graph_module) -> int:
    return sum(1 for node in graph_module.graph.nodes
               if node.op == "call_function" and "quantize_per_tensor" in str(node.target)
               and "dequantize" not in str(node.target))


def _dynamic_spec(spec: ExportSpec) -> ExportSpec:
    import dataclasses

    return dataclasses.replace(spec, batch=None)


def _float_parts(config) -> list[str]:
    parts = ["attention matmuls", "layer norm", "softmax", "GELU"]
    if not config.quantize_elementwise:
        parts.append("element-wise adds and muls (the residual stream)")
    if config.keep_stem_float:
        parts.append("stem: the full-resolution convolutions and the element-wise ops before them")
    if config.keep_head_float:
        parts.append("head: PCA projection, cosine similarity, softmax, weighted sum")
    return parts


def calibrate(prepared: nn.Module, pixels: np.ndarray, batch: int) -> None:
    import torch

    with torch.no_grad():
        for start in range(0, len(pixels), batch):
            prepared(torch.from_numpy(np.ascontiguousarray(pixels[start:start + batch])))


# Ops that keep the picture's grid (element-wise, normalisation): the stem walk passes through them.
_SAME_GRID = frozenset({"to", "_to_copy", "mul", "add", "add_", "sub", "div", "relu", "relu_", "batch_norm",
                        "hardtanh", "hardtanh_", "clamp", "sigmoid", "silu", "silu_", "gelu"})
_CONV = frozenset({"conv2d", "convolution"})


def stem_nodes(graph_module) -> set[str]:
    """Names of the nodes that read the picture at full resolution, as quantize.patterns.find_stem
    finds them in ONNX: from the image input through element-wise ops to the first convolution, then
    every stride-1 convolution reached from it through element-wise ops, and those ops, before any
    pooling, strided convolution or reshape. A ViT gives its patch convolution, a ResNet its stem."""
    nodes = list(graph_module.graph.nodes)
    frontier = [n for n in nodes if n.op == "placeholder"]
    region: set[str] = set()
    first: list = []
    while frontier and not first:
        nxt = []
        for user in (u for n in frontier for u in n.users if u.name not in region):
            if _base(user) in _CONV:
                first.append(user)
            elif _base(user) in _SAME_GRID:
                nxt.append(user)
            else:
                continue
            region.add(user.name)
        frontier = nxt
    pending = list(first)
    while pending:
        for user in pending.pop().users:
            if user.name in region:
                continue
            if (_base(user) in _CONV and _stride_one(user)) or _base(user) in _SAME_GRID:
                region.add(user.name)
                pending.append(user)
    return region


def _base(node) -> str:
    return getattr(node.target, "__name__", "").split(".")[0] if node.op == "call_function" else ""


def _stride_one(node) -> bool:
    stride = node.args[3] if len(node.args) > 3 else node.kwargs.get("stride", 1)
    return all(s == 1 for s in (stride if isinstance(stride, (list, tuple)) else [stride]))


# ---------------------------------------------------------------- validation in ExecuTorch


def validate_program(path: Path, spec: ExportSpec, pixels: np.ndarray, reference: dict[str, np.ndarray],
                     props: dict[str, str]) -> dict:
    """Interface, then metadata, then shapes, then values, run by ExecuTorch's runtime; every failure
    is collected before ValidationFailed is raised."""
    from rali_edge.export.onnx import check_shapes, check_single, check_values
    from rali_edge.runtime.executorch_runner import ExecuTorchRunner

    try:
        runner = ExecuTorchRunner(path)
    except Exception as exc:  # ExecuTorch raises RuntimeError with a status code; name the file
        raise ValidationFailed([f"{path}: ExecuTorch cannot load it: {exc}"]) from exc
    failures = check_interface(runner.program.metadata("forward"), spec)
    if read_program_metadata(runner.program) != props:
        failures.append(f"{path}: the metadata read back from the program differs from what was written")
    outs = {}
    try:
        outs = runner.run(pixels)
    except Exception as exc:  # a program that runs badly is a validation failure, with the reason
        failures.append(f"running {path} in ExecuTorch failed: {type(exc).__name__}: {exc}")
    report = {"n_images": int(len(pixels)), "tolerance": spec.tolerance, "runtime": "executorch"}
    if outs:
        check_shapes(outs, len(pixels), reference, failures)
        report.update(check_values(outs, reference, spec.tolerance, failures))
        if spec.dynamic and len(pixels) > 1:
            check_single(runner, pixels, outs, failures)
    if failures:
        raise ValidationFailed(failures)
    return report


def check_interface(meta, spec: ExportSpec) -> list[str]:
    """One uint8 input of the spec's shape (the batch: fixed, or the dynamic bound); float32 outputs."""
    failures = []
    if meta.num_inputs() != 1:
        return [f"the program takes {meta.num_inputs()} inputs, expected 1"]
    info = meta.input_tensor_meta(0)
    dtype = SCALAR_TYPES.get(info.dtype(), f"scalar type {info.dtype()}")
    if dtype != spec.input_dtype:
        failures.append(f"input dtype is {dtype}, expected {spec.input_dtype}")
    want = spec.input_shape(spec.batch if spec.batch is not None else DYNAMIC_MAX_BATCH)
    if tuple(info.sizes()) != tuple(want):
        failures.append(f"input shape (batch: its bound) is {list(info.sizes())}, expected {list(want)}")
    if meta.num_outputs() != len(spec.output_names):
        failures.append(f"the program has {meta.num_outputs()} outputs, expected {len(spec.output_names)}")
    for i in range(min(meta.num_outputs(), len(spec.output_names))):
        out = SCALAR_TYPES.get(meta.output_tensor_meta(i).dtype(), "other")
        if out != "float32":
            failures.append(f"output {spec.output_names[i]!r} is {out}, expected float32")
    return failures


def read_program_metadata(program) -> dict[str, str] | None:
    """The props stored in the program's METADATA_METHOD; None when the program has none."""
    if METADATA_METHOD not in program.method_names:
        return None
    (text,) = program.load_method(METADATA_METHOD).execute([])
    try:
        props = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ExportError(f"the program's {METADATA_METHOD} is not a JSON object ({exc})") from exc
    return props if isinstance(props, dict) else None
