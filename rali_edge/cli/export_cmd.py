"""`rali-edge export`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def export() -> None:
    """Export a bundle to ONNX, ORT mobile, Core ML or TensorRT."""
    not_built_yet("export", "issue 5")
