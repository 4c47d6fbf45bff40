"""INT8 / FP16 artifacts in one call: float export, then `rali_edge.quantize`, then validation.

The quantizers themselves live in rali_edge.quantize (one verb dispatching on the config type);
this module only chains them after the float export so `rali-edge export --precision int8` works.
Each quantized artifact is validated against PyTorch float with the precision's tolerance
(api.VALUE_TOLERANCE) and gets its `<artifact>.quant.json` provenance file beside it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge._atomic import atomic_path, atomic_write_bytes
from rali_edge.errors import UnsupportedOptionError
from rali_edge.export.formats import QUANTIZE_COMMAND
from rali_edge.export.metadata import PREFIX

if TYPE_CHECKING:
    from rali_edge.export.api import ExportResult, _Job

# The float artifact each quantized one is made from: format -> (float backend, float precision).
FLOAT_SOURCE = {"onnx": ("onnx", "fp32"), "ort": ("onnx", "fp32"), "tensorrt": ("onnx", "fp32"),
                "coreml": ("coreml", "fp16")}


def quantize_configs() -> dict[tuple[str, str], type]:
    from rali_edge import quantize as q

    return {
        ("onnx", "int8"): q.OnnxInt8Config,
        ("onnx", "fp16"): q.OnnxFp16Config,
        ("ort", "int8"): q.OnnxInt8Config,
        ("coreml", "int8"): q.CoreMLWeightsConfig,  # INT8 weights, FP16 compute (activations need macOS)
        ("tensorrt", "int8"): q.TensorRTInt8Config,  # explicit Q/DQ, symmetric, for strongly typed builds
    }


NO_CALIBRATION = frozenset({("onnx", "fp16"), ("coreml", "int8")})


def check_calibration(fmt: str, precision: str, calibration) -> None:
    if calibration is None and (fmt, precision) not in NO_CALIBRATION:
        raise UnsupportedOptionError(
            f"{precision} {fmt} needs calibration images: pass calibration= (CLI: --calibration "
            f"FOLDER_OR_META), or quantize an exported float artifact with `{QUANTIZE_COMMAND}`"
        )


def export_quantized(job: _Job, calibration) -> ExportResult:
    from rali_edge.export.api import BACKENDS, VALUE_TOLERANCE

    check_calibration(job.fmt, job.precision, calibration)
    config = quantize_configs()[(job.fmt, job.precision)]()
    float_fmt, float_precision = FLOAT_SOURCE[job.fmt]
    from rali_edge.export.formats import caps

    with tempfile.TemporaryDirectory(prefix=".float-", dir=_mkdir(job.target.parent)) as scratch:
        float_job = dataclasses.replace(
            job, fmt=float_fmt, precision=float_precision,
            spec=dataclasses.replace(job.spec, tolerance=VALUE_TOLERANCE[float_precision]),
            props={**job.props, PREFIX + "precision": float_precision},
            target=Path(scratch) / f"float{caps(float_fmt).suffix}",
        )
        float_path = BACKENDS[float_fmt](float_job).path
        return QUANTIZED_BACKENDS[job.fmt](job, config, float_path, Path(scratch), calibration)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _quantize_onnx_into(job: _Job, config, float_path: Path, out: Path, calibration) -> tuple:
    """Quantize, restore our metadata (keeping the quantizer's summary key), return (result, quant json bytes)."""
    import onnx

    from rali_edge.export.onnx import set_metadata
    from rali_edge.quantize import quant_json_path, quantize

    result = quantize(config, float_path, out, calibration)
    model = onnx.load(str(out))
    set_metadata(model, job.props)
    with atomic_path(out) as tmp:
        onnx.save_model(model, str(tmp))
    return result, quant_json_path(out).read_bytes()


def _finish(job: _Job, target: Path, result, report: dict, qjson: bytes, extra=(), notes=()) -> ExportResult:
    from rali_edge.export.api import ExportResult
    from rali_edge.quantize import quant_json_path

    qpath = atomic_write_bytes(quant_json_path(target), qjson)
    report = {**report, "size_bytes": result.size_bytes, "float_size_bytes": result.source_size_bytes}
    return ExportResult(target, job.fmt, job.precision, job.props, report, [qpath, *extra],
                        [*result.notes, *notes])


def _onnx(job: _Job, config, float_path: Path, scratch: Path, calibration) -> ExportResult:
    from rali_edge.export.onnx import validate_session

    with atomic_path(job.target) as tmp:
        result, qjson = _quantize_onnx_into(job, config, float_path, tmp, calibration)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return _finish(job, job.target, result, report, qjson)


def _ort(job: _Job, config, float_path: Path, scratch: Path, calibration) -> ExportResult:
    from rali_edge.export.onnx import validate_session
    from rali_edge.export.ort_mobile import convert_to_ort

    with atomic_path(job.target) as tmp:
        result, qjson = _quantize_onnx_into(job, config, float_path, scratch / "quantized.onnx", calibration)
        convert_to_ort(scratch / "quantized.onnx", tmp)
        report = validate_session(tmp, job.spec, job.pixels, job.reference)
    return _finish(job, job.target, result, report, qjson)


def _coreml(job: _Job, config, float_path: Path, scratch: Path, calibration) -> ExportResult:
    from rali_edge.export.coreml import check_package
    from rali_edge.quantize import quant_json_path, quantize

    with atomic_path(job.target) as tmp:
        result = quantize(config, float_path, tmp, calibration)
        # The quantizer records its own precision name ("int8-weights"); every other key must be ours.
        props = {k: v for k, v in job.props.items() if k != PREFIX + "precision"}
        report = check_package(tmp, job.spec, "fp16", props)
        qjson = quant_json_path(tmp).read_bytes()
    return _finish(job, job.target, result, report, qjson, notes=[report["prediction_note"]])


def _tensorrt(job: _Job, config, float_path: Path, scratch: Path, calibration) -> ExportResult:
    from rali_edge.export.api import tensorrt_from_onnx
    from rali_edge.export.onnx import validate_session

    onnx_target = job.target.with_suffix(".onnx")
    with atomic_path(onnx_target) as tmp:
        result, qjson = _quantize_onnx_into(job, config, float_path, tmp, calibration)
        report = {"onnx": validate_session(tmp, job.spec, job.pixels, job.reference)}
    res = tensorrt_from_onnx(job, onnx_target, report)
    return _finish(job, res.path, result, res.validation, qjson, res.extra_files, res.notes)


QUANTIZED_BACKENDS = {"onnx": _onnx, "ort": _ort, "coreml": _coreml, "tensorrt": _tensorrt}
