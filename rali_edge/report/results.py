"""What one `rali-edge benchmark` run produced: the rows, the float reference, the per-artifact
analysis (slices, worst images) and the machine. `to_dict()` is report.json (docs/report_schema.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP
from rali_edge.report.table import BenchmarkRow, Status

if TYPE_CHECKING:
    from rali_edge.report.analysis import Analysis
    from rali_edge.report.images import ImageTable

# report.json's schema version (docs/report_schema.md): 2 added intervals, ranking, slices, worst images.
SCHEMA_VERSION = 2


@dataclass
class BenchmarkReport:
    rows: list[BenchmarkRow]
    bundle: str
    datasets: dict[str, int]                  # dataset name -> number of scored images
    float_scores: np.ndarray                  # PyTorch float scores, every dataset concatenated
    gt_scores: np.ndarray                     # ground truth aligned with float_scores
    environment: dict
    settings: dict                            # formats, batch, repeats, calibration, thresholds
    budget: dict = field(default_factory=dict)          # DriftBudget.to_dict(): max PLCC / SRCC drops
    failures: list[str] = field(default_factory=list)   # why the run exits 1: failed exports, runs, breaches
    paths: dict[str, str] = field(default_factory=dict)  # report files written: kind -> path
    images: ImageTable | None = None           # the images behind float_scores (paths, datasets, meta fields)
    analysis: Analysis | None = None           # per artifact: drift per slice, worst images

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def not_runnable(self) -> list[BenchmarkRow]:
        """Rows whose runtime is absent here: listed, never failures."""
        return [r for r in self.rows if r.status is Status.NOT_RUNNABLE]

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "benchmark",
            "bundle": self.bundle,
            "datasets": self.datasets,
            "environment": self.environment,
            "settings": self.settings,
            "budget": self.budget,
            "passed": self.ok,
            "failures": self.failures,
            "float_scores": [float(s) for s in self.float_scores],
            "gt_scores": [float(s) if np.isfinite(s) else None for s in self.gt_scores],
            "rows": [r.to_dict() for r in self.rows],
            "status_counts": {s.value: sum(r.status is s for r in self.rows) for s in Status},
            "images": None if self.images is None else self.images.to_dict(),
            "bootstrap": DEFAULT_BOOTSTRAP.to_dict(),   # how every interval in the drift rows was drawn
            "analysis": None if self.analysis is None else self.analysis.to_dict(),
        }

