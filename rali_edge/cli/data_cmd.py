"""`rali-edge data ...`: dataset tools."""

from __future__ import annotations

import typer

from rali_edge.cli._common import not_built_yet

app = typer.Typer(help="Dataset tools (synthetic IQA data).", no_args_is_help=True)


@app.command("synth")
def synth() -> None:
    """Build a synthetic IQA dataset from images that installed packages ship."""
    not_built_yet("data synth", "issue 2")
