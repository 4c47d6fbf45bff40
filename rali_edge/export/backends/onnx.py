"""ONNX: the folded scorer through torch.onnx (dynamo), validated in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.onnx import export_onnx, validate_session

    with atomic_path(job.target) as tmp:
        export_onnx(job.folded(), job.spec, tmp, job.opset, job.props, job.simplify)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path, scratch: Path) -> ExportResult:
    from rali_edge.export.onnx import validate_session
    from rali_edge.export.quantized import finish, quantize_onnx_into

    with atomic_path(job.target) as tmp:
        result, qjson = quantize_onnx_into(job, qjob, float_path, tmp)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return finish(job, job.target, result, report, qjson)
