"""OpenVINO INT8: NNCF post-training quantization of the float IR, calibrated on the project's sets.

What is quantized: NNCF's own placement for the graph (model type TRANSFORMER when the encoder has
LayerNorms, i.e. MVN ops: its attention and residual patterns and SmoothQuant; its CNN defaults
otherwise):
int8 symmetric per-channel weights (stored int8 in the .bin) and 8-bit activations, u8 asymmetric
(preset "mixed", the default) or s8 symmetric ("performance"). Stay float:
- the head (PCA projection, L2 normalisation, cosine logits, softmax, weighted sum): quantizing it
  moved the tiny random test scorers' scores by 0.11 (open_clip) and 0.80 (HF CLIP), against 0.002
  and 0.075 with it float (max |change| on the six sample photos);
- the stem (the full-resolution convolutions, as the other formats' keep_stem_float).
Calibration: one image per NNCF data item (NNCF warns that batched statistics can be inaccurate for
transformers), every image of the set.

Drift budget (export.openvino_budget): NNCF's accuracy control puts encoder ops back to float until
the PLCC drop on the labelled calibration set holds. The head stays float under a budget too, as in
ONNX's quantize_to_budget: PLCC cannot see a shift of the score scale, and offering the head to
accuracy control let through INT8 models within a PLCC budget of 0.05 whose scores moved by 0.15,
and by 37 (off the [1, 5] scale) at a budget of 0.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError

if TYPE_CHECKING:
    import openvino as ov

    from rali_edge.bundle import PreprocessConfig
    from rali_edge.calibration.sets import CalibrationSet
    from rali_edge.export.spec import ExportSpec
    from rali_edge.quantize.config import OpenVINOInt8Config

# Ops that carry the input's pixel grid unchanged: the stem walk passes through them.
SAME_GRID_OPS = frozenset({"Convert", "Multiply", "Add", "Subtract", "Divide", "Relu", "Clamp", "PRelu", "Elu",
                           "Sigmoid", "Tanh", "HSigmoid", "HSwish", "Swish", "Gelu", "BatchNormInference"})
COMPUTE_OPS = ("MatMul", "Convolution")
# Between an 8-bit value and the op reading it: weight dequantization, layout and pooling ops.
PASS_THROUGH_OPS = frozenset({"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "MaxPool", "AvgPool"})


def graph_inputs(pixels: np.ndarray, spec: ExportSpec, preprocess: PreprocessConfig) -> np.ndarray:
    """uint8 NCHW calibration pixels -> what the graph's input takes (as the runner converts them)."""
    want = (3, spec.image_size, spec.image_size)
    if pixels.ndim != 4 or pixels.shape[1:] != want or pixels.dtype != np.uint8:
        raise ConfigError(f"calibration pixels are {pixels.dtype} {list(pixels.shape)}; this scorer takes uint8 "
                          f"[N, {', '.join(map(str, want))}] (build the set with the bundle's preprocessing)")
    if spec.input_kind == "uint8":
        return np.ascontiguousarray(pixels)
    if spec.input_kind != "normalized":
        raise ConfigError(f"OpenVINO INT8 takes input kinds uint8 and normalized, not {spec.input_kind!r}")
    mean = np.asarray(preprocess.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocess.std, np.float32).reshape(1, 3, 1, 1)
    return (pixels.astype(np.float32) / np.float32(255.0) - mean) / std


def quantize_int8(model: ov.Model, inputs: np.ndarray, config: OpenVINOInt8Config,
                  calibration: CalibrationSet, drift_budget: float | None) -> tuple[ov.Model, dict]:
    """(quantized model, details). `inputs`: the calibration set as the graph takes it."""
    import nncf

    from rali_edge.export.openvino_budget import budget_details, with_accuracy_control
    from rali_edge.export.openvino_ir import head_ops

    head = head_ops(model)
    stem = stem_convolutions(model) if config.keep_stem_float else []
    ignored = [op.get_friendly_name() for op in (head if config.keep_head_float else []) + stem]
    transformer = any(op.get_type_name() == "MVN" for op in model.get_ops())
    kwargs = {"preset": nncf.QuantizationPreset(config.preset), "subset_size": len(inputs),
              "fast_bias_correction": config.fast_bias_correction,
              "model_type": nncf.ModelType.TRANSFORMER if transformer else None,
              "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False)}
    dataset = nncf.Dataset([inputs[i:i + 1] for i in range(len(inputs))])
    with nncf_output_on_stderr():
        if drift_budget is None:
            quantized = nncf.quantize(model.clone(), dataset, advanced_parameters=_advanced(config), **kwargs)
        else:
            quantized = with_accuracy_control(model.clone(), dataset, inputs, calibration, drift_budget,
                                              {**kwargs, "advanced_quantization_parameters": _advanced(config)})
    details = {"method": "nncf post-training" + (" with accuracy control" if drift_budget is not None else ""),
               "preset": config.preset, "activation_ranges": config.activation_ranges,
               "bias_correction": "fast" if config.fast_bias_correction else "full",
               "model_type": "transformer" if transformer else "cnn",
               "smooth_quant": config.smooth_quant and transformer,
               "ignored_scope": {"head": config.keep_head_float, "stem": [op.get_friendly_name() for op in stem]},
               **quantized_ops(quantized)}
    if drift_budget is not None:
        details["drift_budget"] = budget_details(model, quantized, inputs, calibration, drift_budget, details)
    return quantized, details


def _advanced(config: OpenVINOInt8Config):
    """NNCF's advanced parameters for the config's activation ranges and SmoothQuant (see OpenVINOInt8Config)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ranges = {"minmax": RangeEstimatorParametersSet.MINMAX,
              "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX}[config.activation_ranges]
    smooth = AdvancedSmoothQuantParameters() if config.smooth_quant else AdvancedSmoothQuantParameters(matmul=-1)
    return AdvancedQuantizationParameters(activations_range_estimator_params=ranges, smooth_quant_alphas=smooth)


def stem_convolutions(model: ov.Model) -> list:
    """The convolutions that read the picture at full resolution: the first on the way from the input
    (through element-wise ops), then every stride-1 convolution reached from it through element-wise
    ops, before any pooling, strided convolution or reshape (a ViT: its patch convolution)."""
    def consumers(op):
        return [i.get_node() for out in op.outputs() for i in out.get_target_inputs()]

    first, frontier, seen = [], list(model.get_parameters()), set()
    while frontier and not first:
        nxt = []
        for op in (c for f in frontier for c in consumers(f)):
            if op.get_friendly_name() in seen:
                continue
            seen.add(op.get_friendly_name())
            if op.get_type_name() == "Convolution":
                first.append(op)
            elif op.get_type_name() in SAME_GRID_OPS:
                nxt.append(op)
        frontier = nxt
    stem, todo = list(first), list(first)
    while todo:
        for op in consumers(todo.pop()):
            if op.get_friendly_name() in seen:
                continue
            seen.add(op.get_friendly_name())
            stride_one = op.get_type_name() == "Convolution" and all(s == 1 for s in op.get_attributes()["strides"])
            if stride_one:
                stem.append(op)
            if stride_one or op.get_type_name() in SAME_GRID_OPS:
                todo.append(op)
    return stem


def quantized_ops(model: ov.Model) -> dict:
    """How many FakeQuantize ops, and which MatMul / Convolution ops read no 8-bit input (stay float)."""
    compute = [op for op in model.get_ordered_ops() if op.get_type_name() in COMPUTE_OPS]
    float_ops = [op.get_friendly_name() for op in compute if not any(_reads_int8(i) for i in op.inputs())]
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return {"fake_quantize_ops": n_fq, "quantized_compute_ops": len(compute) - len(float_ops),
            "float_compute_ops": float_ops}


def _reads_int8(port, depth: int = 4) -> bool:
    """The input comes from a FakeQuantize (activations) or an int8 constant (weights: NNCF stores them
    int8 with a Convert / Subtract / Multiply dequantization), through ops that keep the values."""
    node = port.get_source_output().get_node()
    for _ in range(depth):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_element_type().get_type_name() in ("i8", "u8")
        if kind not in PASS_THROUGH_OPS:
            return False
        node = node.input(0).get_source_output().get_node()
    return False


@contextlib.contextmanager
def nncf_output_on_stderr():
    """NNCF logs from INFO up and draws its progress bars on stdout, which belongs to the CLI's results:
    both go to stderr for the call, its log from WARNING up. Errors still raise."""
    from nncf.common.logging.logger import nncf_logger

    handlers = [(h, h.stream) for h in nncf_logger.handlers if isinstance(h, logging.StreamHandler)]
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    for handler, _ in handlers:
        handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):   # rich consoles resolve sys.stdout when they draw
            yield
    finally:
        nncf_logger.setLevel(level)
        for handler, stream in handlers:
            handler.setStream(stream)
