"""`rali-edge validate`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def validate() -> None:
    """Validate artifacts against the float model: PLCC/SRCC drift, CI gate."""
    not_built_yet("validate", "issue 6")
