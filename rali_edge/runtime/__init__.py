"""Run any rali-edge artifact through one interface: `open_runner(path).run(uint8 pixels)`.

Which runner runs which artifact comes from the format table (`rali_edge.export.formats`, by
suffix); a folder holding `config.json` is a bundle, run in PyTorch. Runner modules import their
runtime (onnxruntime, coremltools, tensorrt) only when opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge.errors import ConfigError

if TYPE_CHECKING:
    from rali_edge.runtime.base import Runner

BUNDLE_RUNNER = "rali_edge.runtime.torch_runner:TorchRunner"


def is_bundle(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def runner_class(path: str | os.PathLike[str]) -> type[Runner]:
    from rali_edge.export.formats import FORMATS, format_for_suffix, load_object

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such artifact or bundle")
    fmt = format_for_suffix(p.suffix)
    if fmt is not None:
        return fmt.runner_class()
    if is_bundle(p):
        return load_object(BUNDLE_RUNNER)
    suffixes = ", ".join(dict.fromkeys(c.suffix for c in FORMATS.values()))
    raise ConfigError(f"{p}: not a runnable artifact (expected a bundle folder or one of {suffixes})")


def open_runner(path: str | os.PathLike[str], **kwargs) -> Runner:
    """A Runner for a bundle folder or any artifact of the format table (chosen by suffix)."""
    return runner_class(path)(path, **kwargs)


__all__ = ["open_runner", "runner_class", "is_bundle"]
