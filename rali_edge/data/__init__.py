"""Data layer: the one safe image loader, meta readers and the synthetic IQA dataset.

Kept light on purpose: names are imported from their submodules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Explicit table of public names -> submodule (no guessing).
_EXPORTS = {
    "DEFAULT_MAX_PIXELS": "images",
    "BadImage": "images",
    "load_image": "images",
    "load_images": "images",
    "to_rgb": "images",
    "Record": "meta",
    "read_meta": "meta",
    "read_metas": "meta",
    "read_image_folder": "meta",
    "check_images_exist": "meta",
    "SynthDataset": "synth",
    "synthesize": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rali_edge.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rali_edge.data.{module}"), name)
