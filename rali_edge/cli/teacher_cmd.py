"""`rali-edge teacher ...`: the Q-Insight teacher (GRPO training, reasoning texts, RACT)."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, friendly_errors

app = typer.Typer(help="The Q-Insight teacher: GRPO training, reasoning texts, RACT.", no_args_is_help=True)


@app.command("train")
@friendly_errors
def train(
    config: Path = typer.Option(..., "--config", help="GRPO config (.toml or .yaml); see configs/teacher/grpo_example.toml."),
) -> None:
    """GRPO training of the Qwen2.5-VL teacher (Q-Insight rewards, TRL GRPOTrainer).

    Multi-GPU: accelerate launch --config_file configs/teacher/accelerate_zero3.yaml -m rali_edge.cli.app teacher train --config FILE
    """
    from rali_edge.teacher.config import GRPOTeacherConfig, load_config
    from rali_edge.teacher.grpo import train_grpo

    cfg = load_config(GRPOTeacherConfig, config)
    result = train_grpo(cfg)
    console.print(f"trained {result.steps} steps -> {result.output_dir}")
    console.print(f"per-step rewards and format pass rate: {result.reward_log}")
    if result.last_metrics:
        console.print(f"last logged step: {result.last_metrics}")


@app.command("describe")
@friendly_errors
def describe(
    meta: list[Path] = typer.Option(..., "--meta", help="Meta JSON file(s) with gt_score_norm (repeat the option)."),
    image_root: Path = typer.Option(..., "--image-root", help="Folder the meta files' image paths are relative to."),
    out: Path = typer.Option(..., "--out", help="Triplets JSONL to write (appended to; resumable)."),
    seeds: list[int] = typer.Option(None, "--seeds", help="Sampling seeds: --seeds 0 1 2 (default 0 1 2)."),
    more_seeds: list[int] = typer.Argument(None, hidden=True, help="The seeds after the first in --seeds 0 1 2."),
    model: str = typer.Option(None, "--model", help="Teacher: hub name or local folder (e.g. ByteDance/Q-Insight)."),
    subfolder: str = typer.Option("", "--subfolder", help="Subfolder in the model repo (Q-Insight: score_degradation)."),
    template: bool = typer.Option(False, "--template", help="Template texts from distortion_class/severity (synthetic data)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_k: int = typer.Option(50, "--top-k"),
    top_p: float = typer.Option(0.95, "--top-p"),
    device: str = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda when available)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32."),
) -> None:
    """Write (image, seed) reasoning-text triplets, from a teacher model or from templates."""
    from rali_edge.data.meta import read_meta
    from rali_edge.errors import ConfigError

    if template == (model is not None):
        raise ConfigError("give exactly one of --model PATH or --template")
    if more_seeds and not seeds:
        raise ConfigError(f"unexpected arguments {more_seeds}: seeds go after --seeds (--seeds 0 1 2)")
    seeds = list(dict.fromkeys([*(seeds or [0, 1, 2]), *(more_seeds or [])]))
    records = [r for m in meta for r in read_meta(m, image_root)]
    if template:
        from rali_edge.teacher.template import describe_with_template

        stats = describe_with_template(records, seeds, out)
    else:
        from rali_edge.teacher.describe import SamplingConfig, describe as describe_fn

        sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens)
        stats = describe_fn(model, records, seeds, out, batch_size=batch_size, sampling=sampling, device=device, dtype=dtype,
                             subfolder=subfolder)
    console.print(
        f"{stats.written} written, {stats.skipped} already there, {stats.malformed} malformed "
        f"of {stats.total} (image, seed) pairs -> {out} (teacher: {stats.teacher})"
    )
    if stats.malformed or stats.notes.get("bad_images"):
        console.print(f"malformed completions and unreadable images are logged in {stats.malformed_path}")
    if stats.notes.get("repaired_bytes"):
        console.print(f"removed a cut-off last line ({stats.notes['repaired_bytes']} bytes) left by an interrupted run")
    if stats.notes.get("format_pass_rate") is not None:
        console.print(f"strict format pass rate: {stats.notes['format_pass_rate']:.3f}")


@app.command("ract")
@friendly_errors
def ract(
    config: Path = typer.Option(..., "--config", help="RACT config (.toml or .yaml); see configs/teacher/ract_example.toml."),
) -> None:
    """RACT cross-domain SFT on (image, reasoning text) pairs (vision tower only, or vision + LLM)."""
    from rali_edge.teacher.config import RACTConfig, load_config
    from rali_edge.teacher.ract import train_ract

    cfg = load_config(RACTConfig, config)
    result = train_ract(cfg)
    console.print(
        f"trained {result.steps} steps ({cfg.train}: {result.trainable} tensors trained, {result.frozen} frozen) "
        f"-> {result.output_dir}"
    )


@app.command("tiny")
@friendly_errors
def tiny(out: Path = typer.Option(..., "--out", help="Folder for the tiny random-weight Qwen2.5-VL.")) -> None:
    """Build a tiny Qwen2.5-VL with RANDOM weights (for tests and demos; its texts mean nothing)."""
    from rali_edge.teacher.tiny import build_tiny_teacher

    path = build_tiny_teacher(out)
    console.print(f"tiny random-weight Qwen2.5-VL -> {path}")
