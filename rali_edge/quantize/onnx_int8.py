"""ONNX Runtime static INT8 quantization (QDQ, per-channel s8 weights) of an exported scorer.

Steps: optional pre-processing (ORT's `quant_pre_process` with `skip_symbolic_shape=True`, because
symbolic shape inference fails on exported transformer graphs; the model must be a single file), then
the float plan (patterns.py: head, LayerNorm, Softmax, GELU stay float), then `quantize_static` fed
by the calibration set. Profiles: "cpu" = u8 activations (asymmetric) + s8 symmetric per-channel
weights; "tensorrt" = s8 symmetric activations and weights. Weights with no channel axis (the 1-D scale
of a LayerNormalization that op_types asks to quantize) are declared per-tensor up front
(`onnx_overrides.per_tensor_overrides`), which is what ORT falls back to anyway, minus its warning
for each one. The calibration set reaches ORT's calibrator through `onnx_feed`.
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
from rali_edge.quantize.onnx_feed import CalibrationReader, feed_batches, input_kind_of, model_input
from rali_edge.quantize.onnx_overrides import activation_matmuls, per_tensor_overrides, signed_operand_overrides
from rali_edge.quantize.patterns import FloatPlan, find_float_nodes

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet

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


def preprocess_model(source: Path, out: Path) -> Path:
    """ORT quantization pre-processing without symbolic shape inference (REFERENCE 7)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - ORT raises bare Exceptions; re-raised with context
        raise ExportError(f"{source}: quant_pre_process failed ({type(exc).__name__}: {exc}); "
                          "set preprocess=False to quantize the exported graph as is") from exc
    return out


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
                        str(named), str(tmp_out), CalibrationReader(name, batches), quant_format=QuantFormat.QDQ,
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
