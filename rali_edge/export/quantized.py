"""INT8 / FP16 artifacts in one call: float export, then `rali_edge.quantize`, then validation.

The quantizers live in rali_edge.quantize (one verb dispatching on the config type); this module
chains them after the float export so `rali-edge export --precision int8` works. Which quantize
kind makes a precision, and from which float artifact, comes from the format table. Each quantized
artifact is validated against PyTorch float with the precision's tolerance and gets its
`<artifact>.quant.json` provenance file beside it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from rali_edge._atomic import atomic_path, atomic_write_bytes
from rali_edge.errors import UnsupportedOptionError
from rali_edge.export.formats import QUANTIZE_COMMAND, QuantKind, caps, load_object
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob
from rali_edge.export.metadata import PREFIX


def check_quantize_options(fmt: str, kind: QuantKind, calibration, method: str | None,
                           drift_budget: float | None) -> None:
    """Reject, before any work, options the quantize kind cannot take."""
    if kind.calibration and calibration is None:
        raise UnsupportedOptionError(
            f"{kind.precision} {fmt} needs calibration images: pass calibration= (CLI: --calibration "
            f"FOLDER_OR_META), or quantize an exported float artifact with `{QUANTIZE_COMMAND}`"
        )
    if not kind.calibration and calibration is not None:
        raise UnsupportedOptionError(f"{kind.precision} {fmt} ({kind.name}) uses no calibration images; "
                                     "drop --calibration")
    if method is not None and not kind.methods:
        raise UnsupportedOptionError(f"{kind.precision} {fmt} ({kind.name}) takes no calibration --method")
    if drift_budget is not None:
        if not kind.drift_budget:
            raise UnsupportedOptionError(
                f"--drift-budget applies to ONNX Runtime INT8 (onnx, ort); not to {kind.precision} {fmt} ({kind.name})")
        if not drift_budget >= 0:
            raise UnsupportedOptionError(f"--drift-budget {drift_budget}: a drop budget must be a number >= 0")


def export_quantized(job: ExportJob, qjob: QuantizeJob) -> ExportResult:
    """Export the format's float source into a scratch folder, then quantize it into job.target
    (formats without a float source quantize the PyTorch graph themselves)."""
    c = caps(job.fmt)
    if c.float_source is None:
        with tempfile.TemporaryDirectory(prefix=".quant-", dir=_mkdir(job.target.parent)) as scratch:
            return load_object(c.backend + ":export_quantized")(job, qjob, None, Path(scratch))
    float_fmt, float_precision = c.float_source
    fc = caps(float_fmt)
    with tempfile.TemporaryDirectory(prefix=".float-", dir=_mkdir(job.target.parent)) as scratch:
        float_job = dataclasses.replace(
            job, fmt=float_fmt, precision=float_precision,
            spec=dataclasses.replace(job.spec, tolerance=fc.tolerance[float_precision]),
            props={**job.props, PREFIX + "precision": float_precision},
            target=Path(scratch) / f"float{fc.suffix}",
        )
        float_path = load_object(fc.backend + ":export_float")(float_job).path
        return load_object(c.backend + ":export_quantized")(job, qjob, float_path, Path(scratch))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def quantize_onnx_into(job: ExportJob, qjob: QuantizeJob, float_path: Path, out: Path) -> tuple:
    """Quantize (within the drift budget when one is set), restore our metadata (keeping the
    quantizer's summary key), return (QuantizeResult, quant json bytes)."""
    import onnx

    from rali_edge.export.onnx import set_metadata
    from rali_edge.quantize import quant_json_path, quantize

    if qjob.drift_budget is not None:
        from rali_edge.quantize.sensitivity import quantize_to_budget

        result = quantize_to_budget(float_path, out, qjob.calibration, qjob.drift_budget, config=qjob.config)
    else:
        result = quantize(qjob.config, float_path, out, qjob.calibration)
    model = onnx.load(str(out))
    set_metadata(model, job.props)
    with atomic_path(out) as tmp:
        onnx.save_model(model, str(tmp))
    return result, quant_json_path(out).read_bytes()


def finish(job: ExportJob, target: Path, result, report: dict, qjson: bytes, extra=(), notes=()) -> ExportResult:
    """Write the provenance file beside the artifact; add sizes and the quantizer's notes."""
    from rali_edge.quantize import quant_json_path

    qpath = atomic_write_bytes(quant_json_path(target), qjson)
    report = {**report, "size_bytes": result.size_bytes, "float_size_bytes": result.source_size_bytes}
    budget = result.details.get("drift_budget")
    if budget is not None:
        report["drift_budget"] = {"max_plcc_drop": budget["max_plcc_drop"], "dplcc": budget["steps"][-1]["dplcc"],
                                  "float_units": budget["float_units"]}
    return ExportResult(target, job.fmt, job.precision, job.props, report, [qpath, *extra],
                        [*result.notes, *notes])
