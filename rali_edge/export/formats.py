"""The one format table: every per-format fact lives in a `FormatCaps` entry of `FORMATS`.

Suffix, precisions, input kinds, value tolerance per precision, how each quantized precision is
made (quantize kind, calibration), the export backend module, the runner, the "runnable here"
check, the ONNX opsets and the benchmark variants. `export`, `quantize`, `runtime`, `validate`
and `benchmark` read this table and nothing else. Adding a format = one entry here + one backend
module under `rali_edge.export.backends` + one runner module under `rali_edge.runtime`.

Options are never silently changed: an unsupported combination raises UnsupportedOptionError
naming the format, the option and what is accepted instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from rali_edge.errors import UnsupportedOptionError

if TYPE_CHECKING:
    from rali_edge.runtime.base import Runner

# bf16 is an inference precision (OpenVINO's CPU plugin: FP32 weights, bf16 compute where the CPU has it).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
QUANTIZE_COMMAND = "rali-edge quantize"
# Max |score difference| vs PyTorch float accepted when an export is validated, per precision.
TOLERANCE = MappingProxyType({"fp32": 1e-4, "fp16": 2e-2, "int8": 1e-1})


def load_object(ref: str) -> Any:
    """`"package.module:attribute"` -> the attribute; the table names code lazily so that reading
    it never imports a runtime (onnxruntime, coremltools, tensorrt)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class QuantKind:
    """One way `rali_edge.quantize` turns a float artifact into a smaller one (`quantize --kind`)."""

    name: str                 # the --kind value
    precision: str            # the precision of the artifact it makes
    config: str               # "module:Class" of its config dataclass (rali_edge.quantize.config)
    calibration: bool         # needs calibration images
    methods: bool = False     # takes --method (INT8 activation calibration)
    drift_budget: bool = False  # supports --drift-budget (sensitivity search, ONNX INT8 only)
    options: Mapping[str, Any] = field(default_factory=dict)  # fixed config fields (e.g. a profile)
    # True: `rali-edge quantize` turns a float artifact into this; False: only `export` makes it (the
    # PyTorch graph is quantized before conversion).
    from_artifact: bool = True

    def make_config(self, method: str | None = None):
        cls = load_object(self.config)
        kwargs = dict(self.options)
        if method is not None:
            if not self.methods:
                raise UnsupportedOptionError(f"quantize kind {self.name!r} takes no --method")
            kwargs["method"] = method
        return cls(**kwargs)


@dataclass(frozen=True)
class Variant:
    """One row of `rali-edge benchmark`: a (format, precision) made with a given quantize kind."""

    key: str                  # --formats name, e.g. "onnx-int8-cpu"
    precision: str
    label: str                # the table's precision cell, e.g. "int8 (cpu)"
    quant_kind: str | None = None   # None: the format's default way to make this precision


@dataclass(frozen=True)
class FormatCaps:
    """Everything rali-edge knows about one export format."""

    name: str
    label: str                # for tables ("ort mobile")
    runtime: str              # what runs its artifacts ("ONNX Runtime", "LiteRT", ...)
    suffix: str               # artifact file/folder suffix
    precisions: tuple[str, ...]   # the first is the default
    input_kinds: tuple[str, ...]  # the first is the default (see export.spec.INPUT_KINDS)
    backend: str              # module exposing export_float(job) and finish_quantized(job, ...)
    runner: str               # "module:Class" of its rali_edge.runtime Runner
    quant_kinds: tuple[QuantKind, ...] = ()   # how its quantized precisions are made
    # (format, precision) quantized artifacts start from; None: the backend quantizes the PyTorch graph
    float_source: tuple[str, str] | None = None
    tolerance: Mapping[str, float] = field(default_factory=lambda: TOLERANCE)
    dynamic_batch: bool = True
    max_fixed_batch: int | None = None  # largest fixed batch accepted; None: any
    opsets: tuple[int, int] | None = None   # inclusive ONNX opset range; None: no ONNX opset
    default_opset: int | None = None
    simplify: bool = False    # onnxslim graph simplification offered
    simulator: str | None = None  # "module:function" giving accuracy when the runtime is absent here
    variants: tuple[Variant, ...] = ()
    note: str = ""

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    @property
    def default_input_kind(self) -> str:
        return self.input_kinds[0]

    def quant_kind_for(self, precision: str, name: str | None = None) -> QuantKind:
        """The quantize kind that makes `precision` (the first listed, or the one named)."""
        for kind in self.quant_kinds:
            if kind.precision == precision and (name is None or kind.name == name):
                return kind
        raise UnsupportedOptionError(f"format {self.name!r} has no quantize kind {name or precision!r}")

    def is_quantized(self, precision: str) -> bool:
        """True when this precision is made by rali_edge.quantize from the float artifact."""
        return any(k.precision == precision for k in self.quant_kinds)

    def runner_class(self) -> type[Runner]:
        return load_object(self.runner)

    def runnable_here(self) -> tuple[bool, str]:
        """(True, "") when this format's runtime can execute here, else (False, why not)."""
        return self.runner_class().available()


_Q = "rali_edge.quantize.config:"
ONNX_INT8 = QuantKind("int8", "int8", _Q + "OnnxInt8Config", calibration=True, methods=True,
                      drift_budget=True)
ONNX_INT8_TRT_PROFILE = QuantKind("int8-tensorrt-profile", "int8", _Q + "OnnxInt8Config", calibration=True,
                                  methods=True, options=MappingProxyType({"profile": "tensorrt"}))
ONNX_FP16 = QuantKind("fp16", "fp16", _Q + "OnnxFp16Config", calibration=False)
TENSORRT_INT8 = QuantKind("int8-tensorrt", "int8", _Q + "TensorRTInt8Config", calibration=True, methods=True)
COREML_INT8_WEIGHTS = QuantKind("coreml-int8-weights", "int8", _Q + "CoreMLWeightsConfig", calibration=False)
COREML_W8A8 = QuantKind("coreml-w8a8", "int8", _Q + "CoreMLW8A8Config", calibration=True)

# LiteRT and ExecuTorch quantize the PyTorch graph (PT2E) before conversion: no float artifact first.
LITERT_INT8 = QuantKind("litert-int8", "int8", _Q + "LiteRTInt8Config", calibration=True, from_artifact=False)
EXECUTORCH_INT8 = QuantKind("executorch-int8", "int8", _Q + "ExecuTorchInt8Config", calibration=True,
                            from_artifact=False)
# Activation scales computed at run time: no calibration; on ViT-B/16 and a trained CNN half the drift
# of the static kind at the same speed (XNNPACK on x86, 1 thread).
EXECUTORCH_INT8_DYNAMIC = QuantKind("executorch-int8-dynamic", "int8", _Q + "ExecuTorchInt8Config",
                                    calibration=False, from_artifact=False,
                                    options=MappingProxyType({"activations": "dynamic"}))
# NNCF post-training INT8 of the validated float IR; a drift budget runs NNCF's accuracy control.
OPENVINO_INT8 = QuantKind("openvino-int8", "int8", _Q + "OpenVINOInt8Config",
                          calibration=True, drift_budget=True, from_artifact=False)

_ORT_RUNNER = "rali_edge.runtime.onnxruntime_runner:OnnxRuntimeRunner"

# The ONNX exporter is torch.onnx.export(dynamo=True): its translation library is written at
# opset 18 and cannot go lower (asking for 17 silently leaves 18), hence the lower bound.
# TensorRT 10.x (JetPack 6 ships 10.3) parses ONNX opsets up to 20.
FORMATS: dict[str, FormatCaps] = {
    "onnx": FormatCaps(
        name="onnx", label="onnx", runtime="ONNX Runtime", suffix=".onnx",
        precisions=("fp32", "fp16", "int8"), input_kinds=("uint8", "normalized"),
        backend="rali_edge.export.backends.onnx", runner=_ORT_RUNNER,
        quant_kinds=(ONNX_INT8, ONNX_FP16, ONNX_INT8_TRT_PROFILE), float_source=("onnx", "fp32"),
        opsets=(18, 21), default_opset=18, simplify=True,
        variants=(Variant("onnx-fp32", "fp32", "fp32"), Variant("onnx-fp16", "fp16", "fp16"),
                  Variant("onnx-int8-cpu", "int8", "int8 (cpu)", "int8"),
                  Variant("onnx-int8-tensorrt", "int8", "int8 (tensorrt)", "int8-tensorrt-profile")),
    ),
    "ort": FormatCaps(
        name="ort", label="ort mobile", runtime="ONNX Runtime", suffix=".ort",
        precisions=("fp32", "int8"), input_kinds=("uint8", "normalized"),
        backend="rali_edge.export.backends.ort", runner=_ORT_RUNNER,
        quant_kinds=(ONNX_INT8,), float_source=("onnx", "fp32"),
        opsets=(18, 21), default_opset=18, simplify=True,
        variants=(Variant("ort-fp32", "fp32", "fp32"),),
        note="ONNX Runtime Mobile format (Android/iOS onnxruntime-mobile packages)",
    ),
    "coreml": FormatCaps(
        name="coreml", label="coreml", runtime="Core ML", suffix=".mlpackage",
        precisions=("fp16", "fp32", "int8"),
        input_kinds=("unit",),   # Core ML's ImageType hands the graph [0, 1] floats
        backend="rali_edge.export.backends.coreml", runner="rali_edge.runtime.coreml_runner:CoreMLRunner",
        quant_kinds=(COREML_INT8_WEIGHTS, COREML_W8A8), float_source=("coreml", "fp16"),
        max_fixed_batch=1,  # an ImageType input is fed one image per prediction
        simulator="rali_edge.evaluation.coreml_sim:simulate_coreml",
        variants=(Variant("coreml-fp16", "fp16", "fp16"),
                  Variant("coreml-int8w", "int8", "int8 weights", "coreml-int8-weights")),
        note="int8 means INT8 weights (activation calibration needs macOS)",
    ),
    "tensorrt": FormatCaps(
        name="tensorrt", label="tensorrt", runtime="TensorRT", suffix=".engine",
        precisions=("fp32", "fp16", "int8"), input_kinds=("uint8", "normalized"),
        backend="rali_edge.export.backends.tensorrt", runner="rali_edge.runtime.tensorrt_runner:TensorRTRunner",
        quant_kinds=(TENSORRT_INT8,), float_source=("onnx", "fp32"),
        opsets=(18, 20), default_opset=18, simplify=True,
        variants=(Variant("tensorrt-fp16", "fp16", "fp16"), Variant("tensorrt-int8", "int8", "int8")),
        note="engines are specific to GPU and TensorRT version: build on the target",
    ),
    "litert": FormatCaps(
        name="litert", label="litert", runtime="LiteRT", suffix=".tflite",
        precisions=("fp32", "fp16", "int8"),
        input_kinds=("uint8_nhwc", "uint8"),   # NHWC uint8: what an Android bitmap buffer holds
        backend="rali_edge.export.backends.litert", runner="rali_edge.runtime.litert_runner:LiteRTRunner",
        quant_kinds=(LITERT_INT8,),
        # litert-torch 0.10 cannot convert a dynamic batch (google-ai-edge/litert-torch#870) and a
        # fixed-batch graph cannot be resized (its reshapes hold the batch): runners feed it in chunks.
        dynamic_batch=False,
        variants=(Variant("litert-fp32", "fp32", "fp32"), Variant("litert-int8", "int8", "int8")),
        note="LiteRT (TensorFlow Lite) for Android, run here by ai-edge-litert (XNNPACK); extra [litert]; "
             "fixed batch (--batch N, 1 for an app)",
    ),
    "executorch": FormatCaps(
        name="executorch", label="executorch", runtime="ExecuTorch", suffix=".pte",
        precisions=("fp32", "fp16", "int8"), input_kinds=("uint8",),
        backend="rali_edge.export.backends.executorch",
        runner="rali_edge.runtime.executorch_runner:ExecuTorchRunner",
        quant_kinds=(EXECUTORCH_INT8, EXECUTORCH_INT8_DYNAMIC),
        variants=(Variant("executorch-fp32", "fp32", "fp32"), Variant("executorch-int8", "int8", "int8"),
                  Variant("executorch-int8-dynamic", "int8", "int8 (dynamic)", "executorch-int8-dynamic")),
        note="ExecuTorch (XNNPACK delegate), run here by its Python runtime; extra [executorch]; "
             "a dynamic batch takes up to 8 images per call (larger batches are run in chunks)",
    ),
    "openvino": FormatCaps(
        name="openvino", label="openvino", runtime="OpenVINO", suffix=".openvino",
        precisions=("fp32", "fp16", "bf16", "int8"), input_kinds=("uint8", "normalized"),
        backend="rali_edge.export.backends.openvino", runner="rali_edge.runtime.openvino_runner:OpenVINORunner",
        quant_kinds=(OPENVINO_INT8,), float_source=("openvino", "fp32"),
        # bf16 keeps 8 mantissa bits (fp16: 11): up to 0.025 on the tiny random scorers
        tolerance=MappingProxyType({**TOLERANCE, "bf16": 5e-2}),
        variants=(Variant("openvino-fp32", "fp32", "fp32"), Variant("openvino-bf16", "bf16", "bf16 (inference)"),
                  Variant("openvino-int8", "int8", "int8")),
        note="OpenVINO IR folder (model.xml + model.bin) for Intel CPUs, iGPUs and NPUs, run here by OpenVINO's "
             "CPU plugin; extra [openvino]; bf16 = bf16 inference, only where the CPU computes bf16",
    ),
}

# The float PyTorch bundle: the reference row of every benchmark (not an export format).
REFERENCE_VARIANT = "pytorch-fp32"


def caps(fmt: str) -> FormatCaps:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UnsupportedOptionError(
            f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None


def format_for_suffix(suffix: str) -> FormatCaps | None:
    """The format whose artifacts end in `suffix` (None when no format does)."""
    return next((c for c in FORMATS.values() if c.suffix == suffix), None)


def all_quant_kinds(from_artifact: bool | None = None) -> dict[str, QuantKind]:
    """Every quantize kind of every format, by --kind name, in table order (only those that quantize
    a float artifact, or only those that do not, when `from_artifact` is given)."""
    kinds: dict[str, QuantKind] = {}
    for c in FORMATS.values():
        for k in c.quant_kinds:
            if from_artifact is None or k.from_artifact == from_artifact:
                kinds.setdefault(k.name, k)
    return kinds


def quant_kind(name: str) -> QuantKind:
    """A kind `rali-edge quantize` can apply to a float artifact."""
    kinds = all_quant_kinds(from_artifact=True)
    if name in kinds:
        return kinds[name]
    for c in FORMATS.values():
        if any(k.name == name for k in c.quant_kinds):
            raise UnsupportedOptionError(
                f"--kind {name} quantizes the PyTorch graph before conversion: use "
                f"`rali-edge export BUNDLE --format {c.name} --precision int8 --calibration CAL`")
    raise UnsupportedOptionError(f"--kind {name!r} is not one of {', '.join(kinds)}")


def all_variants() -> dict[str, tuple[FormatCaps, Variant]]:
    """Every benchmark variant by --formats key, in table order (the reference first)."""
    out: dict[str, tuple[FormatCaps, Variant]] = {}
    for c in FORMATS.values():
        for v in c.variants:
            out[v.key] = (c, v)
    return out


def check_options(
    fmt: str,
    precision: str,
    batch: int | None,
    opset: int | None,
    input_kind: str = "uint8",
    simplify: bool = False,
) -> int | None:
    """Check an option combination against the table; return the opset to use (None: no opset)."""
    c = caps(fmt)
    if precision not in PRECISIONS:
        raise UnsupportedOptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision not in c.precisions:
        raise UnsupportedOptionError(
            f"format {fmt!r} does not offer precision {precision!r} (offered: {', '.join(c.precisions)})"
            + (f"; {c.note}" if c.note else "")
        )
    if batch is None and not c.dynamic_batch:
        raise UnsupportedOptionError(f"format {fmt!r} needs a fixed batch size (--batch N)")
    if batch is not None and batch < 1:
        raise UnsupportedOptionError(f"batch must be a positive integer, got {batch}")
    if batch is not None and c.max_fixed_batch is not None and batch > c.max_fixed_batch:
        raise UnsupportedOptionError(
            f"format {fmt!r} takes a fixed batch of at most {c.max_fixed_batch} (or a dynamic batch), not {batch}"
        )
    if input_kind not in c.input_kinds:
        raise UnsupportedOptionError(
            f"format {fmt!r} does not take input_kind {input_kind!r} (accepted: {', '.join(c.input_kinds)})"
        )
    if simplify and not c.simplify:
        raise UnsupportedOptionError(f"format {fmt!r} has no graph simplification option")
    return check_opset(c, opset)


def check_opset(c: FormatCaps, opset: int | None) -> int | None:
    """The opset to use for format `c` (its default when None), or UnsupportedOptionError."""
    if c.opsets is None:
        if opset is not None:
            raise UnsupportedOptionError(f"format {c.name!r} has no ONNX opset; drop --opset {opset}")
        return None
    if opset is None:
        return c.default_opset
    lo, hi = c.opsets
    if not lo <= opset <= hi:
        why = " (the dynamo ONNX exporter cannot produce opsets below 18)" if opset < lo else ""
        raise UnsupportedOptionError(f"format {c.name!r} supports ONNX opsets {lo}..{hi}, not {opset}{why}")
    return opset


def needs_quantize(fmt: str, precision: str) -> bool:
    """True when this precision is made by rali_edge.quantize from the float artifact."""
    return caps(fmt).is_quantized(precision)
