"""`rali-edge score`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def score() -> None:
    """Score image files and folders with a bundle."""
    not_built_yet("score", "issue 3")
