"""`rali-edge quantize`: INT8 / FP16 artifacts from a float export, with calibration and drift budget.

The kinds come from the format table (`rali_edge.export.formats`): each format lists the quantize
kinds that make its precisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.cli._common import console, friendly_errors, renamed
from rali_edge.export.formats import all_quant_kinds


def _calibration_set(source: Path, bundle: Path, size: int, seed: int, cache_dir, image_root):
    """The calibration images, preprocessed with the bundle's preprocessing; its notes printed."""
    from rali_edge.bundle import load_bundle
    from rali_edge.calibration import build_calibration_set

    pre = load_bundle(bundle).config.preprocess
    calibration_set = build_calibration_set(source, pre, size=size, seed=seed, cache_dir=cache_dir,
                                            image_root=image_root)
    for note in calibration_set.notes:
        console.print(f"[yellow]note:[/] {note}")
    return calibration_set


@friendly_errors
def quantize(
    artifact: Path = typer.Argument(..., exists=True, help="The float artifact (.onnx or .mlpackage) to quantize."),
    out: Path = typer.Option(..., "--out", help="The quantized artifact to write."),
    kind: str = typer.Option("int8", "--kind", help=f"One of: {', '.join(all_quant_kinds(from_artifact=True))}."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", exists=True,
                                          help="Bundle whose preprocessing the calibration uses."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", exists=True,
                                               help="Calibration meta JSON file or image folder."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Image root of a --calibration meta file."),
    calibration_size: int = typer.Option(300, "--calibration-size", min=1, help="Calibration images (warns below 300)."),
    seed: int = typer.Option(0, "--seed"),
    method: Optional[str] = typer.Option(None, "--method", help="minmax | entropy | percentile (INT8)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache of preprocessed calibration sets."),
    drift_budget: Optional[float] = typer.Option(None, "--drift-budget",
                                                 help="Max PLCC drop on the (labelled) calibration set; keeps the "
                                                      "most sensitive transformer blocks (ViT) or layers (CNN) in float until met (int8 only)."),
    calib: Optional[Path] = typer.Option(None, "--calib", hidden=True, exists=True),
    calib_size: Optional[int] = typer.Option(None, "--calib-size", hidden=True, min=1),
) -> None:
    """Quantize a float artifact; writes <out>.quant.json (config + calibration provenance) beside it.

    Exit status: 0 written; 1 quantization failed or the drift budget cannot be met; 2 bad options.
    """
    from rali_edge.errors import ConfigError
    from rali_edge.export.formats import quant_kind
    from rali_edge.quantize import quantize as run_quantize

    calibration = renamed(calibration, calib, "--calibration", "--calib")
    calibration_size = renamed(calibration_size, calib_size, "--calibration-size", "--calib-size", default=300)
    qkind = quant_kind(kind)
    config = qkind.make_config(method)
    if drift_budget is not None and not qkind.drift_budget:
        raise ConfigError(f"--drift-budget applies to --kind int8 only, not {kind}")
    if drift_budget is not None and calibration is None:
        raise ConfigError("--drift-budget needs a labelled --calibration set")
    if qkind.calibration and calibration is None:
        raise ConfigError(f"--kind {kind} needs calibration images: --calibration META_OR_FOLDER --bundle BUNDLE")
    if calibration is not None and bundle is None:
        raise ConfigError("--calibration needs --bundle (its preprocessing decides the calibration pixels)")
    calibration_set = None if calibration is None else _calibration_set(
        calibration, bundle, calibration_size, seed, cache_dir, image_root)
    if drift_budget is not None:
        from rali_edge.quantize.sensitivity import quantize_to_budget

        result = quantize_to_budget(artifact, out, calibration_set, drift_budget, config=config)
        b = result.details["drift_budget"]
        console.print(f"kept in float ({b['unit_kind']}s): {', '.join(b['float_units']) or 'none'}; "
                      f"dPLCC {b['steps'][-1]['dplcc']:+.4f}; latency {b['latency']['int8_ms']:.1f} ms vs "
                      f"{b['latency']['fp32_ms']:.1f} ms fp32")
    else:
        result = run_quantize(config, artifact, out, calibration_set)
    console.print(f"{result.path} ({result.precision}, {result.size_bytes / 2**20:.1f} MiB, "
                  f"from {result.source_size_bytes / 2**20:.1f} MiB); provenance: {result.quant_json}")
