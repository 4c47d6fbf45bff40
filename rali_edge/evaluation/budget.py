"""The one drift budget check: which rows break a release gate, as sentences."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rali_edge.errors import ConfigError
from rali_edge.report.drift import FAILED, GATED, DriftRow


@dataclass(frozen=True)
class DriftBudget:
    """Max PLCC / SRCC drop against the float model (None: not gated on that metric)."""

    max_plcc_drop: float | None = None
    max_srcc_drop: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_plcc_drop", "max_srcc_drop"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not (value >= 0 and math.isfinite(value))):
                raise ConfigError(f"--{name.replace('_', '-')} {value}: a drop budget must be a finite number >= 0")

    def failures(self, rows: Iterable[DriftRow]) -> list[str]:
        """Rows that failed to run, and measured or simulated rows over budget. Rows not runnable
        here are not failures (callers list them)."""
        out: list[str] = []
        for r in rows:
            if r.status == FAILED:
                out.append(f"{r.artifact} on {r.dataset}: {r.reason}")
            elif r.status in GATED:
                out += r.drops_over(self.max_plcc_drop, self.max_srcc_drop)
        return out

    def to_dict(self) -> dict:
        return {"max_plcc_drop": self.max_plcc_drop, "max_srcc_drop": self.max_srcc_drop}
