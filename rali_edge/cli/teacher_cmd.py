"""`rali-edge teacher ...`: the Q-Insight teacher (GRPO training, reasoning texts, RACT)."""

from __future__ import annotations

import typer

from rali_edge.cli._common import not_built_yet

app = typer.Typer(help="The Q-Insight teacher: GRPO training, reasoning texts, RACT.", no_args_is_help=True)


@app.command("train")
def train() -> None:
    """GRPO training of the Qwen2.5-VL teacher."""
    not_built_yet("teacher train", "issue 4")


@app.command("describe")
def describe() -> None:
    """Write reasoning-text triplets with several seeds."""
    not_built_yet("teacher describe", "issue 4")
