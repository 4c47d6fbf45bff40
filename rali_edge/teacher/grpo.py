"""Q-Insight GRPO training of a Qwen2.5-VL teacher through TRL's GRPOTrainer.

Tasks are mixed from score meta files (prompt: SCORE_PROMPT, reward: score) and optional degradation
meta files (prompt: DEGRADATION_PROMPT, reward: degradation); every completion also gets the format
reward. Each logging step records the mean of each reward and the share of completions passing the
strict format check (`format_pass_rate`) into `<output_dir>/reward_log.jsonl` as well as TRL's logs.

Multi-GPU: `accelerate launch --config_file configs/teacher/accelerate_zero3.yaml -m rali_edge.cli.app
teacher train --config FILE` (see configs/teacher/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rali_edge.errors import ConfigError, DataError
from rali_edge.teacher.config import GRPOTeacherConfig, ImageBounds, merge_trl_overrides
from rali_edge.teacher.prompts import SYSTEM_PROMPT, TASK_DEGRADATION, TASK_PROMPTS, TASK_SCORE
from rali_edge.teacher.rewards import degradation_reward, format_reward, make_score_reward

REWARD_LOG = "reward_log.jsonl"


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    reward_log: Path
    last_metrics: dict[str, float]


def task_rows(cfg: GRPOTeacherConfig) -> list[dict[str, Any]]:
    """One row per (image, task): the image path and the labels each reward needs."""
    from rali_edge.data.meta import read_meta

    rows: list[dict[str, Any]] = []
    for meta in cfg.score_meta:
        for r in read_meta(meta, cfg.image_root):
            if r.score is None:
                raise DataError(f"{meta}: score meta files need gt_score_norm ({r.image} has none)")
            rows.append(_row(TASK_SCORE, r.path, r.score, None, None))
    for meta in cfg.degradation_meta:
        for r in read_meta(meta, cfg.image_root):
            if r.distortion_class is None:
                raise DataError(f"{meta}: degradation meta files need distortion_class ({r.image} has none)")
            rows.append(_row(TASK_DEGRADATION, r.path, None, r.distortion_class, r.severity))
    if not rows:
        raise DataError("GRPO: the meta files hold no records")
    _require_images(rows)
    return rows


def _require_images(rows: list[dict[str, Any]]) -> None:
    # Images load lazily inside the trainer; find missing files now, not hours into a run.
    missing = sorted({r["image_path"] for r in rows if not Path(r["image_path"]).is_file()})
    if missing:
        raise DataError(f"GRPO: {len(missing)} image(s) named in the meta files are missing, e.g. {missing[0]}")


def _row(task: str, path: Path, score: float | None, cls: str | None, severity: str | None) -> dict[str, Any]:
    return {"task": task, "image_path": str(path), "gt_score_norm": score,
            "distortion_class": cls, "severity": severity}


def _load_batch(batch: dict[str, list]) -> dict[str, list]:
    """Lazy transform: images are decoded (by the one safe loader) only when a batch is drawn."""
    from rali_edge.data.images import load_image

    out = dict(batch)
    out["image"] = [load_image(p) for p in batch["image_path"]]
    # Plain-string messages: TRL inserts the image placeholder before the user text.
    out["prompt"] = [
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": TASK_PROMPTS[t]}]
        for t in batch["task"]
    ]
    return out


def build_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows).with_transform(_load_batch)


def reward_functions(cfg: GRPOTeacherConfig) -> list:
    funcs = [make_score_reward(cfg.score_threshold), format_reward]
    if cfg.degradation_meta:
        funcs.append(degradation_reward)
    return funcs


def _use_bf16(cfg_bf16: bool | None) -> bool:
    import torch

    bf16 = torch.cuda.is_available() if cfg_bf16 is None else cfg_bf16
    if bf16 and not torch.cuda.is_available():
        raise ConfigError("bf16 = true needs a CUDA GPU; set bf16 = false (or leave it unset) on the CPU")
    return bf16


def common_trainer_kwargs(cfg) -> dict[str, Any]:
    """TRL arguments GRPO and RACT set the same way from their configs (bf16 only on CUDA)."""
    return dict(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        bf16=_use_bf16(cfg.bf16),
        fp16=False,
        use_cpu=not _cuda(),
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        seed=cfg.seed,
        report_to="none",
        remove_unused_columns=False,  # the lazy image transform needs its source columns
    )


def grpo_args(cfg: GRPOTeacherConfig):
    from trl import GRPOConfig

    kwargs: dict[str, Any] = dict(
        **common_trainer_kwargs(cfg),
        num_generations=cfg.num_generations,
        beta=cfg.beta,
        # power-1 polynomial = linear decay that ends at lr_end instead of 0 (paper: 1e-6 -> 1e-9)
        lr_scheduler_type="polynomial",
        lr_scheduler_kwargs={"lr_end": cfg.lr_end, "power": 1.0},
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        loss_type="grpo",  # per-sequence token mean, as in open-r1-multimodal / Q-Insight
        scale_rewards="group",  # (r - group mean) / (group std + 1e-4)
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
    )
    return GRPOConfig(**merge_trl_overrides(kwargs, cfg.trl, "GRPO"))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_vllm(cfg: GRPOTeacherConfig) -> None:
    import importlib.util

    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm = true but vLLM is not installed (pip install vllm on the GPU machine)")


def load_processor(model: str, images: ImageBounds, subfolder: str = ""):
    """The model's processor, with the configured image pixel bounds (left padding for generation)."""
    from transformers import AutoProcessor

    kwargs = {k: v for k, v in (("min_pixels", images.min_pixels), ("max_pixels", images.max_pixels)) if v}
    return AutoProcessor.from_pretrained(model, padding_side="left", subfolder=subfolder, **kwargs)


def load_model_and_processor(cfg, bf16: bool, model: Any = None, processor: Any = None) -> tuple[Any, Any]:
    """The Qwen2.5-VL model (bf16 when training in bf16) and processor a teacher config names,
    unless already given. Shared by GRPO and RACT."""
    if model is None:
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32, subfolder=cfg.model_subfolder
        )
    if processor is None:
        processor = load_processor(cfg.model, cfg.images, cfg.model_subfolder)
    return model, processor


def train_grpo(
    cfg: GRPOTeacherConfig, model: Any = None, processor: Any = None, extra_rewards: Sequence[Callable] = ()
) -> TrainResult:
    """Run GRPO; `model`/`processor` may be given already loaded, else they load from cfg.model.

    `extra_rewards` are added after Q-Insight's rewards (TRL reward-function signature).
    """
    from trl import GRPOTrainer

    cfg.validate()
    _check_vllm(cfg)
    args = grpo_args(cfg)
    dataset = build_dataset(task_rows(cfg))
    model, processor = load_model_and_processor(cfg, args.bf16, model, processor)
    from rali_edge.teacher.callbacks import RewardLogCallback

    log = RewardLogCallback(Path(cfg.output_dir) / REWARD_LOG)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[*reward_functions(cfg), *extra_rewards],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[log],
    )
    trainer.train()
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(cfg.output_dir)
    return TrainResult(Path(cfg.output_dir), trainer.state.global_step, log.path, log.last)
