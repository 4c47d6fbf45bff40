"""`rali-edge export`: a bundle -> any format of the format table, validated against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.cli._common import console, friendly_errors, renamed
from rali_edge.errors import UnsupportedOptionError
from rali_edge.export.formats import FORMATS

_FORMAT_HELP = " | ".join(FORMATS)


@friendly_errors
def export(
    bundle: Path = typer.Argument(..., exists=True, help="Bundle folder (config.json + model.safetensors)."),
    fmt: str = typer.Option(..., "--format", "-f", help=_FORMAT_HELP),
    precision: str = typer.Option(None, "--precision", help="fp32 | fp16 | int8 | bf16 (openvino only) (default: coreml fp16, others fp32)."),
    batch: int = typer.Option(None, "--batch", help="Fixed batch size N."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch axis (the default when --batch is absent)."),
    opset: int = typer.Option(None, "--opset", help="ONNX opset (default 18; 18..21, TensorRT 18..20)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <bundle>/../exports)."),
    simplify: bool = typer.Option(False, "--simplify", help="Simplify the ONNX graph with onnxslim."),
    with_embedding: bool = typer.Option(False, "--with-embedding", help="Also output the normalised PCA embedding."),
    name: str = typer.Option(None, "--name", help="Artifact file name without suffix."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", exists=True,
                                               help="int8: image folder or meta JSON to calibrate on."),
    calibration_size: int = typer.Option(300, "--calibration-size", min=1, help="int8: number of calibration images."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Image root of a --calibration meta file."),
    method: Optional[str] = typer.Option(None, "--method", help="int8 calibration: minmax | entropy | percentile."),
    drift_budget: Optional[float] = typer.Option(
        None, "--drift-budget", help="onnx/ort/openvino int8: max PLCC drop on the labelled --calibration meta; the most "
                                     "sensitive layers stay float until it holds (then it is the gate)."),
    calib: Optional[Path] = typer.Option(None, "--calib", hidden=True, exists=True),
    calib_size: Optional[int] = typer.Option(None, "--calib-size", hidden=True, min=1),
) -> None:
    """Export a bundle to any format of the table (ONNX, ORT mobile, Core ML, TensorRT, LiteRT,
    ExecuTorch, OpenVINO), validated against PyTorch.

    Exit status: 0 written and validated; 1 the export or its validation failed; 2 bad options.
    """
    from rali_edge.export.api import export_bundle

    calibration = renamed(calibration, calib, "--calibration", "--calib")
    calibration_size = renamed(calibration_size, calib_size, "--calibration-size", "--calib-size", default=300)
    if dynamic and batch is not None:
        raise UnsupportedOptionError("--batch N and --dynamic exclude each other")
    result = export_bundle(bundle, fmt, precision=precision, batch=batch, opset=opset, out_dir=out,
                           simplify=simplify, with_embedding=with_embedding, name=name,
                           calibration=calibration, calibration_size=calibration_size, method=method,
                           drift_budget=drift_budget, image_root=image_root)
    console.print(f"[green]wrote[/] {result.path}  ({result.format}, {result.precision})", highlight=False)
    for extra in result.extra_files:
        console.print(f"  also {extra}", highlight=False)
    for key, value in result.validation.items():
        console.print(f"  {key}: {value}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
