"""RACT cross-domain SFT (paper appendix C) through TRL's SFTTrainer.

Label alignment: `describe` the images of several datasets with the single-domain RL teacher (the
`triplets` files). Cross-domain SFT: fine-tune that teacher on (image, reasoning text) pairs with the
description prompt (Table A.4); the scores of ONE dataset (`score_triplets`) enter as score-task
examples whose target is the Q-Insight answer format built from the triplet's text and its
gt_score_norm (the paper uses one dataset's scores: more datasets' scores hurt convergence).

`train = "vision"` trains the vision tower (ViT and merger) with the LLM frozen; `"vision+llm"`
trains both (paper Table 5: comparable results, the vision-only run converges slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rali_edge.errors import DataError
from rali_edge.teacher.config import RACTConfig, merge_trl_overrides
from rali_edge.teacher.prompts import DESCRIPTION_PROMPT, SCORE_PROMPT, SYSTEM_PROMPT
from rali_edge.teacher.triplets import read_triplets

VISION_PREFIX = "model.visual."  # Qwen2.5-VL's vision tower (ViT blocks + merger), transformers 5 naming


@dataclass
class RACTResult:
    output_dir: Path
    steps: int
    trainable: int  # parameter tensors trained
    frozen: int


def score_target(text: str, score: float) -> str:
    """A completion that passes the strict Q-Insight format, with the ground-truth rating."""
    return f"<think>\n{text}\n</think>\n<answer>\n{{\"rating\": {score:.2f}}}\n</answer>"


def sft_rows(cfg: RACTConfig) -> list[dict[str, Any]]:
    root = Path(cfg.image_root)
    rows = []
    for path in cfg.triplets:
        rows += [{"task": "description", "image_path": str(root / t.image), "target": t.text}
                 for t in read_triplets(path)]
    for path in cfg.score_triplets:
        rows += [{"task": "score", "image_path": str(root / t.image), "target": score_target(t.text, t.gt_score_norm)}
                 for t in read_triplets(path)]
    if not rows:
        raise DataError("RACT: the triplets files hold no pairs")
    missing = sorted({r["image_path"] for r in rows if not Path(r["image_path"]).is_file()})
    if missing:
        raise DataError(f"RACT: {len(missing)} image(s) named in the triplets are missing under "
                        f"{cfg.image_root}, e.g. {missing[0]}")
    return rows


_PROMPTS = {
    "description": [{"role": "user", "content": DESCRIPTION_PROMPT}],
    "score": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": SCORE_PROMPT}],
}


def _load_batch(batch: dict[str, list]) -> dict[str, list]:
    from rali_edge.data.images import load_image

    return {
        "image": [load_image(p) for p in batch["image_path"]],
        "prompt": [_PROMPTS[t] for t in batch["task"]],
        "completion": [[{"role": "assistant", "content": target}] for target in batch["target"]],
    }


def build_sft_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows).with_transform(_load_batch)


def freeze_for(model: Any, train: str) -> tuple[int, int]:
    """Set requires_grad for the RACT choice; returns (trainable, frozen) parameter-tensor counts."""
    vision_only = {"vision": True, "vision+llm": False}[train]
    names = [n for n, _ in model.named_parameters()]
    if not any(n.startswith(VISION_PREFIX) for n in names):
        raise DataError(f"RACT: the model has no '{VISION_PREFIX}*' parameters; is it a Qwen2.5-VL?")
    trainable = frozen = 0
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(VISION_PREFIX) or not vision_only
        trainable += param.requires_grad
        frozen += not param.requires_grad
    return trainable, frozen


def sft_args(cfg: RACTConfig):
    from trl import SFTConfig

    from rali_edge.teacher.grpo import common_trainer_kwargs

    kwargs = dict(**common_trainer_kwargs(cfg), max_length=cfg.max_length, completion_only_loss=True)
    return SFTConfig(**merge_trl_overrides(kwargs, cfg.trl, "RACT"))


def train_ract(cfg: RACTConfig, model: Any = None, processor: Any = None) -> RACTResult:
    from trl import SFTTrainer

    from rali_edge.teacher.grpo import load_model_and_processor

    cfg.validate()
    args = sft_args(cfg)
    dataset = build_sft_dataset(sft_rows(cfg))
    model, processor = load_model_and_processor(cfg, args.bf16, model, processor)
    trainable, frozen = freeze_for(model, cfg.train)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(cfg.output_dir)
    return RACTResult(Path(cfg.output_dir), trainer.state.global_step, trainable, frozen)
