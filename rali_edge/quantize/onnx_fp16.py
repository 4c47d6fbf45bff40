"""ONNX FP16: weights and compute in float16, inputs/outputs unchanged, fragile ops optionally in FP32.

Uses onnxruntime.transformers.float16 (shipped with onnxruntime; onnxconverter_common is not needed).
LayerNormalization after attention can overflow in FP16 (REFERENCE 6), and Softmax over FP16 logits
loses precision, so both are kept in FP32 by default through `op_block_list`. The converter appends the
Casts it puts around those blocked ops at the end of the node list, so the graph is sorted again
(_graph.topological_sort) and checked with onnx.checker (full check) before it is written. The uint8 image input and
its Cast stay as they are (keep_io_types), so the artifact takes the same pixels as the FP32 export.
"""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.quantize._graph import topological_sort
from rali_edge.errors import ExportError
from rali_edge.quantize.config import OnnxFp16Config

# The converter's own default block list (ops without FP16 kernels in ORT) plus ours.
_ALWAYS_FP32 = ("ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
                "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
                "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor", "Scaler",
                "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap", "NonMaxSuppression", "TopK",
                "RoiAlign", "Resize", "Range", "CumSum", "Min", "Max", "Upsample")


def block_list(config: OnnxFp16Config) -> list[str]:
    ops = list(_ALWAYS_FP32)
    if config.keep_layernorm_fp32:
        ops.append("LayerNormalization")
    if config.keep_softmax_fp32:
        ops.append("Softmax")
    return ops


def _drop_initializer_value_info(graph) -> None:
    """The converter declares some initializers FP16 in value_info while keeping them FP32 (those only a
    blocked op reads), which strict shape inference rejects; value_info for an initializer is redundant."""
    inits = {t.name for t in graph.initializer}
    keep = [v for v in graph.value_info if v.name not in inits]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def convert_onnx_fp16(config: OnnxFp16Config, source: Path, out: Path) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    blocked = block_list(config)
    try:
        half = convert_float_to_float16(model, keep_io_types=config.keep_io_types, op_block_list=blocked)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare exceptions; re-raised with context
        raise ExportError(f"{source}: FP16 conversion failed ({type(exc).__name__}: {exc})") from exc
    topological_sort(half.graph)
    _drop_initializer_value_info(half.graph)
    try:
        onnx.checker.check_model(half, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{source}: the FP16 graph is not valid ONNX ({exc})") from exc
    with atomic_path(out) as tmp:
        onnx.save_model(half, str(tmp))
    kept = sorted({n.op_type for n in model.graph.node} & set(blocked))
    return {"kept_fp32_ops": kept, "keep_io_types": config.keep_io_types}
