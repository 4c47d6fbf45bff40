"""ONNX export: round trip in ONNX Runtime, metadata, opsets, validation and atomicity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from rali_edge import __version__
from rali_edge.bundle import load_bundle
from rali_edge.errors import ValidationFailed
from rali_edge.export import onnx as onnx_backend
from rali_edge.export.api import export_bundle
from rali_edge.export.onnx import model_opset, validate_session
from rali_edge.export.spec import ExportSpec
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner


@pytest.fixture(scope="module")
def open_clip_bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("b") / "oc", library="open_clip", seed=5)


@pytest.fixture(scope="module")
def dynamic_export(open_clip_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return export_bundle(open_clip_bundle, "onnx", with_embedding=True, out_dir=out)


def _pixels(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def test_round_trip_dynamic_batch(dynamic_export, open_clip_bundle):
    res = dynamic_export
    assert res.path.suffix == ".onnx" and res.path.is_file()
    assert res.validation["max_abs_diff_score"] <= 1e-4 and res.validation["n_images"] == 6
    ref = open_runner(open_clip_bundle)
    art = open_runner(res.path)
    for n in (1, 3):
        px = _pixels(n, seed=n)
        got, want = art.run(px), ref.run(px)
        assert got["score"].shape == (n,) and got["embedding"].shape == want["embedding"].shape
        assert np.max(np.abs(got["score"] - want["score"])) <= 1e-4
        assert np.max(np.abs(got["embedding"] - want["embedding"])) <= 1e-4


def test_single_file_opset_and_interface(dynamic_export):
    model = onnx.load(str(dynamic_export.path))
    assert model_opset(model) == 18
    assert [f.name for f in dynamic_export.path.parent.iterdir()] == [dynamic_export.path.name]  # no .data
    assert all(not t.HasField("data_location") or t.data_location == 0 for t in model.graph.initializer)
    (inp,) = model.graph.input
    assert inp.name == "pixels" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 32, 32]
    assert [o.name for o in model.graph.output] == ["score", "embedding"]


def test_metadata_props(dynamic_export, open_clip_bundle):
    props = {p.key: p.value for p in onnx.load(str(dynamic_export.path)).metadata_props}
    bundle = load_bundle(open_clip_bundle)
    pre = bundle.config.preprocess
    assert props["rali_edge.bundle_checksum"] == bundle.checksum
    assert props["rali_edge.version"] == __version__
    assert props["rali_edge.score_range"] == "[1.0, 5.0]"
    assert props["rali_edge.resize"] == str(pre.resize) and props["rali_edge.crop"] == pre.crop
    assert props["rali_edge.interpolation"] == pre.interpolation
    assert props["rali_edge.mean"] == str(list(pre.mean)) and props["rali_edge.std"] == str(list(pre.std))
    assert props["rali_edge.input_dtype"] == "uint8" and props["rali_edge.input_layout"] == "NCHW RGB"
    assert props["rali_edge.batch"] == "null" and props["rali_edge.opset"] == "18"
    meta = open_runner(dynamic_export.path).metadata
    assert meta.image_size == 32 and meta.output_names == ["score", "embedding"]


def test_validation_collects_every_failure(dynamic_export):
    spec = ExportSpec(image_size=32, with_embedding=False)  # wrong outputs on purpose
    px = _pixels(4)
    ref = open_runner(dynamic_export.path).run(px)
    wrong = {"score": ref["score"] + 0.5, "embedding": ref["embedding"]}
    with pytest.raises(ValidationFailed) as err:
        validate_session(dynamic_export.path, spec, px, wrong)
    text = "\n".join(err.value.failures)
    assert len(err.value.failures) >= 2
    assert "outputs are" in text and "exceeds tolerance" in text


@pytest.mark.slow
def test_fixed_batch_opset20_simplified_normalized_input_hf(tmp_path):
    bundle = make_random_bundle(tmp_path / "hf", library="hf", seed=6)
    res = export_bundle(bundle, "onnx", batch=2, opset=20, simplify=True, input_kind="normalized",
                        out_dir=tmp_path / "out")
    model = onnx.load(str(res.path))
    assert model_opset(model) == 20
    inp = model.graph.input[0].type.tensor_type
    assert [d.dim_value for d in inp.shape.dim] == [2, 3, 32, 32] and inp.elem_type == onnx.TensorProto.FLOAT
    assert open_runner(res.path).input_kind == "normalized"  # the runner normalises uint8 itself
    px = _pixels(3, seed=9)  # 3 images through a batch-2 graph: the runner pads the last chunk
    got, want = open_runner(res.path).run(px), open_runner(bundle).run(px)
    assert got["score"].shape == (3,) and np.max(np.abs(got["score"] - want["score"])) <= 1e-4


@pytest.mark.slow
def test_failed_or_interrupted_export_leaves_nothing(open_clip_bundle, tmp_path, monkeypatch):
    real_save = onnx.save_model

    def save_then_crash(model, path, *a, **k):
        real_save(model, path, *a, **k)
        with open(path, "r+b") as f:  # a half-written file, then the crash
            f.truncate(100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(onnx, "save_model", save_then_crash)
    with pytest.raises(OSError, match="simulated"):
        export_bundle(open_clip_bundle, "onnx", out_dir=tmp_path, name="m")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(onnx, "save_model", real_save)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_backend, "validate_session", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(open_clip_bundle, "onnx", out_dir=tmp_path, name="m")
    assert list(tmp_path.iterdir()) == []
