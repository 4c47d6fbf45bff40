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
    max_plcc_drop: float | None = None
    failures: list[str] = field(default_factory=list)   # reasons the run should exit non-zero
    paths: dict[str, str] = field(default_factory=dict)  # report files written: kind -> path

    @property
    def exceeded(self) -> list[BenchmarkRow]:
        """Rows that ran here and dropped PLCC by more than max_plcc_drop (any dataset)."""
        if self.max_plcc_drop is None:
            return []
        return [r for r in self.rows if r.ran and plcc_drop(r) > self.max_plcc_drop]

    @property
    def ok(self) -> bool:
        return not self.exceeded and not self.failures

    def to_dict(self) -> dict:
        return {
            "bundle": self.bundle,
            "datasets": self.datasets,
            "environment": self.environment,
            "settings": self.settings,
            "max_plcc_drop": self.max_plcc_drop,
            "exceeded": [f"{r.format} {r.precision}" for r in self.exceeded],
            "failures": self.failures,
            "float_scores": [float(s) for s in self.float_scores],
            "gt_scores": [float(s) if np.isfinite(s) else None for s in self.gt_scores],
            "rows": [r.to_dict() for r in self.rows],
            "status_counts": {s.value: sum(r.status is s for r in self.rows) for s in Status},
        }


def plcc_drop(row: BenchmarkRow) -> float:
    """Largest PLCC drop vs float over this row's datasets (0 when it has none)."""
    drops = [-d["dplcc"] for d in row.drift if d.get("dplcc") is not None]
    if row.dplcc is not None:
        drops.append(-row.dplcc)
    return max(drops, default=0.0)
