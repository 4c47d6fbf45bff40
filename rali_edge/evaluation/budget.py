"""The one drift budget check: which rows break a release gate, as sentences.

Two ways to read a drop against the budget (`gate`):
- "point" (the default): the measured drop, -dplcc (-dsrcc);
- "upper": the pessimistic end of the drop's bootstrap interval, -dplcc_ci[0] (-dsrcc_ci[0]): the
  largest drop the images leave plausible (report/bootstrap.py, 95 %). A row with a change but no
  interval (too few images, undefined in most resamples) fails under "upper": it cannot show that it
  holds, and the gate never quietly falls back to the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rali_edge.errors import ConfigError
from rali_edge.report.drift import FAILED, GATED, DriftRow

POINT, UPPER = "point", "upper"
GATES = {POINT: "the measured drop (point estimate)",
         UPPER: "the upper bound of the drop's 95% bootstrap interval (pessimistic)"}


@dataclass(frozen=True)
class DriftBudget:
    """Max PLCC / SRCC drop against the float model (None: not gated on that metric), and how a
    row's drop is read (`gate`: "point" or "upper")."""

    max_plcc_drop: float | None = None
    max_srcc_drop: float | None = None
    gate: str = POINT

    def __post_init__(self) -> None:
        for name in ("max_plcc_drop", "max_srcc_drop"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not (value >= 0 and math.isfinite(value))):
                raise ConfigError(f"--{name.replace('_', '-')} {value}: a drop budget must be a finite number >= 0")
        if self.gate not in GATES:
            raise ConfigError(f"--gate {self.gate!r}: choose one of {', '.join(GATES)}")

    def failures(self, rows: Iterable[DriftRow]) -> list[str]:
        """Rows that failed to run, and measured or simulated rows over budget. Rows not runnable
        here are not failures (callers list them)."""
        out: list[str] = []
        for r in rows:
            if r.status == FAILED:
                out.append(f"{r.artifact} on {r.dataset}: {r.reason}")
            elif r.status in GATED:
                out += self.drops_over(r)
        return out

    def drops_over(self, row: DriftRow) -> list[str]:
        """Budget breaches of one row, as sentences (empty when within budget or not measured)."""
        out = []
        for metric, budget in (("plcc", self.max_plcc_drop), ("srcc", self.max_srcc_drop)):
            change = getattr(row, f"d{metric}")
            if budget is None or change is None:
                continue
            where, name = f"{row.artifact} on {row.dataset}", metric.upper()
            if self.gate == POINT:
                if -change > budget:
                    out.append(f"{where}: {name} dropped {-change:.4f} > {budget}")
                continue
            interval = getattr(row, f"d{metric}_ci")
            if interval is None:
                out.append(f"{where}: no {name} interval to gate on ({row.interval_reason or 'not computed'})")
            elif -interval[0] > budget:
                out.append(f"{where}: {name} drop up to {-interval[0]:.4f} (upper bound of the 95% interval; "
                           f"measured {-change:.4f}) > {budget}")
        return out

    def to_dict(self) -> dict:
        return {"max_plcc_drop": self.max_plcc_drop, "max_srcc_drop": self.max_srcc_drop, "gate": self.gate}

    def describe(self) -> str:
        """One sentence for reports: the budget and what it was compared with."""
        limits = [f"max {m} drop {v}" for m, v in (("PLCC", self.max_plcc_drop), ("SRCC", self.max_srcc_drop))
                  if v is not None]
        return (", ".join(limits) or "no drop budget") + f"; gate {self.gate!r}: {GATES[self.gate]}"
