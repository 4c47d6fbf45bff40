"""What an export backend is handed (`ExportJob`) and what every export returns (`ExportResult`).

Their own module so that `export.api`, the backends and `export.quantized` import them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from rali_edge.export.spec import ExportSpec


@dataclass
class ExportResult:
    path: Path  # the artifact (for tensorrt without TensorRT here: the ONNX to build from)
    format: str
    precision: str
    metadata: dict[str, str]
    validation: dict
    extra_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportJob:
    """Everything a backend needs, prepared once by `export.api`."""

    scorer: object
    preprocess: object
    spec: ExportSpec
    fmt: str
    precision: str
    opset: int | None
    props: dict[str, str]
    simplify: bool
    pixels: np.ndarray     # sample uint8 pixels the artifact is checked on
    reference: dict        # PyTorch float outputs on those pixels
    target: Path

    def folded(self):
        """The whole scorer as one module (preprocessing, encoder, PCA, head) for this job's spec."""
        from rali_edge.export.fold import fold_scorer

        return fold_scorer(self.scorer, self.preprocess, self.spec)


@dataclass
class QuantizeJob:
    """How a quantized artifact is made: the config, its calibration set and an optional drift budget."""

    config: object
    calibration: object | None   # a CalibrationSet, or None for kinds that need none
    drift_budget: float | None = None   # max PLCC drop on the (labelled) calibration set
