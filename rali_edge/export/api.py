"""`export_bundle`: one call from a bundle folder to a validated artifact.

Steps: check the options against the format table -> load the bundle -> fold -> the format's
backend exports into a temporary name -> validate -> rename onto the target (rali_edge._atomic), so
a failed or interrupted export (validation included) leaves nothing under the target name.
"""

from __future__ import annotations

import os
from pathlib import Path

from rali_edge.errors import ValidationFailed
from rali_edge.export.formats import FormatCaps, caps, check_options, load_object
from rali_edge.export.job import ExportJob, ExportResult, QuantizeJob
from rali_edge.export.spec import ExportSpec


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
    *,
    quant_kind: str | None = None,
    method: str | None = None,
    drift_budget: float | None = None,
    image_root: str | os.PathLike[str] | None = None,
    value_check: bool = True,
) -> ExportResult:
    """Export a bundle. precision None: the format's default (coreml fp16, others fp32); batch None:
    dynamic batch axis; opset None: the format's default; out_dir None: `<bundle>/../exports`.

    Quantized precisions (int8, onnx fp16): `calibration` is a CalibrationSet, or an image folder /
    meta file to build one from (`image_root` for a meta file's relative paths); `quant_kind` picks
    one of the format's quantize kinds (default: the first that makes the precision); `method` the
    INT8 calibration method; `drift_budget` a max PLCC drop on the labelled calibration set, met by
    keeping the most sensitive parts float (ONNX Runtime INT8 only). With a drift budget the value
    check against PyTorch reports the max |difference| but the budget is the gate.
    value_check=False reports that difference without enforcing the tolerance (timing runs on
    random-weight models, whose accuracy means nothing).
    """
    c = caps(fmt)
    precision = precision or c.default_precision
    input_kind = input_kind or c.default_input_kind
    opset = check_options(fmt, precision, batch, opset, input_kind, simplify)
    kind = c.quant_kind_for(precision, quant_kind) if c.is_quantized(precision) else None
    if kind is not None:
        from rali_edge.export.quantized import check_quantize_options

        check_quantize_options(fmt, kind, calibration, method, drift_budget)
    elif quant_kind or method or drift_budget is not None:
        from rali_edge.errors import UnsupportedOptionError

        raise UnsupportedOptionError(f"{precision} {fmt} is not quantized: drop --method / --drift-budget")
    tolerance = None if drift_budget is not None or not value_check else c.tolerance[precision]
    job = _prepare(Path(bundle_dir), c, precision, batch, opset, out_dir, simplify, with_embedding, input_kind,
                   name, tolerance)
    if kind is None:
        return load_object(c.backend + ":export_float")(job)
    from rali_edge.export.quantized import export_quantized

    cal = _calibration_set(calibration, job, calibration_size, image_root) if kind.calibration else None
    qjob = QuantizeJob(kind.make_config(method), cal, drift_budget)
    try:
        return export_quantized(job, qjob)
    except ValidationFailed as exc:
        if not any("max |difference|" in f for f in exc.failures):
            raise
        raise ValidationFailed([*exc.failures, _quantized_hint(job, kind, bundle_dir)]) from exc


def _quantized_hint(job: ExportJob, kind, bundle_dir) -> str:
    """What to do when a quantized artifact differs from float by more than the tolerance."""
    b = str(bundle_dir)
    steps = [f"the INT8/FP16 scores differ from float by more than the tolerance ({job.spec.tolerance:g}) on "
             f"{len(job.pixels)} sample images. Next steps:"]
    if kind.drift_budget:
        steps.append(f"gate on accuracy instead: `rali-edge export {b} --format {job.fmt} --precision "
                     f"{job.precision} --calibration LABELLED_META --drift-budget 0.01` keeps the most "
                     "sensitive layers float until the PLCC drop on the calibration set is within budget")
    if kind.methods:
        steps.append("try another calibration method: --method entropy or --method percentile")
    if not kind.from_artifact:   # quantized from the PyTorch graph: no float artifact to quantize apart
        steps.append("calibrate on more, or more representative, images (--calibration-size, a labelled "
                     "meta file of the target domain)")
        return "\n    ".join(steps)
    steps.append(f"or inspect the drift: `rali-edge export {b} --format onnx --out DIR`, then "
                 f"`rali-edge quantize DIR/<name>.onnx --kind {kind.name} --bundle {b} --calibration CAL --out "
                 f"q.onnx` and `rali-edge validate q.onnx --bundle {b} --meta TEST_META --image-root ROOT`")
    return "\n    ".join(steps)


def _calibration_set(calibration, job: ExportJob, size: int, image_root):
    """A CalibrationSet as given, or one built from a folder / meta file with the bundle's preprocessing."""
    if not isinstance(calibration, (str, os.PathLike)):
        return calibration
    from rali_edge.calibration.sets import build_calibration_set

    return build_calibration_set(Path(calibration), job.preprocess, size=size, image_root=image_root)


def _prepare(bundle_dir: Path, c: FormatCaps, precision, batch, opset, out_dir, simplify, with_embedding,
             input_kind, name, tolerance) -> ExportJob:
    from rali_edge.bundle import load_bundle
    from rali_edge.export.metadata import build_metadata
    from rali_edge.export.onnx import reference_outputs
    from rali_edge.export.samples import sample_pixels
    from rali_edge.model.scorer import RaliScorer

    bundle = load_bundle(bundle_dir)
    scorer = RaliScorer.from_bundle(bundle).eval()
    pre = bundle.config.preprocess
    spec = ExportSpec(image_size=pre.image_size, batch=batch, input_kind=input_kind,
                      with_embedding=with_embedding, tolerance=tolerance)
    props = build_metadata(pre, spec, c.name, precision, bundle.checksum, opset).to_props()
    pixels = sample_pixels(pre)
    out = Path(out_dir) if out_dir is not None else bundle.path.parent / "exports"
    stem = name or f"{bundle.path.name}-{c.name}-{precision}-{'dynamic' if batch is None else f'b{batch}'}"
    return ExportJob(scorer, pre, spec, c.name, precision, opset, props, simplify, pixels,
                     reference_outputs(scorer, pre, pixels), out / (stem + c.suffix))
