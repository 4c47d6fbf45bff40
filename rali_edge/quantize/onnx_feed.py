"""The calibration set as ONNX Runtime's static calibrator reads it: the model's image input (name, element
type, fixed batch), the pixels converted to its input kind and cut into batches, and the data reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet

_ONNX_FLOAT = 1
_ONNX_UINT8 = 2


def model_input(model) -> tuple[str, int, int | None]:
    """(name, ONNX element type, fixed batch or None) of the model's single image input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ConfigError(f"expected one image input, found {[i.name for i in inputs]}")
    t = inputs[0].type.tensor_type
    dim0 = t.shape.dim[0] if t.shape.dim else None
    batch = dim0.dim_value if dim0 is not None and dim0.HasField("dim_value") else None
    return inputs[0].name, t.elem_type, batch


def input_kind_of(model, elem_type: int) -> str:
    """"uint8", "unit" or "normalized", from the exporter's metadata (float input without it is ambiguous)."""
    if elem_type == _ONNX_UINT8:
        return "uint8"
    if elem_type != _ONNX_FLOAT:
        raise ConfigError(f"unsupported image input element type {elem_type} (uint8 or float32 expected)")
    kind = {p.key: p.value for p in model.metadata_props}.get("rali_edge.input_kind")
    if kind not in ("unit", "normalized"):
        raise ConfigError("the model takes float input but its metadata does not say whether it is 'unit' "
                          "([0, 1]) or 'normalized' (mean/std applied); export it with rali_edge.export")
    return kind


def equal_batch_size(count: int, batch: int) -> int:
    """The largest size <= `batch` that cuts `count` images into equal batches (13 images, 8 -> 1)."""
    return next(b for b in range(min(batch, count), 0, -1) if count % b == 0) if count else batch


def feed_batches(calibration: CalibrationSet, input_kind: str, batch: int, fixed: bool,
                 equal: bool = False) -> list[np.ndarray]:
    """Calibration pixels converted to the model's input kind, cut in batches of the model's batch.

    A fixed-batch model only gets full batches. With `equal` (histogram calibrators), a dynamic-batch
    model gets batches all of one size, smaller than `batch` when needed so that no image is dropped.
    """
    pixels = calibration.pixels
    if input_kind in ("unit", "normalized"):
        pixels = pixels.astype(np.float32) / np.float32(255.0)
    if input_kind == "normalized":
        pre = calibration.provenance.get("preprocess")
        if not pre:
            raise ConfigError("the model takes normalised input but the calibration set has no preprocess")
        pixels = (pixels - np.asarray(pre["mean"], np.float32).reshape(1, 3, 1, 1)) / np.asarray(
            pre["std"], np.float32).reshape(1, 3, 1, 1)
    if equal and not fixed:
        batch = equal_batch_size(len(pixels), batch)
    chunks = [pixels[i:i + batch] for i in range(0, len(pixels), batch)]
    if fixed:
        chunks = [c for c in chunks if len(c) == batch]
        if not chunks:
            raise ConfigError(f"the model has a fixed batch of {batch} but only {len(pixels)} calibration images")
    return chunks


class CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over prepared batches, with a progress bar."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        from tqdm.auto import tqdm

        self._it = iter(batches)
        self._name = name
        self._bar = tqdm(total=len(batches), desc="calibrating", unit="batch", leave=False)

    def get_next(self):
        batch = next(self._it, None)
        if batch is None:
            self._bar.close()
            return None
        self._bar.update(1)
        return {self._name: batch}

    def rewind(self) -> None:  # ORT >= 1.17 may call this; one pass is all we need
        return None
