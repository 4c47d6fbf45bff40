"""Run `.mlpackage` artifacts with coremltools. Prediction needs macOS; metadata reads anywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from rali_edge.export.metadata import read_metadata
from rali_edge.runtime.base import Runner


class CoreMLRunner(Runner):
    def __init__(self, path: str | Path, compute_units: str = "ALL"):
        import coremltools as ct

        self.path = Path(path)
        runnable, _ = self.available()
        # Off macOS the model cannot be loaded for prediction, but its spec and metadata can be read.
        self.model = ct.models.MLModel(
            str(self.path), skip_model_load=not runnable, compute_units=ct.ComputeUnit[compute_units]
        )
        self.metadata = read_metadata(dict(self.model.user_defined_metadata), str(self.path))

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("coremltools") is None:
            return False, "coremltools is not installed"
        if sys.platform != "darwin":
            return False, f"Core ML prediction needs macOS (this is {sys.platform})"
        return True, ""

    @property
    def fixed_batch(self) -> int | None:
        return None  # predictions go one image at a time (see _run_batch)

    def convert_input(self, pixels: np.ndarray) -> np.ndarray:
        # The ImageType input takes 8-bit RGB images and applies the 1/255 scale itself.
        return pixels

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        from PIL import Image

        outs: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for img in inputs:  # an ImageType input takes one PIL image per prediction
            pred = self.model.predict({self.metadata.input_name: Image.fromarray(img.transpose(1, 2, 0), "RGB")})
            for name in outs:
                outs[name].append(np.asarray(pred[name]).reshape(1, -1))
        result = {name: np.concatenate(v) for name, v in outs.items()}
        if "score" in result:
            result["score"] = result["score"].reshape(-1)
        return result
