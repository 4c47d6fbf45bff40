"""ONNX Runtime Mobile (.ort): the ONNX export converted to ORT's flatbuffer format, validated in ORT."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.onnx import export_onnx, validate_session
    from rali_edge.export.ort_mobile import convert_to_ort

    with atomic_path(job.target) as tmp, tempfile.TemporaryDirectory(dir=tmp.parent) as scratch:
        onnx_path = export_onnx(job.folded(), job.spec, Path(scratch) / "model.onnx", job.opset, job.props,
                                job.simplify)
        convert_to_ort(onnx_path, tmp)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path, scratch: Path) -> ExportResult:
    from rali_edge.export.onnx import validate_session
    from rali_edge.export.ort_mobile import convert_to_ort
    from rali_edge.export.quantized import finish, quantize_onnx_into

    with atomic_path(job.target) as tmp:
        result, qjson = quantize_onnx_into(job, qjob, float_path, scratch / "quantized.onnx")
        convert_to_ort(scratch / "quantized.onnx", tmp)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return finish(job, job.target, result, report, qjson)
