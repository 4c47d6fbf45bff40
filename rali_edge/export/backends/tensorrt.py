"""TensorRT: always the ONNX (validated in ONNX Runtime) + its trtexec script; with TensorRT and a
CUDA GPU here, also the engine, validated in TensorRT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.export.formats import TOLERANCE
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob


def export_float(job: ExportJob) -> ExportResult:
    from rali_edge.export.onnx import export_onnx, validate_session

    onnx_target = job.target.with_suffix(".onnx")
    float_spec = dataclasses.replace(job.spec, tolerance=TOLERANCE["fp32"])
    with atomic_path(onnx_target) as tmp:
        export_onnx(job.folded(), job.spec, tmp, job.opset, job.props, job.simplify)
        report = {"onnx": validate_session(tmp, float_spec, job.pixels, job.reference)}
    return engine_from_onnx(job, onnx_target, report)


def export_quantized(job: ExportJob, qjob: QuantizeJob, float_path: Path, scratch: Path) -> ExportResult:
    from rali_edge.export.onnx import validate_session
    from rali_edge.export.quantized import finish, quantize_onnx_into

    onnx_target = job.target.with_suffix(".onnx")
    with atomic_path(onnx_target) as tmp:
        result, qjson = quantize_onnx_into(job, qjob, float_path, tmp)
        report = {"onnx": validate_session(tmp, job.spec, job.pixels, job.reference)}
    res = engine_from_onnx(job, onnx_target, report)
    return finish(job, res.path, result, res.validation, qjson, res.extra_files, res.notes)


def engine_from_onnx(job: ExportJob, onnx_target: Path, report: dict) -> ExportResult:
    """Write the trtexec script beside a validated ONNX; build and validate the engine when possible."""
    from rali_edge.export.tensorrt import build_engine, tensorrt_available, write_trtexec_script

    script = write_trtexec_script(onnx_target, job.spec, job.precision, job.props)
    extra = [script, onnx_target.with_name(f"{onnx_target.stem}.engine.json")]
    ok, reason = tensorrt_available()
    if not ok:
        note = (f"TensorRT engine NOT built here ({reason}). Build it on the target (e.g. Jetson): "
                f"copy {onnx_target.name} and {script.name} there and run `sh {script.name}`.")
        return ExportResult(onnx_target, job.fmt, job.precision, job.props, report, extra, [note])
    cache = onnx_target.with_name(f"{onnx_target.stem}.timing.cache")
    with atomic_path(job.target) as tmp:
        build_engine(onnx_target, tmp, job.spec, job.precision, job.props, timing_cache=cache)
        report["engine"] = _validate_engine(tmp, job)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report, [onnx_target, *extra, cache])


def _validate_engine(path: Path, job: ExportJob) -> dict:
    from rali_edge.errors import ValidationFailed
    from rali_edge.export.onnx import check_values
    from rali_edge.runtime.tensorrt_runner import TensorRTRunner

    outs = TensorRTRunner(path).run(job.pixels)
    failures: list[str] = []
    report = check_values(outs, job.reference, job.spec.tolerance, failures)
    if failures:
        raise ValidationFailed([f"{path}: {f}" for f in failures])
    return report
