"""ONNX Runtime static INT8 quantization (QDQ, per-channel s8 weights) of an exported scorer.

Steps: optional pre-processing (ORT's `quant_pre_process` with `skip_symbolic_shape=True`, because
symbolic shape inference fails on exported transformer graphs; the model must be a single file), then
the float plan (patterns.py: head, LayerNorm, Softmax, GELU stay float), then `quantize_static` fed
by the calibration set. Profiles: "cpu" = u8 activations (asymmetric) + s8 symmetric per-channel
weights; "tensorrt" = s8 symmetric activations and weights. Weights with no channel axis (the 1-D scale
of a LayerNormalization that op_types asks to quantize) are declared per-tensor up front
(`per_tensor_overrides`), which is what ORT falls back to anyway, minus its warning for each one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_path
from rali_edge.errors import ConfigError, ExportError
from rali_edge.quantize.config import OnnxInt8Config, TensorRTInt8Config
from rali_edge.quantize.patterns import FloatPlan, find_float_nodes

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet

_ONNX_FLOAT = 1
_ONNX_UINT8 = 2
# ORT's histogram calibrators (entropy, percentile) stack all batches with np.asarray, so they need
# batches of one shape; MinMax reduces inside the graph and takes a ragged last batch.
_EQUAL_BATCH_METHODS = ("entropy", "percentile")

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_stdout(what: str) -> Iterator[None]:
    """Capture what a third-party quantizer prints to stdout and send it to this module's logger.

    ORT's calibrators (HistogramCollector, "Collecting tensor data and making histogram ...", thresholds)
    and ModelOpt report with bare print() calls; library code must not write to the caller's stdout
    (a CLI may be piping JSON there), so the text is kept at DEBUG level instead of being lost.
    """
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        if buf.getvalue().strip():
            _log.debug("%s printed:\n%s", what, buf.getvalue().rstrip())


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def _profile_types(profile: str):
    from onnxruntime.quantization import QuantType

    # (activation type, weight type, activations symmetric)
    return {"cpu": (QuantType.QUInt8, QuantType.QInt8, False),
            "tensorrt": (QuantType.QInt8, QuantType.QInt8, True)}[profile]


def model_input(model) -> tuple[str, int, int | None]:
    """(name, ONNX element type, fixed batch or None) of the model's single image input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ConfigError(f"expected one image input, found {[i.name for i in inputs]}")
    t = inputs[0].type.tensor_type
    dim0 = t.shape.dim[0] if t.shape.dim else None
    batch = dim0.dim_value if dim0 is not None and dim0.HasField("dim_value") else None
    return inputs[0].name, t.elem_type, batch


def input_kind_of(model, elem_type: int) -> str:
    """"uint8", "unit" or "normalized", from the exporter's metadata (float input without it is ambiguous)."""
    if elem_type == _ONNX_UINT8:
        return "uint8"
    if elem_type != _ONNX_FLOAT:
        raise ConfigError(f"unsupported image input element type {elem_type} (uint8 or float32 expected)")
    kind = {p.key: p.value for p in model.metadata_props}.get("rali_edge.input_kind")
    if kind not in ("unit", "normalized"):
        raise ConfigError("the model takes float input but its metadata does not say whether it is 'unit' "
                          "([0, 1]) or 'normalized' (mean/std applied); export it with rali_edge.export")
    return kind


def equal_batch_size(count: int, batch: int) -> int:
    """The largest size <= `batch` that cuts `count` images into equal batches (13 images, 8 -> 1)."""
    return next(b for b in range(min(batch, count), 0, -1) if count % b == 0) if count else batch


def feed_batches(calibration: CalibrationSet, input_kind: str, batch: int, fixed: bool,
                 equal: bool = False) -> list[np.ndarray]:
    """Calibration pixels converted to the model's input kind, cut in batches of the model's batch.

    A fixed-batch model only gets full batches. With `equal` (histogram calibrators), a dynamic-batch
    model gets batches all of one size, smaller than `batch` when needed so that no image is dropped.
    """
    pixels = calibration.pixels
    if input_kind in ("unit", "normalized"):
        pixels = pixels.astype(np.float32) / np.float32(255.0)
    if input_kind == "normalized":
        pre = calibration.provenance.get("preprocess")
        if not pre:
            raise ConfigError("the model takes normalised input but the calibration set has no preprocess")
        pixels = (pixels - np.asarray(pre["mean"], np.float32).reshape(1, 3, 1, 1)) / np.asarray(
            pre["std"], np.float32).reshape(1, 3, 1, 1)
    if equal and not fixed:
        batch = equal_batch_size(len(pixels), batch)
    chunks = [pixels[i:i + batch] for i in range(0, len(pixels), batch)]
    if fixed:
        chunks = [c for c in chunks if len(c) == batch]
        if not chunks:
            raise ConfigError(f"the model has a fixed batch of {batch} but only {len(pixels)} calibration images")
    return chunks


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over prepared batches, with a progress bar."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        from tqdm.auto import tqdm

        self._it = iter(batches)
        self._name = name
        self._bar = tqdm(total=len(batches), desc="calibrating", unit="batch", leave=False)

    def get_next(self):
        batch = next(self._it, None)
        if batch is None:
            self._bar.close()
            return None
        self._bar.update(1)
        return {self._name: batch}

    def rewind(self) -> None:  # ORT >= 1.17 may call this; one pass is all we need
        return None


def preprocess_model(source: Path, out: Path) -> Path:
    """ORT quantization pre-processing without symbolic shape inference (REFERENCE 7)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - ORT raises bare Exceptions; re-raised with context
        raise ExportError(f"{source}: quant_pre_process failed ({type(exc).__name__}: {exc}); "
                          "set preprocess=False to quantize the exported graph as is") from exc
    return out


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


def plan_for(model, config: OnnxInt8Config) -> FloatPlan:
    plan = find_float_nodes(model, keep_head=config.keep_head_float, keep_layernorm=config.exclude_layernorm,
                            keep_softmax=config.exclude_softmax, keep_gelu=config.exclude_gelu,
                            keep_stem=config.keep_stem_float)
    names = {n.name for n in model.graph.node}
    missing = [n for n in config.extra_float_nodes if n not in names]
    if missing:
        raise ConfigError(f"extra_float_nodes not in the graph: {missing[:5]}")
    # Excluded by name: ORT's "MatMulConstBOnly" option only acts in QOperator format, not in QDQ.
    attention = () if config.quantize_attention_matmuls else tuple(n.name for n in activation_matmuls(model))
    return dataclasses.replace(plan, extra=tuple(dict.fromkeys(config.extra_float_nodes + attention)))


def signed_operand_overrides(model, config: OnnxInt8Config, excluded) -> dict[str, list[dict]]:
    """`TensorQuantOverrides` making the second operand of each quantized activation MatMul symmetric
    s8 (config.signed_attention_operands, cpu profile; the tensorrt profile is all s8 already)."""
    if not (config.signed_attention_operands and config.profile == "cpu"):
        return {}
    from onnxruntime.quantization import QuantType

    skip = set(excluded)
    return {n.input[1]: [{"quant_type": QuantType.QInt8, "symmetric": True}]
            for n in activation_matmuls(model) if n.name not in skip}


def quantize_onnx_int8(config: OnnxInt8Config, source: Path, out: Path, calibration: CalibrationSet) -> dict:
    """Write the INT8 QDQ model to `out` (atomically); returns what was kept float and how."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    act_type, weight_type, act_sym = _profile_types(config.profile)
    with tempfile.TemporaryDirectory(prefix="rali-q-") as tmp:
        model_path = Path(source)
        if config.preprocess:
            model_path = preprocess_model(model_path, Path(tmp) / "pre.onnx")
        model = onnx.load(str(model_path))
        plan = plan_for(model, config)  # names unnamed nodes in place
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        name, elem_type, fixed_batch = model_input(model)
        kind = input_kind_of(model, elem_type)
        batches = feed_batches(calibration, kind, fixed_batch or config.calibration_batch, bool(fixed_batch),
                               equal=config.method in _EQUAL_BATCH_METHODS)
        extra = {
            "ActivationSymmetric": act_sym,
            "WeightSymmetric": True,
            "CalibPercentile": config.percentile,
            "OpTypesToExcludeOutputQuantization": list(config.float_output_ops),
            # Not "CalibMaxIntermediateOutputs": ORT 1.32 raises "No data is collected" when the batch
            # count is a multiple of it (it flushes, then finds nothing left at the end).
        }
        signed = signed_operand_overrides(model, config, plan.all())
        overrides = {**per_tensor_overrides(model, config.op_types, plan.all(), config.per_channel), **signed}
        if overrides:
            extra["TensorQuantOverrides"] = overrides
            _log.debug("tensor overrides (per-tensor weights, signed attention operands): %s", sorted(overrides))
        with atomic_path(out) as tmp_out:
            try:
                with quiet_stdout("onnxruntime.quantization"):
                    quantize_static(
                        str(named), str(tmp_out), _Reader(name, batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(config.op_types), per_channel=config.per_channel,
                        reduce_range=False, activation_type=act_type, weight_type=weight_type,
                        nodes_to_exclude=plan.all(), calibrate_method=_method(config.method),
                        extra_options=extra,
                    )
            except Exception as exc:  # noqa: BLE001 - ORT raises bare Exceptions; re-raised with context
                raise ExportError(f"{source}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
            rewrites = _post_process(Path(tmp_out), config)
    return {"float_nodes": plan.summary(), "float_node_names": plan.all(), "calibration_batches": len(batches),
            "preprocessed": config.preprocess, "activation_type": str(act_type), "weight_type": str(weight_type),
            "signed_attention_operands": len(signed), **rewrites}


def _post_process(path: Path, config: OnnxInt8Config) -> dict[str, int]:
    """The exact rewrites of ort_fusions on the quantized file at `path`; how many of each were made."""
    import onnx

    from rali_edge.quantize.ort_fusions import fuse_matmul_bias, quantize_before_transpose, split_packed_qkv

    model = onnx.load(str(path))
    counts = {"qkv_splits": split_packed_qkv(model) if config.split_qkv else 0,
              "bias_fused_matmuls": fuse_matmul_bias(model) if config.bias_fusion else 0,
              "quantize_moved_before_transpose": quantize_before_transpose(model) if config.early_quantize else 0}
    if any(counts.values()):
        onnx.save_model(model, str(path))
    return counts


def quantize_for_tensorrt(config: TensorRTInt8Config, source: Path, out: Path,
                          calibration: CalibrationSet) -> tuple[dict, list[str]]:
    """Q/DQ ONNX for TensorRT's explicit quantization (the engine is built by export/tensorrt.py).

    quantizer "ort": the `tensorrt` profile above (symmetric s8 activations and weights, head and
    LayerNorm/Softmax/GELU float). quantizer "modelopt": NVIDIA ModelOpt's ONNX quantizer, which
    places Q/DQ the way TensorRT fuses them; it must be installed (`pip install nvidia-modelopt[onnx]`).
    """
    if config.quantizer == "modelopt":
        return _modelopt(config, source, out, calibration)
    ort_config = OnnxInt8Config(profile="tensorrt", method=config.method, keep_head_float=config.keep_head_float,
                                keep_stem_float=config.keep_stem_float, fuse_bias=False,
                                calibration_batch=config.calibration_batch,
                                # TensorRT fuses Q/DQ around GEMMs itself; float outputs are the norm there.
                                float_output_ops=("MatMul", "Gemm"))
    return quantize_onnx_int8(ort_config, source, out, calibration), []


def _modelopt(config: TensorRTInt8Config, source: Path, out: Path, calibration: CalibrationSet) -> tuple[dict, list[str]]:
    import importlib.util

    import onnx

    if importlib.util.find_spec("modelopt") is None:
        raise ConfigError("quantizer='modelopt' needs NVIDIA ModelOpt (pip install 'nvidia-modelopt[onnx]'), "
                          "which is not installed here; use quantizer='ort'")
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    methods = {"minmax": "max", "entropy": "entropy"}
    if config.method not in methods:
        raise ConfigError(f"ModelOpt has no {config.method!r} calibration; use one of {sorted(methods)}")
    model = onnx.load(str(source))
    name, elem_type, fixed = model_input(model)
    kind = input_kind_of(model, elem_type)
    pixels = np.concatenate(feed_batches(calibration, kind, fixed or len(calibration), bool(fixed)))
    plan = find_float_nodes(model, keep_head=config.keep_head_float, keep_stem=config.keep_stem_float)
    with tempfile.TemporaryDirectory(prefix="rali-mo-") as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        with atomic_path(out) as tmp_out, quiet_stdout("modelopt.onnx.quantization"):
            modelopt_quantize(str(named), quantize_mode="int8", calibration_data={name: pixels},
                              calibration_method=methods[config.method],
                              nodes_to_exclude=list(plan.head + plan.stem), output_path=str(tmp_out))
    return {"quantizer": "modelopt", "float_nodes": plan.summary()}, [
        "ModelOpt keeps its own exclusions (LayerNorm, GELU, attention core) and leaves the rest in FP16 by default"]
