"""Core ML (.mlpackage): converted with coremltools, its spec checked (prediction needs macOS)."""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.coreml import check_package, export_coreml

    with atomic_path(job.target) as tmp:
        export_coreml(job.folded(), job.spec, tmp, job.precision, job.props)
        report = check_package(tmp, job.spec, job.precision, job.props)
    notes = [] if report["prediction_checked"] else [report["prediction_note"]]
    return ExportResult(job.target, job.fmt, job.precision, job.props, report, notes=notes)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path, scratch: Path) -> ExportResult:
    from rali_edge.export.coreml import check_package
    from rali_edge.export.metadata import PREFIX
    from rali_edge.export.quantized import finish
    from rali_edge.quantize import quant_json_path, quantize

    with atomic_path(job.target) as tmp:
        result = quantize(qjob.config, float_path, tmp, qjob.calibration)
        # The quantizer records its own precision name ("int8-weights"); every other key must be ours.
        props = {k: v for k, v in job.props.items() if k != PREFIX + "precision"}
        report = check_package(tmp, job.spec, "fp16", props)
        qjson = quant_json_path(tmp).read_bytes()
    return finish(job, job.target, result, report, qjson, notes=[report["prediction_note"]])
