"""open_runner dispatch, the uint8 input convention, fixed-batch chunking and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from rali_edge.errors import ConfigError
from rali_edge.export.metadata import build_metadata
from rali_edge.export.spec import ExportSpec
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner, runner_class
from rali_edge.runtime.base import Runner


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("b") / "hf", library="hf", seed=12)


def test_dispatch_by_artifact_type(bundle, tmp_path):
    from rali_edge.runtime.coreml_runner import CoreMLRunner
    from rali_edge.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from rali_edge.runtime.tensorrt_runner import TensorRTRunner
    from rali_edge.runtime.torch_runner import TorchRunner

    assert runner_class(bundle) is TorchRunner
    for suffix, cls in {".onnx": OnnxRuntimeRunner, ".ort": OnnxRuntimeRunner,
                        ".mlpackage": CoreMLRunner, ".engine": TensorRTRunner}.items():
        (tmp_path / f"m{suffix}").touch()
        assert runner_class(tmp_path / f"m{suffix}") is cls
    (tmp_path / "m.h5").touch()
    with pytest.raises(ConfigError, match="not a runnable artifact"):
        runner_class(tmp_path / "m.h5")
    with pytest.raises(ConfigError, match="no such"):
        open_runner(tmp_path / "missing.onnx")


def test_torch_runner_matches_scorer(bundle):
    from rali_edge import load_scorer
    from PIL import Image

    runner = open_runner(bundle)
    assert runner.available() == (True, "") and runner.input_kind == "uint8" and runner.image_size == 32
    px = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    out = runner.run(px)
    assert out["score"].shape == (3,) and out["embedding"].shape == (3, 8)
    imgs = [Image.fromarray(p.transpose(1, 2, 0)) for p in px]  # already 32x32: resize is a no-op
    assert np.allclose(out["score"], load_scorer(bundle).score(imgs), atol=1e-5)


def test_input_checks(bundle):
    runner = open_runner(bundle)
    with pytest.raises(ConfigError, match="uint8"):
        runner.run(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"\[B, 3, 32, 32\]"):
        runner.run(np.zeros((1, 3, 16, 16), dtype=np.uint8))


class _Echo(Runner):
    """A fake fixed-batch artifact: checks chunking and input conversion without a model."""

    def __init__(self, batch, kind):
        from rali_edge.bundle import PreprocessConfig

        self.path = "echo"
        spec = ExportSpec(image_size=4, batch=batch, input_kind=kind)
        self.metadata = build_metadata(PreprocessConfig(image_size=4, resize=4), spec, "onnx", "fp32", "x", 18)
        self.batches = []

    @classmethod
    def available(cls):
        return True, ""

    def _run_batch(self, inputs):
        assert self.fixed_batch is None or len(inputs) == self.fixed_batch
        self.batches.append(inputs)
        return {"score": inputs.reshape(len(inputs), -1)[:, 0].astype(np.float64)}


def test_fixed_batch_chunks_and_pads():
    px = np.arange(5, dtype=np.uint8).repeat(48).reshape(5, 3, 4, 4)
    echo = _Echo(batch=2, kind="uint8")
    out = echo.run(px)
    assert [len(b) for b in echo.batches] == [2, 2, 2]
    assert out["score"].tolist() == [0, 1, 2, 3, 4] and out["score"].dtype == np.float32


@pytest.mark.parametrize("kind", ["unit", "normalized"])
def test_input_conversion(kind):
    from rali_edge.bundle import CLIP_MEAN, CLIP_STD

    echo = _Echo(batch=None, kind=kind)
    px = np.full((1, 3, 4, 4), 255, dtype=np.uint8)
    x = echo.convert_input(px)
    assert x.dtype == np.float32
    want = 1.0 if kind == "unit" else (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert abs(float(x[0, 0, 0, 0]) - want) < 1e-6
