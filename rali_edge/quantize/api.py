"""`quantize(config, source, out, calibration=None)`: the one verb, dispatching on the config type.

Every quantized artifact gets `<artifact>.quant.json` beside it: the config (with its version), the
calibration provenance (source files, count, seed, method, preprocess), what stayed float, sizes.
ONNX artifacts also carry `rali_edge.precision` and a `rali_edge.quantization` summary in their metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rali_edge import __version__
from rali_edge._atomic import atomic_write_json
from rali_edge.errors import ConfigError, InputFileError
from rali_edge.quantize.config import (
    CoreMLW8A8Config,
    CoreMLWeightsConfig,
    OnnxFp16Config,
    OnnxInt8Config,
    QuantConfig,
    TensorRTInt8Config,
    config_to_dict,
)

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet

QUANT_JSON_SUFFIX = ".quant.json"


@dataclass
class QuantizeResult:
    path: Path                      # the quantized artifact
    config: QuantConfig
    precision: str                  # "int8", "fp16", "int8-weights", ...
    calibration: dict | None        # provenance of the calibration set, None when none was used
    size_bytes: int
    source_size_bytes: int
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    quant_json: Path | None = None


def quant_json_path(artifact: str | os.PathLike[str]) -> Path:
    p = Path(artifact)
    return p.with_name(p.name + QUANT_JSON_SUFFIX)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _need_calibration(config: QuantConfig, calibration: CalibrationSet | None) -> CalibrationSet:
    if calibration is None or len(calibration) == 0:
        raise ConfigError(f"{type(config).__name__} needs a calibration set (build_calibration_set)")
    return calibration


def _set_onnx_metadata(path: Path, precision: str, summary: dict) -> None:
    """Mark the artifact's own metadata so runtimes and reports see what it is."""
    import onnx

    from rali_edge._atomic import atomic_path

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props["rali_edge.precision"] = precision
    props["rali_edge.quantization"] = json.dumps(summary, sort_keys=True)
    del model.metadata_props[:]
    model.metadata_props.extend(onnx.StringStringEntryProto(key=k, value=v) for k, v in props.items())
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def _copy_metadata(source: Path, out: Path) -> None:
    """Quantizers rewrite the model; carry the exporter's metadata over when they dropped it."""
    import onnx

    src = onnx.load(str(source), load_external_data=False)
    dst = onnx.load(str(out))
    have = {p.key for p in dst.metadata_props}
    missing = [p for p in src.metadata_props if p.key not in have]
    if missing:
        from rali_edge._atomic import atomic_path

        dst.metadata_props.extend(missing)
        with atomic_path(out) as tmp:
            onnx.save_model(dst, str(tmp))


# ---------------------------------------------------------------- one handler per config type


def _onnx_int8(config: OnnxInt8Config, source: Path, out: Path, calibration) -> tuple[str, dict, list[str]]:
    from rali_edge.quantize.onnx_int8 import quantize_onnx_int8

    details = quantize_onnx_int8(config, source, out, _need_calibration(config, calibration))
    _copy_metadata(source, out)
    _set_onnx_metadata(out, "int8", {"kind": "onnx_int8", "profile": config.profile, "method": config.method,
                                     "float_nodes": details["float_nodes"]})
    return "int8", details, []


def _tensorrt_int8(config: TensorRTInt8Config, source: Path, out: Path, calibration) -> tuple[str, dict, list[str]]:
    from rali_edge.quantize.onnx_int8 import quantize_for_tensorrt

    details, notes = quantize_for_tensorrt(config, source, out, _need_calibration(config, calibration))
    _copy_metadata(source, out)
    _set_onnx_metadata(out, "int8", {"kind": "tensorrt_int8", "quantizer": config.quantizer,
                                     "method": config.method})
    return "int8", details, notes


def _onnx_fp16(config: OnnxFp16Config, source: Path, out: Path, calibration) -> tuple[str, dict, list[str]]:
    from rali_edge.quantize.onnx_fp16 import convert_onnx_fp16

    details = convert_onnx_fp16(config, source, out)
    _copy_metadata(source, out)
    _set_onnx_metadata(out, "fp16", {"kind": "onnx_fp16", **details})
    return "fp16", details, []


def _coreml_weights(config: CoreMLWeightsConfig, source: Path, out: Path, calibration) -> tuple[str, dict, list[str]]:
    from rali_edge.quantize.coreml import quantize_coreml_weights

    details = quantize_coreml_weights(config, source, out)
    return "int8-weights", details, ["Core ML accuracy on Linux is simulated (see quantize.coreml.simulate_*)"]


def _coreml_w8a8(config: CoreMLW8A8Config, source: Path, out: Path, calibration) -> tuple[str, dict, list[str]]:
    from rali_edge.quantize.coreml import quantize_coreml_w8a8

    details = quantize_coreml_w8a8(config, source, out, _need_calibration(config, calibration))
    return "int8", details, []


Handler = Callable[[QuantConfig, Path, Path, "CalibrationSet | None"], tuple[str, dict, list[str]]]
HANDLERS: dict[type, Handler] = {
    OnnxInt8Config: _onnx_int8,
    TensorRTInt8Config: _tensorrt_int8,
    OnnxFp16Config: _onnx_fp16,
    CoreMLWeightsConfig: _coreml_weights,
    CoreMLW8A8Config: _coreml_w8a8,
}


_SOURCE_SUFFIX = {OnnxInt8Config: ".onnx", TensorRTInt8Config: ".onnx", OnnxFp16Config: ".onnx",
                  CoreMLWeightsConfig: ".mlpackage", CoreMLW8A8Config: ".mlpackage"}


def _check_source(config: QuantConfig, source: Path) -> None:
    """A source of the wrong kind or a corrupt file is rejected before any work, naming the file."""
    want = _SOURCE_SUFFIX[type(config)]
    if source.suffix != want:
        raise InputFileError(f"{source}: {type(config).__name__} quantizes {want} artifacts, not {source.suffix or 'this'}")
    if want == ".onnx":
        import onnx

        try:
            onnx.load_model(str(source), load_external_data=False)
        except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
            raise InputFileError(f"{source}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    elif not (source / "Manifest.json").is_file():
        raise InputFileError(f"{source}: not a Core ML package (no Manifest.json inside)")


def quantize(config: QuantConfig, source: str | os.PathLike[str], out: str | os.PathLike[str],
             calibration: CalibrationSet | None = None) -> QuantizeResult:
    """Quantize the float artifact `source` into `out` as `config` says; writes `<out>.quant.json`."""
    handler = HANDLERS.get(type(config))
    if handler is None:
        raise ConfigError(f"not a quantization config: {type(config).__name__} (known: "
                          f"{', '.join(t.__name__ for t in HANDLERS)})")
    source, out = Path(source), Path(out)
    if not source.exists():
        raise ConfigError(f"{source}: no such artifact to quantize")
    if source.resolve() == out.resolve():
        raise ConfigError(f"{out}: the output must differ from the source")
    _check_source(config, source)
    precision, details, notes = handler(config, source, out, calibration)
    if calibration is not None:
        notes = [*calibration.notes, *notes]
    result = QuantizeResult(
        path=out, config=config, precision=precision,
        calibration=calibration.provenance if calibration is not None else None,
        size_bytes=_size(out), source_size_bytes=_size(source), details=details, notes=notes,
    )
    result.quant_json = write_quant_json(result, source)
    return result


def write_quant_json(result: QuantizeResult, source: Path | str, dest: Path | None = None) -> Path:
    """`<artifact>.quant.json` beside result.path (or at `dest`): how the artifact was quantized."""
    doc = {
        "artifact": result.path.name, "source": str(source), "precision": result.precision,
        "config": config_to_dict(result.config), "calibration": result.calibration,
        "size_bytes": result.size_bytes, "source_size_bytes": result.source_size_bytes,
        "details": result.details, "notes": result.notes, "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_json(dest or quant_json_path(result.path), doc)
