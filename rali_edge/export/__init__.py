"""Export a bundle to ONNX, ORT mobile, Core ML or TensorRT (heavy imports happen on use).

    from rali_edge.export import export_bundle
    result = export_bundle("bundle/", "onnx")           # validated, atomic
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rali_edge.export.formats import FORMATS, FormatCaps
from rali_edge.export.job import ExportResult
from rali_edge.export.spec import ExportSpec

if TYPE_CHECKING:
    from rali_edge.export.api import export_bundle

__all__ = ["export_bundle", "ExportResult", "ExportSpec", "FORMATS", "FormatCaps"]


def __getattr__(name: str):
    if name == "export_bundle":
        from rali_edge.export import api

        return getattr(api, name)
    raise AttributeError(f"module 'rali_edge.export' has no attribute {name!r}")
