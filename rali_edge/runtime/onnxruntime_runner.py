"""Run `.onnx` and `.ort` artifacts with ONNX Runtime on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rali_edge.errors import ExportError
from rali_edge.export.metadata import read_metadata
from rali_edge.runtime.base import Runner


class OnnxRuntimeRunner(Runner):
    takes_threads = True

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; name the file
            raise ExportError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = read_metadata(props, str(self.path))
        self._outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed"
        return True, ""

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self._outputs, {self.metadata.input_name: inputs})
        return dict(zip(self._outputs, values))
