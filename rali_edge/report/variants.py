"""Every (format, precision) the benchmark can make, and how each artifact is produced.

An explicit table: the CLI name of a variant maps to its display format/precision and a builder.
Builders return a `Built` (the artifact path, whether it can run here and why not, notes) or raise:
NotRunnableHere -> "not runnable here", any other RaliEdgeError -> "export failed".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rali_edge.errors import ExportError, NotRunnableHere


@dataclass(frozen=True)
class Simulation:
    """How to get an accuracy figure in PyTorch for an artifact whose runtime is absent here."""

    text: str                        # for notes: what the figure comes from
    short: str                       # for the table's status cell
    weights: object | None = None    # a CoreMLWeightsConfig: INT8-round the weights first; None: FP16 only


FP16_SIMULATION = Simulation("accuracy from a PyTorch FP16 simulation", "PyTorch FP16 simulation")


@dataclass
class Built:
    path: Path
    runnable: bool = True
    reason: str = ""                 # why it cannot run here (when not runnable)
    simulate: Simulation | None = None   # when not runnable: accuracy simulated in PyTorch
    reference: bool = False          # the float PyTorch bundle itself (drift 0 by definition)
    notes: list[str] = field(default_factory=list)
    quant: dict | None = None        # what the quantizer reported (float nodes, calibration...)


@dataclass
class BuildContext:
    """Shared by the builders: the bundle, where artifacts go, calibration, and finished exports."""

    bundle_dir: Path
    artifacts_dir: Path
    calibration: Callable[[], object]          # lazily built CalibrationSet (only INT8 needs it)
    opset: int | None = None
    done: dict[str, Built] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def dependency(self, key: str) -> Built:
        """A previously built variant (building it now if needed); its failure becomes ours."""
        if key in self.failed:
            raise ExportError(f"needs {VARIANTS[key].label}, which failed: {self.failed[key]}")
        if key not in self.done:
            self.done[key] = VARIANTS[key].build(self)
        return self.done[key]

    def out(self, name: str) -> Path:
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.artifacts_dir / name


@dataclass(frozen=True)
class Variant:
    format: str
    precision: str
    build: Callable[[BuildContext], Built]

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}"


# ---------------------------------------------------------------- builders


def _export(ctx: BuildContext, fmt: str, precision: str) -> Path:
    from rali_edge.export.api import export_bundle
    from rali_edge.export.formats import caps

    opset = ctx.opset if caps(fmt).opsets is not None else None   # Core ML has no opset
    result = export_bundle(ctx.bundle_dir, fmt, precision, batch=None, opset=opset,
                           out_dir=ctx.artifacts_dir, name=f"model-{fmt}-{precision}")
    return Path(result.path)


def _quantize(config, source: Path, out: Path, calibration=None) -> dict:
    from rali_edge.quantize.api import quantize

    result = quantize(config, source, out, calibration)
    return {"precision": result.precision, "details": result.details, "notes": result.notes,
            "calibration": result.calibration, "quant_json": str(result.quant_json)}


def build_pytorch(ctx: BuildContext) -> Built:
    return Built(ctx.bundle_dir, reference=True)


def build_onnx_fp32(ctx: BuildContext) -> Built:
    return Built(_export(ctx, "onnx", "fp32"))


def build_onnx_fp16(ctx: BuildContext) -> Built:
    from rali_edge.quantize.config import OnnxFp16Config

    src = ctx.dependency("onnx-fp32").path
    out = ctx.out("model-onnx-fp16.onnx")
    return Built(out, quant=_quantize(OnnxFp16Config(), src, out))


def _onnx_int8(ctx: BuildContext, profile: str) -> Built:
    from rali_edge.quantize.config import OnnxInt8Config

    src = ctx.dependency("onnx-fp32").path
    out = ctx.out(f"model-onnx-int8-{profile}.onnx")
    return Built(out, quant=_quantize(OnnxInt8Config(profile=profile), src, out, ctx.calibration()))


def build_onnx_int8_cpu(ctx: BuildContext) -> Built:
    return _onnx_int8(ctx, "cpu")


def build_onnx_int8_tensorrt(ctx: BuildContext) -> Built:
    built = _onnx_int8(ctx, "tensorrt")
    built.notes.append("s8 Q/DQ graph for TensorRT, run here by ONNX Runtime on the CPU")
    return built


def build_ort_fp32(ctx: BuildContext) -> Built:
    return Built(_export(ctx, "ort", "fp32"))


def _coreml_reason() -> str:
    from rali_edge.runtime.coreml_runner import CoreMLRunner

    ok, reason = CoreMLRunner.available()
    return "" if ok else reason


def build_coreml_fp16(ctx: BuildContext) -> Built:
    path = _export(ctx, "coreml", "fp16")
    reason = _coreml_reason()
    return Built(path, runnable=not reason, reason=reason, simulate=FP16_SIMULATION if reason else None)


def build_coreml_int8w(ctx: BuildContext) -> Built:
    from rali_edge.quantize.config import CoreMLWeightsConfig

    src = ctx.dependency("coreml-fp16").path
    out = ctx.out("model-coreml-int8w.mlpackage")
    config = CoreMLWeightsConfig()
    quant = _quantize(config, src, out)
    reason = _coreml_reason()
    sim = Simulation("accuracy from a PyTorch simulation (the same INT8 weight rounding, FP16 compute)",
                     "PyTorch INT8-weight simulation", weights=config)
    return Built(out, runnable=not reason, reason=reason, simulate=sim if reason else None, quant=quant)


def _tensorrt_reason() -> str:
    from rali_edge.export.tensorrt import tensorrt_available

    ok, reason = tensorrt_available()
    return "" if ok else reason


def build_tensorrt_fp16(ctx: BuildContext) -> Built:
    path = _export(ctx, "tensorrt", "fp16")   # without TensorRT: the ONNX + its trtexec script
    if path.suffix != ".engine":
        raise NotRunnableHere(f"TensorRT needs a CUDA GPU + TensorRT ({_tensorrt_reason()}); "
                              f"build the engine on the target from {path.name} (trtexec script written beside it)")
    return Built(path)


def build_tensorrt_int8(ctx: BuildContext) -> Built:
    reason = _tensorrt_reason()
    if reason:   # checked first: no point quantizing for an engine that cannot be built here
        raise NotRunnableHere(f"TensorRT needs a CUDA GPU + TensorRT ({reason}); build the engine on the "
                              "target from the onnx int8 (tensorrt) artifact")
    qdq = ctx.dependency("onnx-int8-tensorrt").path
    import onnx

    from rali_edge.export.metadata import read_metadata
    from rali_edge.export.spec import ExportSpec
    from rali_edge.export.tensorrt import build_engine

    # The engine carries the same metadata as the Q/DQ ONNX it is built from.
    props = {p.key: p.value for p in onnx.load(str(qdq), load_external_data=False).metadata_props}
    meta = read_metadata(props, str(qdq))
    spec = ExportSpec(image_size=meta.image_size, batch=meta.batch, input_kind=meta.input_kind)
    return Built(build_engine(qdq, ctx.out("model-tensorrt-int8.engine"), spec, "int8", props))


VARIANTS: dict[str, Variant] = {
    "pytorch-fp32": Variant("pytorch", "fp32", build_pytorch),
    "onnx-fp32": Variant("onnx", "fp32", build_onnx_fp32),
    "onnx-fp16": Variant("onnx", "fp16", build_onnx_fp16),
    "onnx-int8-cpu": Variant("onnx", "int8 (cpu)", build_onnx_int8_cpu),
    "onnx-int8-tensorrt": Variant("onnx", "int8 (tensorrt)", build_onnx_int8_tensorrt),
    "ort-fp32": Variant("ort mobile", "fp32", build_ort_fp32),
    "coreml-fp16": Variant("coreml", "fp16", build_coreml_fp16),
    "coreml-int8w": Variant("coreml", "int8 weights", build_coreml_int8w),
    "tensorrt-fp16": Variant("tensorrt", "fp16", build_tensorrt_fp16),
    "tensorrt-int8": Variant("tensorrt", "int8", build_tensorrt_int8),
}
DEFAULT_VARIANTS = tuple(VARIANTS)
