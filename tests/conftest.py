"""Shared test set-up: skip marked tests whose hardware or runtime is absent, saying why."""

from __future__ import annotations

import importlib.util
import os
import sys

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
