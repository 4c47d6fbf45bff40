"""`rali-edge train`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def train() -> None:
    """Train a RALI scorer (align, compress, fit) from one TOML config."""
    not_built_yet("train", "issue 3")
