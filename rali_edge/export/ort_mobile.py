"""ONNX Runtime Mobile: convert a validated .onnx into the `.ort` flatbuffer format.

Uses the same mechanism as `onnxruntime.tools.convert_onnx_models_to_ort` (its "fixed" style):
a CPU session with BASIC graph optimisations only, saved in ORT format. Basic optimisations are
hardware-independent, so the file runs on any device's ORT Mobile build; metadata_props survive.
"""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_path
from rali_edge.errors import ExportError


def convert_to_ort(onnx_path: str | Path, ort_path: str | Path) -> Path:
    import onnxruntime as ort

    with atomic_path(ort_path) as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(tmp)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's Fail/InvalidGraph types; name the file
            raise ExportError(f"{onnx_path}: conversion to the ORT format failed: {exc}") from exc
        if not tmp.is_file() or tmp.read_bytes()[4:8] != b"ORTM":
            raise ExportError(f"{onnx_path}: ONNX Runtime did not write an ORT-format model")
    return Path(ort_path)
