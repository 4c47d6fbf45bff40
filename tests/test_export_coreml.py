"""Core ML: spec checked on Linux (ImageType, size, outputs, precision, metadata); predict on macOS."""

from __future__ import annotations

import numpy as np
import pytest

from rali_edge.bundle import load_bundle
from rali_edge.errors import NotRunnableHere
from rali_edge.export.api import export_bundle
from rali_edge.export.coreml import check_package
from rali_edge.export.spec import ExportSpec
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner
from rali_edge.runtime.coreml_runner import CoreMLRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("b") / "oc", library="open_clip", seed=8)


@pytest.fixture(scope="module")
def fp16_package(bundle, tmp_path_factory):
    return export_bundle(bundle, "coreml", out_dir=tmp_path_factory.mktemp("coreml"))


def test_package_spec_fp16_default(fp16_package, bundle):
    import coremltools as ct

    res = fp16_package
    assert res.path.suffix == ".mlpackage" and res.path.is_dir() and res.precision == "fp16"
    assert res.validation["spec_checked"] and res.validation["compute_precision"] == "fp16"
    proto = ct.models.MLModel(str(res.path), skip_model_load=True).get_spec()
    (inp,) = proto.description.input
    assert inp.name == "pixels" and inp.type.WhichOneof("Type") == "imageType"
    assert (inp.type.imageType.width, inp.type.imageType.height) == (32, 32)
    assert [o.name for o in proto.description.output] == ["score"]
    meta = open_runner(res.path).metadata  # metadata reads on Linux too
    assert meta.bundle_checksum == load_bundle(bundle).checksum and meta.input_kind == "unit"
    assert meta.precision == "fp16" and meta.format == "coreml"


def test_spec_check_catches_a_wrong_expectation(fp16_package):
    from rali_edge.errors import ValidationFailed

    wrong = ExportSpec(image_size=64, input_kind="unit", with_embedding=True)
    with pytest.raises(ValidationFailed) as err:
        check_package(fp16_package.path, wrong, "fp32", {"rali_edge.format": "onnx"})
    assert len(err.value.failures) == 4  # size, outputs, precision, metadata: all collected


def test_fp32_fixed_batch_with_embedding(bundle, tmp_path):
    res = export_bundle(bundle, "coreml", precision="fp32", batch=1, with_embedding=True, out_dir=tmp_path)
    assert res.validation["compute_precision"] == "fp32"
    assert open_runner(res.path).output_names == ["score", "embedding"]


@pytest.mark.skipif(CoreMLRunner.available()[0], reason="checks the behaviour where Core ML cannot predict")
def test_predict_off_macos_says_why(fp16_package):
    runner = open_runner(fp16_package.path)
    ok, reason = runner.available()
    assert not ok and "macOS" in reason
    with pytest.raises(NotRunnableHere, match="macOS"):
        runner.run(np.zeros((1, 3, 32, 32), dtype=np.uint8))


@pytest.mark.macos
def test_predict_matches_pytorch_on_macos(fp16_package, bundle):
    from rali_edge.export.samples import sample_pixels

    px = sample_pixels(load_bundle(bundle).config.preprocess)
    got, want = open_runner(fp16_package.path).run(px), open_runner(bundle).run(px)
    assert got["score"].shape == want["score"].shape
    assert np.max(np.abs(got["score"] - want["score"])) <= 2e-2  # FP16 compute
