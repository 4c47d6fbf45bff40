"""Shared test set-up: skip marked tests whose hardware or runtime is absent, saying why; shared fixtures.

Helpers used by more than one test module live in tests/_helpers.py (not a test module). It is loaded
here by its path, so this works in every pytest import mode, and each helper reaches the tests as a
session fixture of the same name; no test module imports another module from tests/.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Two cores are shared by everything on this machine; keep each test process to them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Never reach for a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _skip_reasons() -> dict[str, str | None]:
    has_cuda = _cuda_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    return {
        "gpu": None if has_cuda else "needs a CUDA GPU (none on this machine)",
        "tensorrt": None
        if (has_cuda and has_trt)
        else "needs TensorRT and a CUDA GPU (TensorRT cannot be installed on this machine)",
        "macos": None if sys.platform == "darwin" else "needs macOS (Core ML prediction runs only there)",
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


# ---------------------------------------------------------------- shared helpers and fixtures


@functools.cache
def _helpers():
    """tests/_helpers.py, loaded once by path (it imports torch: only when a test asks for a helper)."""
    name = "rali_edge_tests_helpers"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_helpers.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_scorer():
    """make_scorer(seed=0, quick_gelu=True, **kw): a tiny folded CLIP scorer (random ViT), in eval mode."""
    return _helpers().make_scorer


@pytest.fixture(scope="session")
def synthetic_pixels():
    """synthetic_pixels(n, image_size=32, seed=0): (uint8 images, quality scores in [1, 5])."""
    return _helpers().synthetic_pixels


@pytest.fixture(scope="session")
def export_onnx():
    """export_onnx(scorer, path, dynamo, image_size=32, with_embedding=False): the scorer as ONNX."""
    return _helpers().export_onnx


@pytest.fixture(scope="session")
def rename_all_nodes():
    """rename_all_nodes(path, out, seed=0): a copy of an ONNX with random node names."""
    return _helpers().rename_all_nodes


@pytest.fixture(scope="session")
def perturbed_copy():
    """perturbed_copy(source, out): a copy of a float ONNX whose basis scores are reversed (a broken artifact)."""
    return _helpers().perturbed_copy


@pytest.fixture(scope="session")
def official_scores():
    """official_scores(feats, pca_mean, pca_scale, comps, protos, proto_scores, logit_scale): numpy reference."""
    return _helpers().official_scores


@pytest.fixture(scope="session")
def sample_rows():
    """sample_rows(): one BenchmarkRow per kind of status, with and without numbers."""
    return _helpers().sample_rows


@pytest.fixture(scope="session")
def scorer_case(tmp_path_factory):
    """(root, bundle, fp32 onnx with embedding, train meta, test meta): shared by the quantize tests."""
    return _helpers().build_scorer_case(tmp_path_factory)


@pytest.fixture(scope="session")
def int8_case(scorer_case):
    """The scorer_case float ONNX quantized INT8 (cpu profile) with a calibration set from train.json."""
    return _helpers().build_int8_case(scorer_case)


@pytest.fixture(scope="session")
def photo_case(tmp_path_factory):
    """(bundle, meta, image folder): a random-weight open_clip scorer and 12 labelled photo crops."""
    return _helpers().build_photo_case(tmp_path_factory)


@pytest.fixture
def hide_packages(monkeypatch):
    """hide_packages("openvino", "nncf"): from then on importlib.util.find_spec finds none of these
    top-level packages nor their submodules, as where an extra is not installed."""
    real = importlib.util.find_spec

    def hide(*packages: str) -> None:
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **kw: None if name.split(".")[0] in packages else real(name, *a, **kw))
    return hide
