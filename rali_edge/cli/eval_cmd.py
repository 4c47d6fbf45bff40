"""`rali-edge eval`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def evaluate() -> None:
    """Evaluate a bundle: PLCC/SRCC/KRCC/MAE per meta file."""
    not_built_yet("eval", "issue 3")
