"""Versioned quantization configs that validate themselves; one dataclass per kind of quantization.

Each config is written (with the calibration provenance) beside the artifact it produced, in
`<artifact>.quant.json`, and read back with `config_from_dict` (through `rali_edge.config_io`), which
refuses unknown versions and keys and values of the wrong type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rali_edge import config_io
from rali_edge.errors import ConfigError

CONFIG_VERSION = 1
SUPPORTED_CONFIG_VERSIONS = (1,)

PROFILES = ("cpu", "tensorrt")
METHODS = ("minmax", "entropy", "percentile")
QUANTIZERS = ("ort", "modelopt")
COREML_MODES = ("linear_symmetric", "linear")
COREML_GRANULARITIES = ("per_channel", "per_tensor")
EXECUTORCH_ACTIVATIONS = ("static", "dynamic")
# Op types ORT is asked to quantize by default: the GEMM-like ops that carry the compute. Everything
# else (Add, Mul, Sigmoid, Softmax, LayerNorm...) stays float, which avoids Q/DQ churn between them.
DEFAULT_INT8_OPS = ("Conv", "MatMul", "Gemm")


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {list(allowed)}")


def _version(version: Any) -> None:
    if isinstance(version, bool) or version not in SUPPORTED_CONFIG_VERSIONS:  # True == 1, but is no version
        raise ConfigError(f"quantization config version {version!r} is not supported "
                          f"(supported: {list(SUPPORTED_CONFIG_VERSIONS)})")


@dataclass(frozen=True)
class OnnxInt8Config:
    """ONNX Runtime static INT8 (QDQ, per-channel s8 weights).

    profile "cpu": u8 asymmetric activations (fastest on AVX512-VNNI); "tensorrt": symmetric s8
    activations and weights (TensorRT's explicit quantization).
    """

    profile: str = "cpu"
    method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    keep_head_float: bool = True
    # The full-resolution convolutions (patterns.find_stem) stay float: their 8-bit activations lose the
    # faint pixel-level cues (noise, blur) a quality scorer reads. A few percent of a CNN's compute.
    keep_stem_float: bool = True
    exclude_layernorm: bool = True
    exclude_softmax: bool = True
    exclude_gelu: bool = True
    op_types: tuple[str, ...] = DEFAULT_INT8_OPS
    quantize_attention_matmuls: bool = True   # activation x activation MatMuls (q@k, attn@v)
    # Their second operand (keys, values) as symmetric s8 instead of u8 (cpu profile): MLAS multiplies
    # u8 x s8 on its VNNI/AMX kernels, u8 x u8 on slower ones (AVX512 only). With quantize_before_transpose
    # it halved ViT-B/16's q@k + attn@v time (benchmarks/RESULTS_int8.md); drift unchanged in the tests.
    signed_attention_operands: bool = True
    # Op types whose outputs stay float: DQ -> MatMul -> float runs as one MatMulIntegerToFloat kernel,
    # and the attention Softmax then runs in float instead of ORT's slow QLinearSoftmax.
    float_output_ops: tuple[str, ...] = ("MatMul", "Gemm")
    extra_float_nodes: tuple[str, ...] = ()   # node names kept float on top of the patterns (budget search)
    preprocess: bool = True                   # quant_pre_process with skip_symbolic_shape=True
    calibration_batch: int = 8
    # MatMul + bias Add -> one MatMulIntegerToFloat with the bias inside (ort_fusions.py; ORT-only
    # contrib op). None = on for the cpu profile, off for tensorrt (TensorRT has no such op).
    fuse_bias: bool | None = None
    # nn.MultiheadAttention's packed-QKV unpacking (5-D Transpose + Gathers) -> one Split: exact, standard ONNX
    split_qkv: bool = True
    # Transpose/Reshape -> QuantizeLinear as QuantizeLinear -> Transpose/Reshape (ort_fusions.py): exact,
    # standard ONNX; the attention's head transposes then move 8-bit data. None = on for the cpu profile
    # (measured there), off for tensorrt (which places its own Q/DQ).
    quantize_before_transpose: bool | None = None
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        _choice(self.profile, PROFILES, "profile")
        if self.fuse_bias and self.profile == "tensorrt":
            raise ConfigError("fuse_bias writes an ONNX Runtime contrib op (MatMulIntegerToFloat), which "
                              "TensorRT cannot parse; use it with profile='cpu' only")
        _choice(self.method, METHODS, "method")
        if not 90.0 <= self.percentile <= 100.0:
            raise ConfigError(f"percentile={self.percentile} must be in [90, 100]")
        if not self.op_types:
            raise ConfigError("op_types must name at least one op type to quantize")
        if self.calibration_batch < 1:
            raise ConfigError(f"calibration_batch={self.calibration_batch} must be >= 1")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "extra_float_nodes", tuple(self.extra_float_nodes))
        object.__setattr__(self, "float_output_ops", tuple(self.float_output_ops))

    @property
    def bias_fusion(self) -> bool:
        """Whether the bias fusion runs: the explicit setting, else on for the cpu profile."""
        return self.profile == "cpu" if self.fuse_bias is None else self.fuse_bias

    @property
    def early_quantize(self) -> bool:
        """Whether quantize_before_transpose runs: the explicit setting, else on for the cpu profile."""
        setting = self.quantize_before_transpose
        return self.profile == "cpu" if setting is None else setting


@dataclass(frozen=True)
class TensorRTInt8Config:
    """Q/DQ ONNX for TensorRT's explicit quantization: ORT's `tensorrt` profile or NVIDIA ModelOpt."""

    quantizer: str = "ort"
    method: str = "entropy"
    keep_head_float: bool = True
    keep_stem_float: bool = True  # as OnnxInt8Config.keep_stem_float; TensorRT runs those convs in FP16/FP32
    calibration_batch: int = 8
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        _choice(self.quantizer, QUANTIZERS, "quantizer")
        _choice(self.method, METHODS, "method")
        if self.calibration_batch < 1:
            raise ConfigError(f"calibration_batch={self.calibration_batch} must be >= 1")


@dataclass(frozen=True)
class OnnxFp16Config:
    """ONNX FP16 with float32 inputs/outputs; LayerNorm and Softmax optionally kept in FP32."""

    keep_io_types: bool = True
    keep_layernorm_fp32: bool = True
    keep_softmax_fp32: bool = True
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)


@dataclass(frozen=True)
class CoreMLWeightsConfig:
    """Core ML INT8 weights (coremltools linear_quantize_weights); compute stays FP16."""

    nbits: int = 8
    mode: str = "linear_symmetric"
    granularity: str = "per_channel"
    weight_threshold: int = 2048   # weights with fewer elements stay FP16 (coremltools' own default)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        if self.nbits != 8:
            raise ConfigError(f"nbits={self.nbits}: only 8-bit weights are supported")
        _choice(self.mode, COREML_MODES, "mode")
        _choice(self.granularity, COREML_GRANULARITIES, "granularity")
        if self.weight_threshold < 0:
            raise ConfigError(f"weight_threshold={self.weight_threshold} must be >= 0")


@dataclass(frozen=True)
class CoreMLW8A8Config:
    """Core ML INT8 weights and activations; activation calibration runs `predict`, i.e. macOS only."""

    weights: CoreMLWeightsConfig = CoreMLWeightsConfig()
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)


@dataclass(frozen=True)
class ExecuTorchInt8Config:
    """ExecuTorch INT8: PT2E with XNNPACKQuantizer on the image encoder, lowered to XNNPACK.

    Quantized: the encoder's convolutions and linears (s8 weights, per output channel by default).
    activations "static": s8 per-tensor activation scales from the calibration images;
    "dynamic": activation scales computed at run time (XNNPACK: per row), no calibration needed.
    Stay float: attention matmuls, LayerNorm, softmax, GELU (XNNPACKQuantizer has no pattern for
    them); the element-wise adds/muls unless quantize_elementwise (they carry a ViT's residual
    stream: quantizing them quadrupled the drift of a ViT-B/16 at no speed gain); the
    full-resolution stem (keep_stem_float) and the head (keep_head_float). Input uint8, score float32.
    """

    activations: str = "static"
    per_channel: bool = True
    quantize_elementwise: bool = False
    keep_head_float: bool = True
    # As OnnxInt8Config.keep_stem_float: the full-resolution convolutions (a ViT's patch conv, a
    # ResNet's stem) and the element-wise ops before them stay float.
    keep_stem_float: bool = True
    calibration_batch: int = 8
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        _choice(self.activations, EXECUTORCH_ACTIVATIONS, "activations")
        if self.quantize_elementwise and self.activations == "dynamic":
            raise ConfigError("quantize_elementwise needs activations='static' (XNNPACK quantizes only "
                              "convolutions and linears dynamically)")
        if self.calibration_batch < 1:
            raise ConfigError(f"calibration_batch={self.calibration_batch} must be >= 1")

    @property
    def needs_calibration(self) -> bool:
        return self.activations == "static"


@dataclass(frozen=True)
class LiteRTInt8Config:
    """LiteRT static INT8: PT2E with litert-torch's PT2EQuantizer on the image encoder only.

    Quantized: the convolutions, linears, adds and muls of the encoder (int8 weights, symmetric, per
    output channel by default; int8 per-tensor activations from a histogram observer). The head (PCA
    projection, cosine logits, softmax, weighted sum) stays float: LiteRT's int8 SOFTMAX needs an output
    scale of 1/256, so a whole-model INT8 .tflite fails to load. The input stays uint8, the score float32.
    """

    per_channel: bool = True
    keep_head_float: bool = True
    calibration_batch: int = 8   # images per calibration forward pass (any batch: calibration is dynamic)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        if not self.keep_head_float:
            raise ConfigError("keep_head_float=False: LiteRT's int8 SOFTMAX requires an output scale of 1/256, "
                              "so a whole-model INT8 .tflite fails to load; the head must stay float")
        if self.calibration_batch < 1:
            raise ConfigError(f"calibration_batch={self.calibration_batch} must be >= 1")


# NNCF quantization presets: "mixed" = u8 asymmetric activations, "performance" = s8 symmetric.
OPENVINO_PRESETS = ("mixed", "performance")
# Activation ranges: "minmax" = min and max over the whole calibration set (ONNX Runtime's MinMax);
# "mean_minmax" = NNCF's default, the mean over images of each image's min and max.
OPENVINO_ACTIVATION_RANGES = ("minmax", "mean_minmax")


@dataclass(frozen=True)
class OpenVINOInt8Config:
    """NNCF post-training INT8 of an OpenVINO IR (what stays float: rali_edge.export.openvino_int8)."""

    preset: str = "mixed"
    keep_head_float: bool = True   # False measured harmful (export.openvino_int8); kept for configs built in code
    keep_stem_float: bool = True
    # SmoothQuant (NNCF's default for transformers). Random-weight measurements disagree: max |score
    # change| 0.039 with it vs 0.009 without on a ViT-B/16 scorer (32 random calibration images, same
    # speed), but 0.002 / 0.08 with it vs 0.015 / 0.46 without on the tiny open_clip / HF CLIP test
    # scorers. NNCF's default is kept; False turns it off.
    smooth_quant: bool = True
    # Both below differ from NNCF's defaults. On the demo's CNN scorer (300 calibration images) NNCF's
    # defaults moved the six sample photos' scores by up to 0.30 (the export check allows 0.1) and one
    # test image's by 1.22, dPLCC -0.015: "mean_minmax" clips the activations only some images reach
    # (the strongest distortions: what a quality scorer must see), and fast bias correction, a shift
    # measured from those clipped statistics, moved single images by more than 1. With "minmax" and
    # the full bias correction: 0.047 on the samples, at most 0.20 on the test set, dPLCC +0.0002
    # (docs/openvino.md, "INT8 on the demo's CNN").
    activation_ranges: str = "minmax"
    fast_bias_correction: bool = False
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _version(self.version)
        if self.preset not in OPENVINO_PRESETS:
            raise ConfigError(f"preset={self.preset!r} is not one of {list(OPENVINO_PRESETS)}")
        if self.activation_ranges not in OPENVINO_ACTIVATION_RANGES:
            raise ConfigError(f"activation_ranges={self.activation_ranges!r} is not one of "
                              f"{list(OPENVINO_ACTIVATION_RANGES)}")


QuantConfig = OnnxInt8Config | TensorRTInt8Config | OnnxFp16Config | CoreMLWeightsConfig | CoreMLW8A8Config
QuantConfig = QuantConfig | ExecuTorchInt8Config
QuantConfig = QuantConfig | LiteRTInt8Config | OpenVINOInt8Config

CONFIG_TYPES: dict[str, type] = {
    "onnx_int8": OnnxInt8Config,
    "tensorrt_int8": TensorRTInt8Config,
    "onnx_fp16": OnnxFp16Config,
    "coreml_weights": CoreMLWeightsConfig,
    "coreml_w8a8": CoreMLW8A8Config,
    "executorch_int8": ExecuTorchInt8Config,
    "litert_int8": LiteRTInt8Config,
    "openvino_int8": OpenVINOInt8Config,
}
_KIND_OF = {cls: kind for kind, cls in CONFIG_TYPES.items()}


def config_to_dict(config: QuantConfig) -> dict[str, Any]:
    kind = _KIND_OF.get(type(config))
    if kind is None:
        raise ConfigError(f"not a quantization config: {type(config).__name__}")
    return {"kind": kind, **dataclasses.asdict(config)}


def config_from_dict(d: dict[str, Any], where: str = "quantization config") -> QuantConfig:
    """Rebuild a config from `config_to_dict` output; unknown kinds, keys, versions or wrong types: ConfigError."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ConfigError(f"{where} must be an object with a 'kind' key")
    kind = d["kind"]
    cls = CONFIG_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"{where}: unknown quantization kind {kind!r} (known: {sorted(CONFIG_TYPES)})")
    body = {k: v for k, v in d.items() if k != "kind"}
    where = f"{where} ({kind})"
    try:  # the version first: a newer file gets "unsupported version", not a confusing key error
        _version(body.get("version", CONFIG_VERSION))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    return config_io.from_dict(cls, body, where)
