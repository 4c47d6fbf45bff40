"""What one `rali-edge benchmark` run produced: the rows, the float reference and the machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rali_edge.report.table import BenchmarkRow, Status


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

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def not_runnable(self) -> list[BenchmarkRow]:
        """Rows whose runtime is absent here: listed, never failures."""
        return [r for r in self.rows if r.status is Status.NOT_RUNNABLE]

    def to_dict(self) -> dict:
        return {
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
        }

