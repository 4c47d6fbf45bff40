"""LiteRT (.tflite): the folded scorer converted by litert-torch, validated in LiteRT's own interpreter.

What each precision is here:
- fp32: float32 weights and compute.
- fp16: float16 *weights* for every FULLY_CONNECTED and CONV_2D (ai-edge-quantizer's float-casting
  weight-only recipe), each followed by a DEQUANTIZE op: the file is about half the size, the CPU
  (XNNPACK) still computes in float32, GPU delegates compute in fp16.
- int8: static PT2E INT8 of the image encoder only (see quantize.config.LiteRTInt8Config); the head
  stays float32, the input stays uint8 pixels and the outputs float32.

Signature: one input named after the spec (`pixels`) and outputs named `score` (and `embedding`),
so apps and the runner address tensors by name. Batch: fixed (litert-torch cannot convert a
dynamic batch; see the format table). Metadata: the `rali_edge.*` pairs inside the flatbuffer
(export.litert_metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from rali_edge._atomic import atomic_path
from rali_edge._extras import require_modules
from rali_edge.errors import ConfigError, UnsupportedOptionError, ValidationFailed
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob

if TYPE_CHECKING:
    from rali_edge.export.spec import ExportSpec
    from rali_edge.quantize.config import LiteRTInt8Config

EXTRA = "pip install 'rali-edge[litert]'"
# Module -> the package that installs it, for the "missing extra" message.
NEEDS = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert",
         "ai_edge_quantizer": "ai-edge-quantizer", "torchao": "torchao"}
FLOAT_PRECISIONS = ("fp32", "fp16")


def require(*modules: str) -> None:
    """NotRunnableHere naming the extra when a LiteRT package is missing (a benchmark row then says
    "not runnable here" instead of failing)."""
    require_modules("LiteRT export", NEEDS, EXTRA, *modules)


# ---------------------------------------------------------------- float: fp32, fp16 weights


def export_float(job: ExportJob) -> ExportResult:
    if job.precision not in FLOAT_PRECISIONS:
        raise UnsupportedOptionError(f"litert {job.precision} is made by export_quantized, not export_float")
    require("litert_torch", "ai_edge_litert", *(["ai_edge_quantizer"] if job.precision == "fp16" else []))
    from rali_edge.export.litert_metadata import embed_props

    with atomic_path(job.target) as tmp:
        model = convert(NamedIO(job.folded(), job.spec).eval(), job.spec)
        if job.precision == "fp16":
            model = fp16_weights(model)
        tmp.write_bytes(embed_props(model, job.props))
        report = validate_interpreter(tmp, job.spec, job.pixels, job.reference)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


class NamedIO(nn.Module):
    """Takes the input by the spec's name and returns {output name: tensor}: litert-torch names the
    signature's tensors after the keyword argument and the returned dict's keys."""

    def __init__(self, folded: nn.Module, spec: ExportSpec):
        super().__init__()
        self.folded = folded
        self.output_names = tuple(spec.output_names)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.folded(pixels)
        return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))


def convert(module: nn.Module, spec: ExportSpec, quant_config=None) -> bytes:
    """litert-torch conversion (of a module in eval mode) at the spec's fixed batch; the .tflite bytes."""
    import litert_torch

    if spec.batch is None:
        raise UnsupportedOptionError("litert needs a fixed batch size (--batch N): litert-torch cannot convert "
                                     "a dynamic batch")
    sample = {spec.input_name: spec.example_inputs()}
    return bytes(litert_torch.convert(module, sample_kwargs=sample, quant_config=quant_config).model_content())


def fp16_weights(model: bytes) -> bytes:
    """float16 weights for every FULLY_CONNECTED and CONV_2D, dequantized to float32 where they are used."""
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(bytearray(model))
    fp16 = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
    for op in (qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D):
        q.update_quantization_recipe(regex=".*", operation_name=op, op_config=fp16,
                                     algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING)
    return bytes(q.quantize(enable_progress_bar=False, enable_progress_report=False).quantized_model)


# ---------------------------------------------------------------- int8: PT2E static, encoder only


class Int8Encoder(nn.Module):
    """Marks the encoder (the folded trunk) as the one part the PT2E quantizer annotates."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path | None, scratch: Path) -> ExportResult:
    """Quantize the PyTorch graph (float_path is None: the table gives litert no float source)."""
    require("litert_torch", "ai_edge_litert", "torchao")
    from rali_edge.export.litert_metadata import embed_props
    from rali_edge.export.quantized import finish

    with atomic_path(job.target) as tmp:
        model, details = quantize_int8(job, qjob.config, qjob.calibration.pixels)
        tmp.write_bytes(embed_props(model, job.props))
        report = validate_interpreter(tmp, job.spec, job.pixels, job.reference)
        result, qjson = _provenance(job, qjob, tmp, details)
    return finish(job, job.target, result, report, qjson)


def quantize_int8(job: ExportJob, config: LiteRTInt8Config, pixels: np.ndarray) -> tuple[bytes, dict]:
    """Calibrate the encoder on `pixels` (uint8 NCHW) and convert with its int8 Q/DQ; (bytes, details)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    folded = job.folded()
    folded.trunk = Int8Encoder(folded.trunk)
    qconfig = get_symmetric_quantization_config(is_per_channel=config.per_channel)
    # torch 2.14 exports record module types as strings: the quantizer matches the class's full name.
    quantizer = PT2EQuantizer().set_module_type(f"{Int8Encoder.__module__}.{Int8Encoder.__qualname__}", qconfig)
    prepared = prepare_pt2e(_export_dynamic(NamedIO(folded, job.spec).eval(), job.spec).module(), quantizer)
    _calibrate(prepared, job.spec, pixels, config.calibration_batch)
    converted = convert_pt2e(prepared, fold_quantize=False)
    n_quantize = sum("quantize_per" in str(n.target) for n in converted.graph.nodes)
    # QuantConfig only reads the static/dynamic mode off a global config; the annotations are already
    # in the graph, so this second quantizer annotates nothing.
    mode = QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(qconfig))
    details = {"method": "pt2e static", "quantized": "image encoder", "float": "PCA projection, cosine head, softmax",
               "weights": "int8 symmetric " + ("per channel" if config.per_channel else "per tensor"),
               "activations": "int8 per tensor (histogram observer)", "quantize_nodes": n_quantize,
               # No float .tflite is built on the way: the float size is the graph's float32 weight bytes.
               "float_size_bytes": sum(t.numel() * 4 for t in folded.state_dict().values() if t.is_floating_point())}
    return convert(converted, job.spec, quant_config=mode), details


def _export_dynamic(module: nn.Module, spec: ExportSpec):
    """torch.export with a dynamic batch, so calibration runs at any batch (the .tflite is converted
    later at the spec's fixed batch)."""
    batch = torch.export.Dim("batch", min=1)
    example = spec.example_inputs(batch=2)   # a size-1 example would specialise the axis
    return torch.export.export(module, (), {spec.input_name: example}, dynamic_shapes={spec.input_name: {0: batch}})


def _calibrate(prepared, spec: ExportSpec, pixels: np.ndarray, batch: int) -> None:
    want = (3, spec.image_size, spec.image_size)
    if pixels.ndim != 4 or pixels.shape[1:] != want or pixels.dtype != np.uint8:
        raise ConfigError(f"calibration pixels are {pixels.dtype} {list(pixels.shape)}; this scorer takes uint8 "
                          f"[N, {', '.join(map(str, want))}] (build the set with the bundle's preprocessing)")
    inputs = _as_input_kind(pixels, spec)
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            prepared(**{spec.input_name: torch.from_numpy(inputs[start:start + batch])})


def _as_input_kind(pixels: np.ndarray, spec: ExportSpec) -> np.ndarray:
    """uint8 NCHW calibration pixels -> the graph's own input (the runner does the same)."""
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)) if spec.channels_last else np.ascontiguousarray(pixels)


def _provenance(job: ExportJob, qjob: QuantizeJob, tmp: Path, details: dict) -> tuple:
    """(QuantizeResult, <artifact>.quant.json bytes) as rali_edge.quantize writes them."""
    from rali_edge.export.metadata import PREFIX
    from rali_edge.quantize.api import QuantizeResult, write_quant_json

    cal = qjob.calibration
    result = QuantizeResult(tmp, qjob.config, "int8", cal.provenance, tmp.stat().st_size,
                            details["float_size_bytes"], details, list(cal.notes))
    source = f"PyTorch graph of bundle {job.props[PREFIX + 'bundle_checksum']}"
    return result, write_quant_json(result, source).read_bytes()


# ---------------------------------------------------------------- validation in LiteRT itself


def validate_interpreter(path: Path, spec: ExportSpec, pixels: np.ndarray, reference: dict) -> dict:
    """Input, then outputs, then values, run by LiteRTRunner; every failure collected, then raised."""
    from rali_edge.export.onnx import check_shapes, check_values
    from rali_edge.runtime.litert_runner import LiteRTRunner

    try:
        runner = LiteRTRunner(path)
    except Exception as exc:  # LiteRT and the metadata reader raise several types; report the reason
        raise ValidationFailed([f"{path}: LiteRT cannot load it: {exc}"]) from exc
    failures = _check_signature(runner, spec)
    outs = {}
    try:
        outs = runner.run(pixels)
    except Exception as exc:  # a graph that runs badly is a validation failure, with the reason
        failures.append(f"running {path} in LiteRT failed: {type(exc).__name__}: {exc}")
    report = {"n_images": int(len(pixels)), "tolerance": spec.tolerance, "runtime": "ai-edge-litert"}
    check_shapes(outs, len(pixels), reference, failures)
    report.update(check_values(outs, reference, spec.tolerance, failures))
    if failures:
        raise ValidationFailed(failures)
    return report


def _check_signature(runner, spec: ExportSpec) -> list[str]:
    """The input's dtype and shape, and the outputs' dtype, against the spec."""
    inputs, outputs = runner.signature_details()
    want = f"{spec.input_name} {spec.input_dtype} {list(spec.input_shape())}"
    got = [f"{n} {np.dtype(d['dtype']).name} {d['shape'].tolist()}" for n, d in inputs.items()]
    failures = [] if got == [want] else [f"inputs are {got}, expected [{want}]"]
    if sorted(outputs) != sorted(spec.output_names):
        failures.append(f"outputs are {sorted(outputs)}, expected {sorted(spec.output_names)}")
    failures += [f"output {n!r} is {np.dtype(d['dtype']).name}, expected float32"
                 for n, d in outputs.items() if np.dtype(d["dtype"]) != np.float32]
    return failures
