"""The INT8 variant of an ExecuTorch program: PT2E static (or dynamic) quantization with
XNNPACKQuantizer, the full-resolution stem and (by default) the head kept float.

executorch, torchao and torch are imported inside the functions: `import rali_edge` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ExportError
from rali_edge.export.executorch_program import capture

if TYPE_CHECKING:
    from torch import nn

    from rali_edge.export.spec import ExportSpec


def float_weight_bytes(module: nn.Module) -> int:
    """Size of the float32 weights: what an INT8 program is compared with (there is no float file)."""
    tensors = [*module.parameters(), *module.buffers()]
    return int(sum(t.numel() * 4 for t in tensors if t.is_floating_point()))


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
