"""Quantization of exported scorers (light: onnx/onnxruntime/coremltools load inside the functions)."""

from rali_edge.quantize.api import QuantizeResult, quant_json_path, quantize
from rali_edge.quantize.config import (
    CoreMLW8A8Config,
    CoreMLWeightsConfig,
    OnnxFp16Config,
    OnnxInt8Config,
    TensorRTInt8Config,
    config_from_dict,
    config_to_dict,
)

__all__ = [
    "quantize", "QuantizeResult", "quant_json_path", "OnnxInt8Config", "TensorRTInt8Config", "OnnxFp16Config",
    "CoreMLWeightsConfig", "CoreMLW8A8Config", "config_from_dict", "config_to_dict",
]
