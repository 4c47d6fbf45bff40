"""`export_bundle`: one call from a bundle folder to a validated artifact.

Steps: check the options against the capability table -> load the bundle -> fold -> backend
export into a temporary name -> validate -> rename onto the target (rali_edge._atomic), so a failed
or interrupted export (validation included) leaves nothing under the target name.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rali_edge._atomic import atomic_path
from rali_edge.export.formats import caps, check_options, needs_quantize
from rali_edge.export.spec import ExportSpec

if TYPE_CHECKING:
    import numpy as np

# Max |score difference| vs PyTorch float accepted when validating, per precision.
VALUE_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 1e-1}
# The input kind each format's graph takes (Core ML's ImageType already scales by 1/255).
DEFAULT_INPUT_KIND = {"onnx": "uint8", "ort": "uint8", "coreml": "unit", "tensorrt": "uint8"}


@dataclass
class ExportResult:
    path: Path  # the artifact (for tensorrt without TensorRT here: the ONNX to build from)
    format: str
    precision: str
    metadata: dict[str, str]
    validation: dict
    extra_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Job:
    """Everything a backend needs, prepared once."""

    scorer: object
    preprocess: object
    spec: ExportSpec
    fmt: str
    precision: str
    opset: int | None
    props: dict[str, str]
    simplify: bool
    pixels: np.ndarray
    reference: dict
    target: Path


def export_bundle(
    bundle_dir: str | os.PathLike[str],
    fmt: str,
    precision: str | None = None,
    batch: int | None = None,
    opset: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    simplify: bool = False,
    with_embedding: bool = False,
    input_kind: str | None = None,
    name: str | None = None,
    calibration=None,
    calibration_size: int = 300,
) -> ExportResult:
    """Export a bundle. precision None: the format's default (coreml fp16, others fp32); batch None:
    dynamic batch axis; opset None: 18 (ONNX-based formats); out_dir None: `<bundle>/../exports`.
    calibration (int8 only): a CalibrationSet, or an image folder / meta file to build one from."""
    c = caps(fmt)
    precision = precision or c.precisions[0]
    input_kind = input_kind or DEFAULT_INPUT_KIND[fmt]
    opset = check_options(fmt, precision, batch, opset, input_kind, simplify)
    if needs_quantize(fmt, precision):
        from rali_edge.export.quantized import check_calibration

        check_calibration(fmt, precision, calibration)
    job = _prepare(Path(bundle_dir), fmt, precision, batch, opset, out_dir, simplify, with_embedding, input_kind, name)
    if needs_quantize(fmt, precision):
        from rali_edge.export.quantized import export_quantized

        return export_quantized(job, _calibration_set(calibration, job, calibration_size))
    return BACKENDS[fmt](job)


def _calibration_set(calibration, job: _Job, size: int):
    """None, a CalibrationSet, or a folder / meta file to build one from with the bundle's preprocessing."""
    if calibration is None or not isinstance(calibration, (str, os.PathLike)):
        return calibration
    from rali_edge.calibration.sets import build_calibration_set

    return build_calibration_set(Path(calibration), job.preprocess, size=size)


def _prepare(bundle_dir, fmt, precision, batch, opset, out_dir, simplify, with_embedding, input_kind, name) -> _Job:
    from rali_edge.bundle import load_bundle
    from rali_edge.export.metadata import build_metadata
    from rali_edge.export.onnx import reference_outputs
    from rali_edge.export.samples import sample_pixels
    from rali_edge.model.scorer import RaliScorer

    bundle = load_bundle(bundle_dir)
    scorer = RaliScorer.from_bundle(bundle).eval()
    pre = bundle.config.preprocess
    spec = ExportSpec(image_size=pre.image_size, batch=batch, input_kind=input_kind,
                      with_embedding=with_embedding, tolerance=VALUE_TOLERANCE[precision])
    props = build_metadata(pre, spec, fmt, precision, bundle.checksum, opset).to_props()
    pixels = sample_pixels(pre)
    out = Path(out_dir) if out_dir is not None else bundle.path.parent / "exports"
    stem = name or f"{bundle.path.name}-{fmt}-{precision}-{'dynamic' if batch is None else f'b{batch}'}"
    return _Job(scorer, pre, spec, fmt, precision, opset, props, simplify, pixels,
                reference_outputs(scorer, pre, pixels), out / (stem + caps(fmt).suffix))


def _folded(job: _Job):
    from rali_edge.export.fold import fold_scorer

    return fold_scorer(job.scorer, job.preprocess, job.spec)


# ---------------------------------------------------------------- one function per format


def _export_onnx(job: _Job) -> ExportResult:
    from rali_edge.export.onnx import export_onnx, validate_session

    with atomic_path(job.target) as tmp:
        export_onnx(_folded(job), job.spec, tmp, job.opset, job.props, job.simplify)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


def _export_ort(job: _Job) -> ExportResult:
    from rali_edge.export.onnx import export_onnx, validate_session
    from rali_edge.export.ort_mobile import convert_to_ort

    with atomic_path(job.target) as tmp, tempfile.TemporaryDirectory(dir=tmp.parent) as scratch:
        onnx_path = export_onnx(_folded(job), job.spec, Path(scratch) / "model.onnx", job.opset, job.props, job.simplify)
        convert_to_ort(onnx_path, tmp)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return ExportResult(job.target, job.fmt, job.precision, job.props, report)


def _export_coreml(job: _Job) -> ExportResult:
    from rali_edge.export.coreml import check_package, export_coreml

    with atomic_path(job.target) as tmp:
        export_coreml(_folded(job), job.spec, tmp, job.precision, job.props)
        report = check_package(tmp, job.spec, job.precision, job.props)
    notes = [] if report["prediction_checked"] else [report["prediction_note"]]
    return ExportResult(job.target, job.fmt, job.precision, job.props, report, notes=notes)


def _export_tensorrt(job: _Job) -> ExportResult:
    """Always: the ONNX (validated in ORT) + its trtexec script. With TensorRT + CUDA here: the engine."""
    from rali_edge.export.onnx import export_onnx, validate_session

    onnx_target = job.target.with_suffix(".onnx")
    float_spec = dataclasses.replace(job.spec, tolerance=VALUE_TOLERANCE["fp32"])
    with atomic_path(onnx_target) as tmp:
        export_onnx(_folded(job), job.spec, tmp, job.opset, job.props, job.simplify)
        report = {"onnx": validate_session(tmp, float_spec, job.pixels, job.reference)}
    return tensorrt_from_onnx(job, onnx_target, report)


def tensorrt_from_onnx(job: _Job, onnx_target: Path, report: dict) -> ExportResult:
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


def _validate_engine(path: Path, job: _Job) -> dict:
    from rali_edge.export.onnx import check_values
    from rali_edge.errors import ValidationFailed
    from rali_edge.runtime.tensorrt_runner import TensorRTRunner

    outs = TensorRTRunner(path).run(job.pixels)
    failures: list[str] = []
    report = check_values(outs, job.reference, job.spec.tolerance, failures)
    if failures:
        raise ValidationFailed([f"{path}: {f}" for f in failures])
    return report


BACKENDS: dict[str, Callable[[_Job], ExportResult]] = {
    "onnx": _export_onnx,
    "ort": _export_ort,
    "coreml": _export_coreml,
    "tensorrt": _export_tensorrt,
}
