"""Run any rali-edge artifact through one interface: `open_runner(path).run(uint8 pixels)`.

Runner modules import their runtime (onnxruntime, coremltools, tensorrt) only when opened.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge.errors import ConfigError

if TYPE_CHECKING:
    from rali_edge.runtime.base import Runner

# Artifact suffix -> (module, class). A folder without one of these suffixes is a bundle.
RUNNERS: dict[str, tuple[str, str]] = {
    ".onnx": ("rali_edge.runtime.onnxruntime_runner", "OnnxRuntimeRunner"),
    ".ort": ("rali_edge.runtime.onnxruntime_runner", "OnnxRuntimeRunner"),
    ".mlpackage": ("rali_edge.runtime.coreml_runner", "CoreMLRunner"),
    ".engine": ("rali_edge.runtime.tensorrt_runner", "TensorRTRunner"),
}
BUNDLE_RUNNER = ("rali_edge.runtime.torch_runner", "TorchRunner")


def runner_class(path: str | os.PathLike[str]) -> type[Runner]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such artifact or bundle")
    if p.suffix in RUNNERS:
        module, name = RUNNERS[p.suffix]
    elif p.is_dir() and (p / "config.json").is_file():
        module, name = BUNDLE_RUNNER
    else:
        raise ConfigError(
            f"{p}: not a runnable artifact (expected a bundle folder or one of {', '.join(RUNNERS)})"
        )
    return getattr(importlib.import_module(module), name)


def open_runner(path: str | os.PathLike[str], **kwargs) -> Runner:
    """A Runner for a bundle folder, .onnx, .ort, .mlpackage or .engine (chosen by artifact type)."""
    return runner_class(path)(path, **kwargs)


__all__ = ["open_runner", "runner_class", "RUNNERS"]
