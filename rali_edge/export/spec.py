"""The exported interface, described once: names, dtypes, axes, example inputs and tolerance.

Every backend (ONNX, ORT mobile, Core ML, TensorRT) and the validator read this one object, so an
artifact's interface cannot drift between backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rali_edge.errors import UnsupportedOptionError

if TYPE_CHECKING:
    import torch

INPUT_NAME = "pixels"
SCORE = "score"
EMBEDDING = "embedding"
BATCH_AXIS_NAME = "batch"

# What the artifact's input holds. "uint8": RGB pixels 0..255 (the default for apps);
# "unit": float RGB in [0, 1] (what a Core ML ImageType with scale 1/255 hands the graph);
# "normalized": float already scaled and mean/std-normalised (the encoder's own input).
# "uint8_nhwc": uint8 RGB pixels in NHWC, as an Android bitmap buffer hands them (LiteRT's layout).
INPUT_KINDS = {
    "uint8": "uint8 RGB pixels 0..255, layout NCHW [B,3,H,W]",
    "unit": "float32 RGB in [0,1], layout NCHW [B,3,H,W]",
    "normalized": "float32 RGB scaled to [0,1] then (x - mean) / std, layout NCHW [B,3,H,W]",
    "uint8_nhwc": "uint8 RGB pixels 0..255, layout NHWC [B,H,W,3]",
}
INPUT_DTYPES = {"uint8": "uint8", "unit": "float32", "normalized": "float32", "uint8_nhwc": "uint8"}
CHANNELS_LAST = frozenset({"uint8_nhwc"})


@dataclass(frozen=True)
class ExportSpec:
    """The interface of one exported scorer graph."""

    image_size: int
    batch: int | None = None  # None = dynamic batch axis
    input_kind: str = "uint8"
    with_embedding: bool = False
    tolerance: float | None = 1e-4  # max |score difference| vs PyTorch float; None: reported only
    input_name: str = INPUT_NAME

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise UnsupportedOptionError(
                f"input_kind {self.input_kind!r} is not one of {sorted(INPUT_KINDS)}"
            )
        if self.image_size < 1:
            raise UnsupportedOptionError(f"image_size must be positive, got {self.image_size}")
        if self.batch is not None and self.batch < 1:
            raise UnsupportedOptionError(f"batch must be a positive integer or None (dynamic), got {self.batch}")
        if self.tolerance is not None and not self.tolerance > 0:
            raise UnsupportedOptionError(f"tolerance must be positive, got {self.tolerance}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return (SCORE, EMBEDDING) if self.with_embedding else (SCORE,)

    @property
    def dynamic(self) -> bool:
        return self.batch is None

    @property
    def input_dtype(self) -> str:
        return INPUT_DTYPES[self.input_kind]

    def input_shape(self, batch: int | None = None) -> tuple[int | str, int, int, int]:
        """Shape of the input; the batch axis is the string BATCH_AXIS_NAME when dynamic."""
        b = batch if batch is not None else (self.batch if self.batch is not None else BATCH_AXIS_NAME)
        if self.channels_last:
            return (b, self.image_size, self.image_size, 3)
        return (b, 3, self.image_size, self.image_size)

    @property
    def channels_last(self) -> bool:
        return self.input_kind in CHANNELS_LAST

    def output_shapes(self, batch: int | str, embedding_dim: int | None = None) -> dict[str, tuple]:
        shapes: dict[str, tuple] = {SCORE: (batch,)}
        if self.with_embedding:
            shapes[EMBEDDING] = (batch, embedding_dim)
        return shapes

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX-style dynamic axes: the batch axis of every input and output, or none."""
        if not self.dynamic:
            return {}
        return {name: {0: BATCH_AXIS_NAME} for name in (self.input_name, *self.output_names)}

    def example_batch(self) -> int:
        # Tracers specialise a size-1 axis to a constant, so a dynamic batch needs an example >= 2.
        return self.batch if self.batch is not None else 2

    def example_inputs(self, batch: int | None = None, seed: int = 0) -> torch.Tensor:
        """Random inputs of the right dtype and range for tracing and smoke tests."""
        import torch

        b = batch if batch is not None else self.example_batch()
        g = torch.Generator().manual_seed(seed)
        shape = self.input_shape(b)
        if self.input_kind in ("uint8", "uint8_nhwc"):
            return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        if self.input_kind == "unit":
            return torch.rand(shape, generator=g)
        return torch.randn(shape, generator=g)

    def to_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "batch": self.batch,
            "input_kind": self.input_kind,
            "with_embedding": self.with_embedding,
            "tolerance": self.tolerance,
            "input_name": self.input_name,
            "output_names": list(self.output_names),
        }
