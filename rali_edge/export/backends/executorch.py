"""ExecuTorch (.pte, XNNPACK delegate): the folded scorer lowered by executorch.exir, validated in
ExecuTorch's own runtime. INT8 quantizes the PyTorch graph (PT2E), so there is no float file first.

Precisions (input uint8 NCHW and score float32 in all three):
- fp32: everything float32;
- fp16: the image encoder in float16, the head float32 (executorch_fp16.half_encoder);
- int8: the image encoder's convolutions and linears in INT8 by XNNPACKQuantizer, activations
  static (calibrated; the default kind) or dynamic (kind executorch-int8-dynamic); element-wise ops,
  the full-resolution stem and the head stay float (ExecuTorchInt8Config, executorch_int8.quantize_int8).
"""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_path, atomic_write_json
from rali_edge.errors import UnsupportedOptionError
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob
from rali_edge.export.metadata import PREFIX

FLOAT_PRECISIONS = ("fp32", "fp16")


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.executorch_fp16 import half_encoder
    from rali_edge.export.executorch_program import require_executorch

    require_executorch()
    if job.precision not in FLOAT_PRECISIONS:
        raise UnsupportedOptionError(f"executorch export_float makes {', '.join(FLOAT_PRECISIONS)}, not {job.precision}")
    module = half_encoder(job.folded()) if job.precision == "fp16" else job.folded()
    with atomic_path(job.target) as tmp:
        details = _write_program(job, module, tmp)
    return ExportResult(job.target, job.fmt, job.precision, job.props, details, [_sidecar(job)],
                        notes=_notes(details))


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path | None, scratch: Path) -> ExportResult:
    from rali_edge.export.executorch_int8 import float_weight_bytes, quantize_int8
    from rali_edge.export.executorch_program import require_executorch
    from rali_edge.export.quantized import finish
    from rali_edge.quantize.api import QuantizeResult, write_quant_json

    require_executorch()
    folded = job.folded()
    float_bytes = float_weight_bytes(folded)
    cal = qjob.calibration   # None for dynamic activations (the quantize kind takes no images)
    converted, qdetails = quantize_int8(folded, job.spec, qjob.config, None if cal is None else cal.pixels)
    with atomic_path(job.target) as tmp:
        report = _write_program(job, converted, tmp)
        result = QuantizeResult(tmp, qjob.config, "int8", None if cal is None else cal.provenance,
                                tmp.stat().st_size, float_bytes, {**qdetails, **_program_details(report)},
                                [] if cal is None else [*cal.notes])
        source = Path(f"pytorch-bundle:{job.props[PREFIX + 'bundle_checksum']}")   # PT2E: no float file
        qjson = write_quant_json(result, source).read_bytes()
    return finish(job, job.target, result, report, qjson, extra=[_sidecar(job)], notes=_notes(report))


def _write_program(job: ExportJob, module, tmp: Path) -> dict:
    """Export, lower, write, validate in ExecuTorch; the sidecar is written once the program passed."""
    from rali_edge.export.executorch_program import capture, lower, validate_program

    buffer, details = lower(capture(module, job.spec), job.props)
    tmp.write_bytes(buffer)
    report = validate_program(tmp, job.spec, job.pixels, job.reference, job.props)
    atomic_write_json(_sidecar(job), job.props)
    return {**report, **details, "size_bytes": len(buffer)}


def _sidecar(job: ExportJob) -> Path:
    from rali_edge.export.executorch_program import sidecar_path

    return sidecar_path(job.target)


def _program_details(report: dict) -> dict:
    keys = ("xnnpack_partitions", "outside_delegate", "planned_memory_bytes")
    return {k: report[k] for k in keys}


def _notes(details: dict) -> list[str]:
    outside = ", ".join(f"{op} x{n}" for op, n in details["outside_delegate"].items()) or "nothing"
    return [f"{details['xnnpack_partitions']} XNNPACK partitions; outside them (portable kernels): {outside}"]
