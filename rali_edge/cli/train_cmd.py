"""`rali-edge train`: align, compress and fit from one TOML config, resumable in an output folder."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, friendly_errors

_STAGE_CHOICES = {"align": ("align",), "compress": ("compress",), "fit": ("fit",), "all": ("align", "compress", "fit")}


@friendly_errors
def train(
    config: Path = typer.Option(None, "--config", "-c", help="Training TOML with sections data, backbone, align, compress, fit (configs/train/)."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Output folder; stages done there are skipped."),
    stage: str = typer.Option("all", "--stage", help="align | compress | fit | all"),
    set_: list[str] = typer.Option([], "--set", help="Override a field: section.field=value (TOML value), repeatable."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a RALI scorer (align, compress, fit) from one TOML config."""
    from rali_edge.errors import ConfigError
    from rali_edge.train.config import load_train_config
    from rali_edge.train.pipeline import run_training, stage_summary

    if stage not in _STAGE_CHOICES:
        raise ConfigError(f"--stage {stage!r} is not one of {sorted(_STAGE_CHOICES)}")
    if config is None and not set_:
        raise ConfigError("give a training config with --config FILE (see configs/train/)")
    cfg = load_train_config(config, set_)
    bundle = run_training(cfg, out, stages=_STAGE_CHOICES[stage], progress=not quiet)
    for name, info in stage_summary(out).items():
        if info is None:
            console.print(f"{name:9s} [yellow]not done[/]")
            continue
        details = ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("stage", "hash"))
        console.print(f"{name:9s} [green]done[/]  {details}", highlight=False)
    if bundle is not None:
        console.print(f"bundle: {bundle}")
