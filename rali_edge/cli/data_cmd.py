"""`rali-edge data ...`: dataset tools."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, friendly_errors

app = typer.Typer(help="Dataset tools (synthetic IQA data).", no_args_is_help=True)


@app.command("synth")
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (new, empty, or an earlier synth output)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives the same files."),
    sources: int = typer.Option(24, "--sources", min=2, help="Number of pristine source images (56 images each)."),
    size: int = typer.Option(96, "--size", min=16, max=1024, help="Side of the square images, in pixels."),
    procedural: int = typer.Option(0, "--procedural", min=0,
                                   help="Extra dead-leaves pictures as training sources (56 images each; train split only)."),
    train_only_crops: int = typer.Option(0, "--train-only-crops", min=0,
                                         help="Crops of each train-only photograph (PyWavelets, mahotas) as extra "
                                              "training sources (56 images each; train split only)."),
) -> None:
    """Build a synthetic IQA dataset from images that installed packages ship."""
    from rali_edge.data.synth import synthesize

    ds = synthesize(out, seed=seed, sources=sources, size=size, procedural=procedural,
                    train_only_crops=train_only_crops)
    console.print(f"wrote synthetic IQA dataset to {ds.root}", highlight=False)
    console.print(f"  train: {ds.n_train} images  ({ds.train_meta})", highlight=False)
    console.print(f"  test:  {ds.n_test} images  ({ds.test_meta})", highlight=False)
