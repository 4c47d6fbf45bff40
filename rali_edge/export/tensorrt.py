"""TensorRT: an engine builder from the exported ONNX (TensorRT 10 and 11), the engine's JSON
metadata header, and the equivalent `trtexec` command line for building on the target.

Typing (documented choice):
- fp32 and int8 build a *strongly typed* network (NetworkDefinitionCreationFlag.STRONGLY_TYPED):
  every tensor keeps the type the ONNX gives it. INT8 therefore comes only from an explicitly
  quantized Q/DQ ONNX (made by `rali-edge quantize`); the deprecated implicit calibrator is not used.
- fp16 builds a *weakly typed* network with BuilderFlag.FP16 from the float ONNX (TensorRT 10,
  which JetPack 6 ships). TensorRT 11 has only strongly typed networks: there an FP16 engine needs
  an ONNX whose weights are already FP16, built as "fp32" (types from the ONNX); asking for fp16
  raises a clear error instead of building something else.

Engines are specific to the GPU and TensorRT version, and a builder needs a CUDA device, so the
engine is normally built on the target with the written `trtexec` script.

Engine file layout (ultralytics-compatible): 4-byte little-endian length N, N bytes of UTF-8 JSON
metadata, then the serialized engine.
"""

from __future__ import annotations

import json
import shlex
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge._atomic import atomic_path, atomic_write_bytes, atomic_write_text
from rali_edge.errors import ExportError, NotRunnableHere, UnsupportedOptionError

if TYPE_CHECKING:
    from rali_edge.export.spec import ExportSpec

MAX_HEADER_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 32


# ------------------------------------------------------------------ engine file with JSON header


def write_engine_file(path: str | Path, engine: bytes, metadata: dict[str, str]) -> Path:
    meta = json.dumps(metadata, sort_keys=True).encode("utf-8")
    return atomic_write_bytes(path, struct.pack("<I", len(meta)) + meta + bytes(engine))


def read_engine_file(path: str | Path) -> tuple[dict[str, str], bytes]:
    """Split an engine file into (metadata, serialized engine); ExportError if there is no header."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ExportError(f"{path}: too short to be an engine file ({len(data)} bytes)")
    (n,) = struct.unpack("<I", data[:4])
    if n == 0 or n > MAX_HEADER_BYTES or 4 + n > len(data):
        raise ExportError(f"{path}: no rali-edge metadata header (a plain TensorRT engine?)")
    try:
        meta = json.loads(data[4 : 4 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: metadata header is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ExportError(f"{path}: metadata header is not a JSON object")
    return meta, data[4 + n :]


# ------------------------------------------------------------------ shapes and trtexec


def profile_shapes(spec: ExportSpec, max_batch: int = DEFAULT_MAX_BATCH) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) input shapes: fixed batch -> all equal; dynamic -> 1, max/2, max."""
    if spec.batch is not None:
        s = spec.input_shape(spec.batch)
        return s, s, s
    opt = max(1, max_batch // 2)
    return spec.input_shape(1), spec.input_shape(opt), spec.input_shape(max_batch)


def strongly_typed(precision: str) -> bool:
    return precision != "fp16"


def trtexec_command(
    onnx_name: str,
    engine_name: str,
    spec: ExportSpec,
    precision: str,
    timing_cache_name: str,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[str]:
    """The trtexec argument list equivalent to `build_engine` (files named relative to one folder)."""
    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    # Strongly typed: precision comes from the ONNX (Q/DQ for int8), so no --fp16/--int8 flags.
    args.append("--fp16" if precision == "fp16" else "--stronglyTyped")
    if precision == "fp32":
        args.append("--noTF32")  # TF32 matmuls (on by default on Ampere+) would break the 1e-4 tolerance
    args.append(f"--timingCacheFile={timing_cache_name}")
    mn, opt, mx = profile_shapes(spec, max_batch)
    for flag, shape in (("--minShapes", mn), ("--optShapes", opt), ("--maxShapes", mx)):
        args.append(f"{flag}={spec.input_name}:{'x'.join(str(d) for d in shape)}")
    return args


def write_trtexec_script(
    onnx_path: Path, spec: ExportSpec, precision: str, metadata: dict[str, str], max_batch: int = DEFAULT_MAX_BATCH
) -> Path:
    """Write `<stem>.trtexec.sh` (+ `<stem>.engine.json`) beside the ONNX; returns the script path.

    The script builds a plain engine with trtexec, then prepends the JSON header so the result is
    the same `.engine` file `build_engine` writes.
    """
    stem = onnx_path.stem
    meta_name, plain, engine = f"{stem}.engine.json", f"{stem}.plain.engine", f"{stem}.engine"
    atomic_write_text(onnx_path.with_name(meta_name), json.dumps(metadata, sort_keys=True) + "\n")
    cmd = trtexec_command(onnx_path.name, plain, spec, precision, f"{stem}.timing.cache", max_batch)
    script = "\n".join(
        [
            "#!/bin/sh",
            "# Build the TensorRT engine ON THE TARGET (e.g. Jetson with JetPack 6 / TensorRT 10):",
            "# engines are specific to the GPU and the TensorRT version.",
            "set -e",
            'cd "$(dirname "$0")"',
            " ".join(shlex.quote(a) for a in cmd),
            "# Prepend the rali-edge metadata header (4-byte little-endian length + JSON).",
            "python3 - <<'PY'",
            "import struct",
            f"meta = open({meta_name!r}, 'rb').read().strip()",
            f"engine = open({plain!r}, 'rb').read()",
            f"open({engine!r}, 'wb').write(struct.pack('<I', len(meta)) + meta + engine)",
            "PY",
            f"rm -f {shlex.quote(plain)}",
            f"echo 'wrote {engine}'",
            "",
        ]
    )
    path = onnx_path.with_name(f"{stem}.trtexec.sh")
    atomic_write_text(path, script)
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------ the builder (needs TensorRT + CUDA)


def tensorrt_available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return False, "the tensorrt Python package is not installed (it cannot be installed on this machine)"
    import torch

    if not torch.cuda.is_available():
        return False, "TensorRT needs a CUDA GPU and none is visible"
    return True, ""


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    spec: ExportSpec,
    precision: str,
    metadata: dict[str, str],
    timing_cache: str | Path | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Path:
    """Build a serialized engine from `onnx_path` and write it with the metadata header (atomic)."""
    ok, reason = tensorrt_available()
    if not ok:
        raise NotRunnableHere(f"cannot build {engine_path}: {reason}; run the written trtexec script on the target")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, precision))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT could not parse the ONNX: " + "; ".join(errors))
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # same as trtexec --noTF32
    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    mn, opt, mx = profile_shapes(spec, max_batch)
    profile.set_shape(spec.input_name, mn, opt, mx)
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return write_engine_file(engine_path, bytes(serialized), metadata)


def _network_flags(trt, precision: str) -> int:
    has_strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly_typed(precision):
        if not has_strong:
            raise UnsupportedOptionError(
                f"TensorRT {trt.__version__} has no strongly typed networks; fp32/int8 builds need TensorRT >= 10"
            )
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise UnsupportedOptionError(
            f"TensorRT {trt.__version__} builds only strongly typed networks: make an FP16 ONNX "
            "(`rali-edge quantize`) and build it with precision fp32 (types come from the ONNX)"
        )
    return 0
