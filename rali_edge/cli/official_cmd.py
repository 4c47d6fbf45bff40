"""`rali-edge import-official`."""

from __future__ import annotations

from rali_edge.cli._common import not_built_yet


def import_official() -> None:
    """Import the official released RALI checkpoint into a bundle."""
    not_built_yet("import-official", "issue 3")
