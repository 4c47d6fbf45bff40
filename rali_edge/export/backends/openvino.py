"""OpenVINO IR (`<name>.openvino/` = model.xml + model.bin): the folded scorer converted by
openvino.convert_model, validated in OpenVINO itself (CPU plugin). Intel's edge target: Core CPUs,
Core Ultra iGPUs and NPUs load the same IR.

Precisions (input uint8 NCHW by default, score float32 in all four):
- fp32: FP32 weights, f32 inference (forced: OpenVINO's CPU default is bf16 where the CPU has it);
- fp16: FP16-compressed weights (half the .bin); the CPU decompresses them and computes in f32,
  GPU and NPU plugins compute in fp16;
- bf16: FP32 weights, bf16 *inference* (INFERENCE_PRECISION_HINT, set by the runner from the
  artifact's precision); only where the CPU computes bf16 (avx512_bf16, AMX), else NotRunnableHere
  before any conversion;
- int8: NNCF post-training INT8 of the validated float IR with the calibration set, the head float;
  a drift budget runs NNCF's accuracy control on the encoder (export.openvino_int8).
"""

from __future__ import annotations

import json
from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.errors import NotRunnableHere, UnsupportedOptionError
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob
from rali_edge.export.metadata import PREFIX

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.openvino_ir import convert, require, set_props, validate_ir, write_ir

    require("openvino")
    if job.precision not in FLOAT_PRECISIONS:
        raise UnsupportedOptionError(f"openvino export_float makes {', '.join(FLOAT_PRECISIONS)}, not {job.precision}")
    if job.precision == "bf16":
        _require_bf16()
    model = convert(job.folded(), job.spec)
    set_props(model, job.props)
    with atomic_path(job.target) as tmp:
        write_ir(model, tmp, fp16_weights=job.precision == "fp16")
        report = validate_ir(tmp, job.spec, job.pixels, job.reference)
        report["size_bytes"] = _size(tmp)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path, scratch: Path) -> ExportResult:
    """NNCF INT8 of the float IR at `float_path` (exported and validated by export.quantized first)."""
    import openvino as ov

    from rali_edge.export.openvino_int8 import graph_inputs, quantize_int8
    from rali_edge.export.openvino_ir import read_ir, require, set_props, validate_ir, write_ir
    from rali_edge.export.quantized import finish
    from rali_edge.quantize.api import write_quant_json

    require("openvino", "nncf")
    config, cal = qjob.config, qjob.calibration
    inputs = graph_inputs(cal.pixels, job.spec, job.preprocess)
    quantized, details = quantize_int8(read_ir(ov.Core(), float_path), inputs, config, cal, qjob.drift_budget)
    summary = {"kind": "openvino_int8", "preset": config.preset, "fake_quantize_ops": details["fake_quantize_ops"]}
    set_props(quantized, {**job.props, PREFIX + "quantization": json.dumps(summary, sort_keys=True)})
    with atomic_path(job.target) as tmp:
        write_ir(quantized, tmp)
        report = validate_ir(tmp, job.spec, job.pixels, job.reference)
        result = _result(tmp, config, cal, details, _size(float_path))
        source = f"float OpenVINO IR of bundle {job.props[PREFIX + 'bundle_checksum']}"
        qjson = write_quant_json(result, source, scratch / "int8.quant.json").read_bytes()
    return finish(job, job.target, result, report, qjson)


def _require_bf16() -> None:
    from rali_edge.runtime.openvino_runner import bf16_supported

    ok, why = bf16_supported()
    if not ok:
        raise NotRunnableHere(f"OpenVINO bf16 inference cannot be exported and checked here: {why}")


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _result(tmp: Path, config, cal, details: dict, float_size: int):
    from rali_edge.quantize.api import QuantizeResult

    return QuantizeResult(tmp, config, "int8", cal.provenance, _size(tmp), float_size, details, list(cal.notes))
