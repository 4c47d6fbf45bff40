"""`rali-edge demo`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def demo() -> None:
    """Run the whole chain on synthetic data, on the CPU, in minutes."""
    not_built_yet("demo", "issue 8")
