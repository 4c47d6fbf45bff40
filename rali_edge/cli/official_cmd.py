"""`rali-edge import-official`: the released RALI checkpoint folder -> a bundle (no pickle inside)."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, friendly_errors


@friendly_errors
def import_official(
    ckpt_dir: Path = typer.Argument(..., help="Official folder with ckpt.pt, pca.pkl, basis.npz and best/."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow unpickling pca.pkl (runs code from "
                                      "the file: only for checkpoints from a source you trust)."),
) -> None:
    """Import the official released RALI checkpoint into a bundle."""
    from rali_edge.official import import_official as run

    path = run(ckpt_dir, out, trust_pickle=trust_pickle)
    console.print(f"wrote bundle {path}", highlight=False)
