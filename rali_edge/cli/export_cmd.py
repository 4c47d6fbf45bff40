"""`rali-edge export`: a bundle -> ONNX, ORT mobile, Core ML or TensorRT, validated."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, friendly_errors
from rali_edge.errors import UnsupportedOptionError


@friendly_errors
def export(
    bundle: Path = typer.Argument(..., help="Bundle folder (config.json + model.safetensors)."),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx | ort | coreml | tensorrt"),
    precision: str = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (default: coreml fp16, others fp32)"),
    batch: int = typer.Option(None, "--batch", help="Fixed batch size N."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch axis (the default when --batch is absent)."),
    opset: int = typer.Option(None, "--opset", help="ONNX opset (default 18; 18..21, TensorRT 18..20)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <bundle>/../exports)."),
    simplify: bool = typer.Option(False, "--simplify", help="Simplify the ONNX graph with onnxslim."),
    with_embedding: bool = typer.Option(False, "--with-embedding", help="Also output the normalised PCA embedding."),
    name: str = typer.Option(None, "--name", help="Artifact file name without suffix."),
    calibration: Path = typer.Option(None, "--calibration", help="int8: image folder or meta JSON to calibrate on."),
    calibration_size: int = typer.Option(300, "--calibration-size", help="int8: number of calibration images."),
) -> None:
    """Export a bundle to ONNX, ORT mobile, Core ML or TensorRT (validated against PyTorch)."""
    from rali_edge.export.api import export_bundle

    if dynamic and batch is not None:
        raise UnsupportedOptionError("--batch N and --dynamic exclude each other")
    result = export_bundle(bundle, fmt, precision=precision, batch=batch, opset=opset, out_dir=out,
                           simplify=simplify, with_embedding=with_embedding, name=name,
                           calibration=calibration, calibration_size=calibration_size)
    console.print(f"[green]wrote[/] {result.path}  ({result.format}, {result.precision})", highlight=False)
    for extra in result.extra_files:
        console.print(f"  also {extra}", highlight=False)
    for key, value in result.validation.items():
        console.print(f"  {key}: {value}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
