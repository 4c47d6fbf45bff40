"""`rali-edge benchmark`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def benchmark() -> None:
    """Export, validate and time every format; one table and reports."""
    not_built_yet("benchmark", "issue 7")
