"""`rali-edge quantize`: INT8 / FP16 artifacts from a float export, with calibration and drift budget.

(New module from issue 6; the lead registers it in cli/app.py: `app.command("quantize")(quantize_cmd.quantize)`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.cli._common import console, friendly_errors

KINDS = ("int8", "int8-tensorrt", "fp16", "coreml-int8-weights", "coreml-w8a8")


def _config(kind: str, method: str):
    from rali_edge.errors import ConfigError
    from rali_edge.quantize import (
        CoreMLW8A8Config,
        CoreMLWeightsConfig,
        OnnxFp16Config,
        OnnxInt8Config,
        TensorRTInt8Config,
    )

    builders = {
        "int8": lambda: OnnxInt8Config(method=method),
        "int8-tensorrt": lambda: TensorRTInt8Config(method=method),
        "fp16": OnnxFp16Config,
        "coreml-int8-weights": CoreMLWeightsConfig,
        "coreml-w8a8": CoreMLW8A8Config,
    }
    if kind not in builders:
        raise ConfigError(f"--kind {kind!r} is not one of {list(builders)}")
    return builders[kind]()


@friendly_errors
def quantize(
    artifact: Path = typer.Argument(..., help="The float artifact (.onnx or .mlpackage) to quantize."),
    out: Path = typer.Option(..., "--out", help="The quantized artifact to write."),
    kind: str = typer.Option("int8", "--kind", help=f"One of: {', '.join(KINDS)}."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Bundle whose preprocessing the calibration uses."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration meta JSON file or image folder."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Image root of a --calib meta file."),
    calib_size: int = typer.Option(300, "--calib-size", help="Calibration images (warns below 300)."),
    seed: int = typer.Option(0, "--seed"),
    method: str = typer.Option("minmax", "--method", help="minmax | entropy | percentile (INT8)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache of preprocessed calibration sets."),
    drift_budget: Optional[float] = typer.Option(None, "--drift-budget",
                                                 help="Max PLCC drop on the (labelled) calibration set; keeps the "
                                                      "most sensitive transformer blocks (ViT) or layers (CNN) in float until met (int8 only)."),
) -> None:
    """Quantize a float artifact; writes <out>.quant.json (config + calibration provenance) beside it."""
    from rali_edge.errors import ConfigError
    from rali_edge.quantize import OnnxInt8Config
    from rali_edge.quantize import quantize as run_quantize

    config = _config(kind, method)
    calibration = None
    if calib is not None:
        if bundle is None:
            raise ConfigError("--calib needs --bundle (its preprocessing decides the calibration pixels)")
        from rali_edge.bundle import load_bundle
        from rali_edge.calibration import build_calibration_set

        pre = load_bundle(bundle).config.preprocess
        calibration = build_calibration_set(calib, pre, size=calib_size, seed=seed, cache_dir=cache_dir,
                                            image_root=image_root)
        for note in calibration.notes:
            console.print(f"[yellow]note:[/] {note}")
    if drift_budget is not None:
        if not isinstance(config, OnnxInt8Config):
            raise ConfigError("--drift-budget applies to --kind int8 only")
        if calibration is None:
            raise ConfigError("--drift-budget needs a labelled --calib set")
        from rali_edge.quantize.sensitivity import quantize_to_budget

        result = quantize_to_budget(artifact, out, calibration, drift_budget, config=config)
        b = result.details["drift_budget"]
        console.print(f"kept in float ({b['unit_kind']}s): {', '.join(b['float_units']) or 'none'}; dPLCC {b['steps'][-1]['dplcc']:+.4f}; "
                      f"latency {b['latency']['int8_ms']:.1f} ms vs {b['latency']['fp32_ms']:.1f} ms fp32")
    else:
        result = run_quantize(config, artifact, out, calibration)
    console.print(f"{result.path} ({result.precision}, {result.size_bytes / 2**20:.1f} MiB, "
                  f"from {result.source_size_bytes / 2**20:.1f} MiB); provenance: {result.quant_json}")
