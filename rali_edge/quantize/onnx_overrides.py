"""ORT `TensorQuantOverrides` for the static INT8 quantizer: per-tensor for weights without a channel axis,
symmetric s8 for the second operand of the attention matmuls (both chosen in onnx_int8)."""

from __future__ import annotations

from rali_edge.quantize.config import OnnxInt8Config

# The per-channel axis ORT's QDQ quantizer asks for, by op type, for the inputs it quantizes as weights
# (onnxruntime/quantization/operators/{conv,gemm,matmul,norm}.py, ORT 1.32): Conv and ConvTranspose
# weights, Gemm's B (axis 0 when transB), every constant input of MatMul, and the scale of the
# normalizations, for which ORT takes axis 1: the channel axis of an [N, C, ...] activation, not of the
# 1-D scale itself.
_NORM_OPS = ("LayerNormalization", "InstanceNormalization", "BatchNormalization")
_BIAS_OPS = ("Conv", "ConvTranspose", "Gemm", *_NORM_OPS)  # input 2 goes to ORT's int32 bias path


def _weight_axes(node) -> list[tuple[str, int]]:
    """(input name, ORT's default per-channel axis) for the inputs ORT treats as weights of `node`."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose") or op in _NORM_OPS:
        axis = 0 if op == "Conv" else 1
        return [(node.input[1], axis)] if len(node.input) > 1 and node.input[1] else []
    if op == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return [(node.input[1], 0 if trans_b else 1)]
    if op == "MatMul":
        return [(name, 1) for name in node.input if name]
    return []


def per_tensor_overrides(model, op_types, excluded, per_channel: bool) -> dict[str, list[dict]]:
    """ORT `TensorQuantOverrides` declaring per-tensor quantization for the weights that have no
    per-channel axis: initializers of a quantized node whose rank is too low for ORT's axis.

    With per_channel=True, ORT asks for axis 1 of a LayerNormalization's 1-D scale (its default for the
    normalizations), logs "Axis 1 is out-of-range for weight ... with rank 1" on the root logger once per
    consumer and quantizes it per-tensor. An empty override ([{}]: per-tensor, every parameter default)
    makes it take that same path without the warning: the quantized model is unchanged. Tensors that
    a quantized node also reads as a bias are left alone (an override would turn ORT's int32 bias into an
    int8 weight).
    """
    if not per_channel:
        return {}
    ranks = {t.name: len(t.dims) for t in model.graph.initializer}
    skip, ops = set(excluded), set(op_types)
    quantized = [n for n in model.graph.node if n.op_type in ops and n.name not in skip]
    biases = {n.input[2] for n in quantized if n.op_type in _BIAS_OPS and len(n.input) > 2 and n.input[2]}
    names = [name for n in quantized for name, axis in _weight_axes(n)
             if name in ranks and not -ranks[name] <= axis < ranks[name] and name not in biases]
    return {name: [{}] for name in dict.fromkeys(names)}


def activation_matmuls(model) -> list:
    """MatMul nodes whose two inputs are both computed (attention's q @ k and attn @ v), not weights."""
    from rali_edge.quantize.patterns import _Graph

    g = _Graph(model)
    return [n for n in g.nodes if n.op_type == "MatMul" and all(g.const(i) is None for i in n.input[:2])]


def signed_operand_overrides(model, config: OnnxInt8Config, excluded) -> dict[str, list[dict]]:
    """`TensorQuantOverrides` making the second operand of each quantized activation MatMul symmetric
    s8 (config.signed_attention_operands, cpu profile; the tensorrt profile is all s8 already)."""
    if not (config.signed_attention_operands and config.profile == "cpu"):
        return {}
    from onnxruntime.quantization import QuantType

    skip = set(excluded)
    return {n.input[1]: [{"quant_type": QuantType.QInt8, "symmetric": True}]
            for n in activation_matmuls(model) if n.name not in skip}
