"""Quantization configs validate themselves, round-trip through JSON, and dispatch by type."""

from __future__ import annotations

import numpy as np
import pytest

from rali_edge.errors import ConfigError
from rali_edge.quantize import (
    CoreMLW8A8Config,
    CoreMLWeightsConfig,
    OnnxFp16Config,
    OnnxInt8Config,
    TensorRTInt8Config,
    config_from_dict,
    config_to_dict,
    quantize,
)


@pytest.mark.parametrize(
    "make",
    [
        lambda: OnnxInt8Config(profile="gpu"),
        lambda: OnnxInt8Config(method="kl"),
        lambda: OnnxInt8Config(percentile=50.0),
        lambda: OnnxInt8Config(op_types=()),
        lambda: OnnxInt8Config(calibration_batch=0),
        lambda: OnnxInt8Config(version=99),
        lambda: TensorRTInt8Config(quantizer="tensorrt-implicit"),
        lambda: CoreMLWeightsConfig(nbits=4),
        lambda: CoreMLWeightsConfig(granularity="per_block"),
        lambda: CoreMLWeightsConfig(weight_threshold=-1),
        lambda: OnnxFp16Config(version=0),
    ],
)
def test_invalid_configs_raise(make):
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize(
    "config",
    [OnnxInt8Config(profile="tensorrt", method="percentile", extra_float_nodes=("a", "b")), TensorRTInt8Config(),
     OnnxFp16Config(keep_softmax_fp32=False), CoreMLWeightsConfig(), CoreMLW8A8Config()],
)
def test_configs_round_trip_through_json(config):
    import json

    d = json.loads(json.dumps(config_to_dict(config)))
    assert d["version"] == 1
    assert config_from_dict(d) == config


def test_config_from_dict_rejects_unknown_kind_keys_and_versions():
    with pytest.raises(ConfigError, match="unknown quantization kind"):
        config_from_dict({"kind": "onnx_int4"})
    with pytest.raises(ConfigError, match="unknown keys"):
        config_from_dict({"kind": "onnx_int8", "profil": "cpu"})
    with pytest.raises(ConfigError, match="version"):
        config_from_dict({"kind": "onnx_fp16", "version": 2})
    with pytest.raises(ConfigError):
        config_from_dict({"profile": "cpu"})


def _identity_onnx(path):
    """A valid (trivial) ONNX model: the checks below must fire on their own, not on a corrupt file."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_quantize_dispatches_on_type_and_checks_inputs(tmp_path):
    src = _identity_onnx(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="not a quantization config"):
        quantize({"kind": "onnx_int8"}, src, tmp_path / "q.onnx")
    with pytest.raises(ConfigError, match="no such artifact"):
        quantize(OnnxInt8Config(), tmp_path / "missing.onnx", tmp_path / "q.onnx")
    with pytest.raises(ConfigError, match="needs a calibration set"):
        quantize(OnnxInt8Config(), src, tmp_path / "q.onnx", calibration=None)
    with pytest.raises(ConfigError, match="must differ"):
        quantize(OnnxFp16Config(), src, src)


def test_from_pixels_checks_dtype_and_shape():
    from rali_edge.calibration import from_pixels

    with pytest.raises(ConfigError):
        from_pixels(np.zeros((2, 3, 8, 8), np.float32), "x")
    with pytest.raises(ConfigError):
        from_pixels(np.zeros((2, 8, 8), np.uint8), "x")
    assert len(from_pixels(np.zeros((2, 3, 8, 8), np.uint8), "x")) == 2


def test_quantize_rejects_a_corrupt_or_wrong_kind_source(tmp_path):
    from rali_edge.errors import InputFileError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(InputFileError, match="not a readable ONNX model"):
        quantize(OnnxFp16Config(), bad, tmp_path / "q.onnx")
    with pytest.raises(InputFileError, match="quantizes .onnx artifacts"):
        quantize(OnnxFp16Config(), _identity_onnx(tmp_path / "m.ort"), tmp_path / "q.onnx")
