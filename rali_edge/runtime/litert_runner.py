"""Run `.tflite` artifacts in LiteRT's own interpreter (ai-edge-litert, XNNPACK on the CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rali_edge.errors import ExportError
from rali_edge.export.metadata import read_metadata
from rali_edge.runtime.base import Runner

EXTRA = "pip install 'rali-edge[litert]'"


class LiteRTRunner(Runner):
    """Feeds the default signature by its input name; outputs come back by the metadata's names.

    A fixed-batch artifact is fed exactly its batch (the base class chunks and pads); one whose
    batch axis is dynamic (-1 in its shape signature) is resized only when the batch changes.
    """

    takes_threads = True

    def __init__(self, path: str | Path, threads: int | None = None):
        self._open(path, threads)
        from rali_edge.export.litert_metadata import read_props

        self.metadata = read_metadata(read_props(self.path), str(self.path))
        self.interpreter = _load(self.path, threads)
        self._input, self._outputs = self._indices()
        self._shape: tuple[int, ...] | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("ai_edge_litert") is None:
            return False, f"ai-edge-litert is not installed ({EXTRA})"
        return True, ""

    def signature_details(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """(inputs, outputs) of the default signature: name -> LiteRT's tensor details."""
        # A kept SignatureRunner holds a reference that makes allocate_tensors() refuse to run.
        signature = self.interpreter.get_signature_runner()
        return signature.get_input_details(), signature.get_output_details()

    def _indices(self) -> tuple[int, dict[str, int]]:
        """Tensor indices of the metadata's input and outputs in the default signature."""
        inputs, outputs = self.signature_details()
        missing = [n for n in (self.metadata.input_name, *self.metadata.output_names) if n not in {**inputs, **outputs}]
        if missing:
            raise ExportError(f"{self.path}: its signature has no tensor named {', '.join(missing)} "
                              f"(inputs {list(inputs)}, outputs {list(outputs)})")
        return inputs[self.metadata.input_name]["index"], {n: outputs[n]["index"] for n in self.metadata.output_names}

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        it = self.interpreter
        if inputs.shape != self._shape:   # first call, or a new batch on a dynamic-batch artifact
            it.resize_tensor_input(self._input, list(inputs.shape))
            it.allocate_tensors()
            self._shape = inputs.shape
        it.set_tensor(self._input, inputs)
        it.invoke()
        return {name: it.get_tensor(index) for name, index in self._outputs.items()}


def _load(path: Path, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_path=str(path), num_threads=threads)
    except (ValueError, RuntimeError) as exc:   # LiteRT reports a bad model as either
        raise ExportError(f"{path}: LiteRT cannot load it ({exc})") from exc
