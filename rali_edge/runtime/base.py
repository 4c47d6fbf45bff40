"""The one interface to run any artifact: `Runner.run(uint8 pixels) -> {"score", "embedding"?}`.

Every runner takes uint8 RGB pixels [B, 3, H, W] at the artifact's image size (already resized
and cropped as its metadata says) and converts them to the artifact's own input kind, so callers
(validate, benchmark, demo) never care what the graph expects. Fixed-batch artifacts are fed in
chunks of their batch size (the last chunk padded, the padding dropped from the outputs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError, NotRunnableHere

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig
    from rali_edge.export.metadata import ArtifactMetadata


class Runner(ABC):
    """Runs one artifact. Subclasses set `metadata` in __init__ and implement `_run_batch`."""

    path: Path
    metadata: ArtifactMetadata
    takes_threads: bool = False   # the constructor accepts threads= (intra-op threads of the runtime)

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when this runtime can execute here, else (False, why not)."""

    @abstractmethod
    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch already converted to the artifact's input kind and batch size."""

    # ---------------------------------------------------------------- derived from the metadata

    @property
    def input_kind(self) -> str:
        return self.metadata.input_kind

    @property
    def image_size(self) -> int:
        return self.metadata.image_size

    @property
    def output_names(self) -> list[str]:
        return list(self.metadata.output_names)

    @property
    def fixed_batch(self) -> int | None:
        return self.metadata.batch

    def preprocess_config(self) -> PreprocessConfig:
        """How images must be resized and cropped for this artifact (from its metadata)."""
        from rali_edge.bundle import PreprocessConfig

        m = self.metadata
        return PreprocessConfig(image_size=m.image_size, resize=m.resize, crop=m.crop, interpolation=m.interpolation,
                                mean=tuple(m.mean), std=tuple(m.std))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path})"

    # ---------------------------------------------------------------- running

    def require_available(self) -> None:
        """NotRunnableHere, naming the artifact and the reason, when this runtime cannot run here."""
        ok, why = self.available()
        if not ok:
            raise NotRunnableHere(f"{self.path}: cannot run here: {why}")

    def _open(self, path: str | Path, threads: int | None) -> None:
        """What every runner's __init__ starts with: the path, the runtime's presence (before it is
        imported: the error names the missing extra) and the thread count."""
        self.path = Path(path)
        self.require_available()
        if threads is not None and threads < 1:
            raise ConfigError(f"threads={threads} must be >= 1")
        self.threads = threads

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 RGB [B, 3, H, W] -> {"score": float [B], "embedding": float [B, M] when present}."""
        self.require_available()
        pixels = self._check_pixels(pixels)
        inputs = self.convert_input(pixels)
        batch = self.fixed_batch
        if batch is None:
            return self._as_float(self._run_batch(inputs))
        chunks = []
        for start in range(0, len(inputs), batch):
            part = inputs[start : start + batch]
            n = len(part)
            if n < batch:  # pad by repeating the last image; dropped below
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            out = self._run_batch(part)
            chunks.append({k: v[:n] for k, v in out.items()})
        return self._as_float({k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]})

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        s = self.image_size
        if pixels.dtype != np.uint8:
            raise ConfigError(f"{self.path}: expected uint8 pixels, got {pixels.dtype}")
        if pixels.ndim != 4 or pixels.shape[1:] != (3, s, s) or len(pixels) == 0:
            raise ConfigError(
                f"{self.path}: expected pixels of shape [B, 3, {s}, {s}] (B >= 1), got {list(pixels.shape)}"
            )
        return np.ascontiguousarray(pixels)

    def convert_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels -> what the artifact's input expects (see export.spec.INPUT_KINDS)."""
        if self.input_kind == "uint8":
            return pixels
        if self.input_kind == "uint8_nhwc":
            return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
        unit = pixels.astype(np.float32) / np.float32(255.0)
        if self.input_kind == "unit":
            return unit
        mean = np.asarray(self.metadata.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.metadata.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return (unit - mean) / std

    @staticmethod
    def _as_float(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
