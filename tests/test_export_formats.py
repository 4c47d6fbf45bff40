"""Capability table, spec, metadata, TensorRT header and trtexec line: no export needed."""

from __future__ import annotations

import json
import struct

import pytest

from rali_edge.bundle import PreprocessConfig
from rali_edge.errors import ExportError, UnsupportedOptionError
from rali_edge.export import formats
from rali_edge.export.api import export_bundle
from rali_edge.export.metadata import PREFIX, build_metadata, read_metadata
from rali_edge.export.spec import ExportSpec
from rali_edge.export.tensorrt import read_engine_file, trtexec_command, write_engine_file


@pytest.mark.parametrize(
    "fmt, kwargs, words",
    [
        ("tflite", {}, "unknown export format"),
        ("onnx", {"opset": 17}, "below 18"),
        ("onnx", {"opset": 22}, "18..21"),
        ("tensorrt", {"opset": 21}, "18..20"),
        ("coreml", {"opset": 18}, "no ONNX opset"),
        ("onnx", {"precision": "fp8"}, "unknown precision"),
        ("ort", {"precision": "fp16"}, "does not offer precision"),
        ("coreml", {"batch": 4}, "at most 1"),
        ("onnx", {"batch": 0}, "positive"),
        ("coreml", {"simplify": True}, "simplification"),
        ("coreml", {"input_kind": "uint8"}, "input_kind"),
        ("onnx", {"precision": "bf16"}, "does not offer precision"),   # bf16 inference: openvino only
        ("openvino", {"opset": 18}, "no ONNX opset"),
        ("openvino", {"input_kind": "uint8_nhwc"}, "input_kind"),
    ],
)
def test_rejected_combinations_name_the_problem(fmt, kwargs, words):
    kind = "unit" if fmt == "coreml" else "uint8"
    kw = {"precision": "fp32", "batch": None, "opset": None, "input_kind": kind, **kwargs}
    with pytest.raises(UnsupportedOptionError, match=words):
        formats.check_options(fmt, **kw)


def test_accepted_combinations_keep_the_request():
    assert formats.check_options("onnx", "fp32", None, None) == 18
    assert formats.check_options("onnx", "fp32", 4, 20) == 20
    assert formats.check_options("coreml", "fp16", 1, None, input_kind="unit") is None
    assert formats.check_options("tensorrt", "fp16", None, 20) == 20
    assert formats.check_options("openvino", "bf16", None, None) is None


# ids avoid marker names: conftest skips items whose keywords contain "tensorrt"
@pytest.mark.parametrize("fmt", ["onnx", "ort", "tensorrt"], ids=["onnx", "ort", "trt"])
def test_int8_without_calibration_says_what_to_do(tmp_path, fmt):
    # rejected before the bundle is even read: the folder does not need to exist
    with pytest.raises(UnsupportedOptionError, match="calibration") as err:
        export_bundle(tmp_path / "missing", fmt, precision="int8")
    assert "rali-edge quantize" in str(err.value)


def test_every_table_entry_resolves_to_code():
    """Each FormatCaps names a backend with both entry points, a Runner, its quantize configs and a
    tolerance for every precision; suffixes are unique so the runner lookup is unambiguous."""
    from rali_edge.runtime.base import Runner

    suffixes = [c.suffix for c in formats.FORMATS.values()]
    assert len(set(suffixes)) == len(suffixes)
    for name, c in formats.FORMATS.items():
        assert c.name == name
        assert callable(formats.load_object(c.backend + ":export_float"))
        assert callable(formats.load_object(c.backend + ":export_quantized"))
        assert issubclass(c.runner_class(), Runner)
        ok, why = c.runnable_here()
        assert ok or why  # a format that cannot run here says why
        assert set(c.precisions) <= set(c.tolerance)
        assert c.default_input_kind in c.input_kinds
        for kind in c.quant_kinds:
            assert kind.precision in c.precisions
            assert kind.make_config() is not None
        for v in c.variants:
            assert v.precision in c.precisions
            if c.is_quantized(v.precision):
                c.quant_kind_for(v.precision, v.quant_kind)
        if c.float_source is not None:
            assert c.float_source[0] in formats.FORMATS


def test_runner_lookup_comes_from_the_table(tmp_path):
    from rali_edge.runtime import runner_class

    for c in formats.FORMATS.values():
        artifact = tmp_path / f"model{c.suffix}"
        artifact.write_bytes(b"")
        if c.suffix != ".onnx" or c.name == "onnx":   # .onnx belongs to the onnx entry (listed first)
            assert runner_class(artifact) is c.runner_class()


def test_quantize_kinds_do_not_import_the_export_modules():
    """The table is read without importing api/quantized (no cycle between them)."""
    import subprocess
    import sys

    code = ("import sys; import rali_edge.export.formats as f; f.all_quant_kinds(); f.all_variants(); "
            "assert 'rali_edge.export.api' not in sys.modules and 'rali_edge.export.quantized' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_interface():
    spec = ExportSpec(image_size=32, with_embedding=True)
    assert spec.output_names == ("score", "embedding") and spec.dynamic
    assert spec.dynamic_axes() == {"pixels": {0: "batch"}, "score": {0: "batch"}, "embedding": {0: "batch"}}
    x = spec.example_inputs()
    assert x.shape == (2, 3, 32, 32) and str(x.dtype) == "torch.uint8"
    fixed = ExportSpec(image_size=32, batch=3, input_kind="unit")
    assert fixed.dynamic_axes() == {} and fixed.example_inputs().shape[0] == 3
    assert fixed.input_dtype == "float32" and fixed.output_names == ("score",)
    with pytest.raises(UnsupportedOptionError):
        ExportSpec(image_size=32, input_kind="bgr")


def test_metadata_round_trip_and_missing_keys():
    pre = PreprocessConfig(image_size=32, resize=36, interpolation="bilinear")
    spec = ExportSpec(image_size=32, batch=None)
    meta = build_metadata(pre, spec, "onnx", "fp32", "abc123", 18)
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    back = read_metadata(props, "x.onnx")
    assert back == meta
    assert back.resize == 36 and back.interpolation == "bilinear" and back.score_range == [1.0, 5.0]
    assert back.batch is None and back.mean == list(pre.mean)
    del props[PREFIX + "bundle_checksum"]
    with pytest.raises(ExportError, match="bundle_checksum"):
        read_metadata(props, "x.onnx")


def test_engine_header_round_trip(tmp_path):
    meta = {"rali_edge.format": "tensorrt", "rali_edge.batch": "null"}
    path = write_engine_file(tmp_path / "m.engine", b"\x00engine-bytes", meta)
    raw = path.read_bytes()
    (n,) = struct.unpack("<I", raw[:4])
    assert json.loads(raw[4 : 4 + n]) == meta  # ultralytics-compatible layout
    assert read_engine_file(path) == (meta, b"\x00engine-bytes")
    (tmp_path / "plain.engine").write_bytes(b"\xff\xff\xff\x7fnot a header")
    with pytest.raises(ExportError, match="no rali-edge metadata header"):
        read_engine_file(tmp_path / "plain.engine")


def test_trtexec_lines():
    dyn = trtexec_command("m.onnx", "m.engine", ExportSpec(image_size=32), "fp32", "m.cache", max_batch=8)
    assert dyn[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine"]
    assert "--stronglyTyped" in dyn and "--fp16" not in dyn and "--noTF32" in dyn
    assert "--minShapes=pixels:1x3x32x32" in dyn and "--maxShapes=pixels:8x3x32x32" in dyn
    assert "--optShapes=pixels:4x3x32x32" in dyn and "--timingCacheFile=m.cache" in dyn
    fp16 = trtexec_command("m.onnx", "m.engine", ExportSpec(image_size=32, batch=2), "fp16", "m.cache")
    assert "--fp16" in fp16 and "--stronglyTyped" not in fp16 and "--noTF32" not in fp16
    assert {"--minShapes=pixels:2x3x32x32", "--optShapes=pixels:2x3x32x32", "--maxShapes=pixels:2x3x32x32"} <= set(fp16)
