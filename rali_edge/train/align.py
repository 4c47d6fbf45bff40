"""Contrastive alignment (paper section 4): train the image tower against frozen reasoning-text embeddings.

Loss: symmetric InfoNCE (CLIP's) between L2-normalised image embeddings and the frozen, cached,
L2-normalised text embeddings of each image's reasoning text, with a FIXED temperature
(`temperature`, default 0.01 = 1 / 100, the logit scale pretrained CLIP models end at and are clamped
to; the backbone's own logit_scale is not trained). Teacher texts repeat across images (template texts
always do), so targets are multi-positive: image i and text j are a positive pair when text j is the
same string as image i's text; each row of targets is normalised to sum to 1.

Seed augmentation: an image with several triplets (different sampling seeds) contributes one of its
texts per step, drawn from `numpy.random.default_rng([seed, epoch, step_in_epoch])`; the image order
of each epoch is `torch.randperm` seeded with (seed, epoch). Everything a step does is a function
of (seed, step), so resuming from a checkpoint gives the same weights as an uninterrupted run.

Augmentation (both off by default, as in the paper; `rali_edge.train.augment`): `random_crop` trains
on random square crops of each encoder input, for towers that take any input size; `flip_rotate`
mirrors and turns each image. Both are drawn from seeded streams of (seed, step, micro-step), so they
resume exactly too.

Ranking (off by default; `rank_weight`, `rali_edge.train.rank`): adds `rank_weight` x a RankNet loss
over the batch's pairs whose ground-truth scores differ by more than `rank_min_gap`, through a
zero-initialised linear read-out of the normalised embedding that is trained with the encoder (weight
decay 0, not clipped) and dropped afterwards: encoder.safetensors holds the encoder only.

Optimiser: AdamW, lr 1e-5 (paper), linear warm-up over `warmup_fraction` of the steps, then cosine or
linear decay to `min_lr_ratio * lr`. `batch_size` is per process and micro-step; an optimiser step
sees `batch_size * grad_accum * processes` images; negatives are the images of one micro-batch.
Mixed precision: bf16 autocast on CUDA ("auto" or "bf16"); float32 on the CPU unless "bf16" is asked
for, which needs native bf16 (AVX512-BF16 or AMX; `cpu_has_native_bf16`). Multi-GPU: run the
command under `accelerate launch`; the loop uses accelerate's `Accelerator` (DDP, autocast), which
is a plain single-process loop on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rali_edge._atomic import atomic_path
from rali_edge.errors import ConfigError
from rali_edge.model.preprocess import normalize
from rali_edge.train.align_data import AlignData, AlignPlan
from rali_edge.train.checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from rali_edge.train.augment import AUGMENT_STREAM, CROP_STREAM, check_takes_crops, flip_rotate, random_crop
from rali_edge.train.rank import TowerWithRankScore, ranking_loss

SCHEDULES = {
    "cosine": lambda p, floor: floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p)),
    "linear": lambda p, floor: 1.0 - (1.0 - floor) * p,
    "constant": lambda p, floor: 1.0,
}
MIXED_PRECISION = {"auto": None, "no": "no", "bf16": "bf16"}
# Fields that may change between a run and its resumption without changing the trajectory.
RESUME_FREE = frozenset({"checkpoint_every", "keep_checkpoints", "cache_pixels", "text_batch_size"})


@dataclass(frozen=True)
class AlignConfig:
    """Options of the align stage; `[align]` in the training TOML."""

    lr: float = 1e-5
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    epochs: int = 1
    max_steps: int = 0  # optimiser steps; 0 = epochs * steps per epoch
    batch_size: int = 32  # per process and micro-step
    grad_accum: int = 1
    warmup_fraction: float = 0.05
    schedule: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.0
    temperature: float = 0.01
    max_grad_norm: float = 1.0  # 0 = no clipping
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | no | bf16 (CUDA or a native-bf16 CPU)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    cache_pixels: bool = True  # decode all images once and keep them in memory
    text_batch_size: int = 256
    # Random flips and 90-degree turns of each training image (seeded per step). Off by default, as in
    # the paper; they leave technical quality unchanged, so on small data they teach the tower that
    # orientation (and so much of the content's layout) does not matter for the score.
    flip_rotate: bool = False
    # Train on random `random_crop` x `random_crop` crops of each encoder input (0 = the whole input);
    # scoring still sees the whole input. A crop keeps the pixel scale, so blur, noise and blocks look the
    # same size, but shows a different part of the picture every step: on small data the tower cannot
    # learn its few pictures by their layout, and a step costs (crop / size)^2 of a full one, so the
    # same time buys more steps. Demo tower: test PLCC 0.80 at 900 whole-input steps -> 0.85 / 0.82 (two
    # seeds) at 3600 steps of 64 px crops of its 128 px input. Needs a tower that takes any input size
    # (global average pooling); ViTs and open_clip's ModifiedResNet (attention pool) do not.
    random_crop: int = 0
    # With random_crop: the last share of the steps trains on whole inputs, as scoring sees them (Touvron et
    # al. 2019, "Fixing the train-test resolution discrepancy"). Demo: 3000 crop + 600 whole steps 0.86 vs
    # 3300 crop steps 0.85; re-estimating only the BatchNorm statistics on whole inputs gave 0.82.
    full_input_fraction: float = 0.0
    # Train the image tower in channels-last (NHWC) memory layout: the same computation up to float
    # rounding, and oneDNN's NHWC convolution, batch-norm and pooling kernels make a step of the demo's
    # ResNet tower 1.35-1.7x faster on the CPU (benchmarks/bench_train.py). ViTs have one convolution only.
    channels_last: bool = True
    # Weight of an auxiliary RankNet loss on a linear read-out of the embedding (rali_edge.train.rank); 0 =
    # contrastive only, as in the paper. For texts that order close scores poorly (the demo's templates).
    # Demo before its train-only photographs, weight 1: test PLCC/SRCC 0.850/0.845 vs 0.838/0.837
    # without it, better on all three splits (mean 0.793/0.793 vs 0.774/0.770) and in 8 of 9 paired
    # runs overall; weight 2 won 4 of 8 against 1 (docs/demo_accuracy.md).
    rank_weight: float = 0.0
    rank_min_gap: float = 0.1  # pairs whose gt_score_norm (1-5) differ by less are not ranked
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"align.schedule {self.schedule!r} is not one of {sorted(SCHEDULES)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"align.mixed_precision {self.mixed_precision!r} is not one of {sorted(MIXED_PRECISION)}")
        positive = ("lr", "temperature", "eps")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"align.{name} must be positive, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "grad_accum", "checkpoint_every", "text_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"align.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("align.batch_size must be >= 2: a contrastive batch needs negatives")
        if not 0.0 <= self.warmup_fraction < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("align.warmup_fraction must be in [0, 1) and align.min_lr_ratio in [0, 1]")
        if self.random_crop < 0 or self.random_crop == 1:
            raise ConfigError(f"align.random_crop must be 0 (off) or a crop size >= 2 pixels, got {self.random_crop}")
        if not 0.0 <= self.full_input_fraction < 1.0:
            raise ConfigError(f"align.full_input_fraction must be in [0, 1), got {self.full_input_fraction}")
        if self.full_input_fraction and not self.random_crop:
            raise ConfigError("align.full_input_fraction is the whole-input share of crop training: set align.random_crop too")
        if self.rank_weight < 0 or self.rank_min_gap < 0:
            raise ConfigError(f"align.rank_weight and align.rank_min_gap must be >= 0, got {self.rank_weight} "
                              f"and {self.rank_min_gap}")
        if self.max_steps < 0 or self.max_grad_norm < 0 or self.keep_checkpoints < 1:
            raise ConfigError("align.max_steps and max_grad_norm must be >= 0, keep_checkpoints >= 1")


@dataclass
class AlignResult:
    encoder_path: Path  # safetensors of the aligned image encoder's state dict
    steps: int
    total_steps: int
    last_loss: float | None
    halted: bool  # stopped early by `halt_after` (a simulated kill), not finished


def lr_at(step: int, total: int, config: AlignConfig) -> float:
    warm = int(round(config.warmup_fraction * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return config.lr * SCHEDULES[config.schedule](min(progress, 1.0), config.min_lr_ratio)


def contrastive_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, text_ids: torch.Tensor, temperature: float):
    """Symmetric multi-positive InfoNCE; `txt_emb` is already L2-normalised."""
    logits = F.normalize(img_emb.float(), dim=-1) @ txt_emb.float().T / temperature
    same = (text_ids[:, None] == text_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    loss_img = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_txt = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_img + loss_txt)


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 in hardware (AVX512-BF16 or AMX): there bf16 autocast speeds CPU
    training up (measured 1.4x on 64 px, 2x on 128 px ResNet steps); elsewhere it is emulated and slower."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _accelerator(config: AlignConfig):
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    mp = MIXED_PRECISION[config.mixed_precision] or ("bf16" if cuda else "no")
    if mp == "bf16" and not cuda:
        if not cpu_has_native_bf16():
            raise ConfigError("align.mixed_precision = 'bf16' needs a CUDA GPU or a CPU with native bf16 "
                              "(AVX512-BF16 or AMX); this CPU has neither, use 'auto' or 'no'")
        # accelerate keeps one process-wide precision; CPU bf16 autocasts in `_autocast` instead, so a
        # float and a bf16 run can share a process (tests, notebooks)
        mp = "no"
    return Accelerator(mixed_precision=mp, cpu=not cuda)


def _autocast(acc, config: AlignConfig):
    if config.mixed_precision == "bf16" and acc.device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return acc.autocast()


def _check_resume(meta: dict, config: AlignConfig, data_key: str, path: Path) -> None:
    now = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUME_FREE}
    # a field added after the checkpoint was written had its default value then
    defaults = {k: v for k, v in dataclasses.asdict(AlignConfig()).items() if k not in RESUME_FREE}
    saved = {**defaults, **{k: v for k, v in meta.get("config", {}).items() if k not in RESUME_FREE}}
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff or meta.get("data_key") != data_key:
        what = f"config fields {diff}" if diff else "the triplets / images"
        raise ConfigError(f"{path}: this checkpoint was made with different {what}; resume with the same "
                          "settings or use a fresh output folder")


def _trim_log(log: Path, last_step: int) -> None:
    """Drop log lines after the resumed step, so the log reads like an uninterrupted run."""
    if not log.is_file():
        return
    keep = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()
            and json.loads(ln)["step"] <= last_step]
    log.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def align(backbone, triplets, image_root: str | os.PathLike[str], config: AlignConfig,
          out_dir: str | os.PathLike[str], progress: bool = True, halt_after: int | None = None) -> AlignResult:
    """Train `backbone.image_encoder()` in place; checkpoints, log and final weights go to out_dir.

    Resumes from the newest checkpoint in `out_dir/checkpoints`. `halt_after` stops after that many
    optimiser steps in total, leaving a checkpoint as a kill would (used to test resumption).
    """
    from rali_edge.train.embeddings import PixelSource
    from rali_edge.train.text_cache import text_embeddings

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = AlignData.from_triplets(triplets)
    acc = _accelerator(config)
    plan = AlignPlan(data, config, acc.num_processes)
    backbone.to(acc.device)
    txt = text_embeddings(backbone, data.texts, out_dir / "text_embeddings.safetensors", config.text_batch_size,
                          progress and acc.is_main_process, write=acc.is_main_process).to(acc.device)
    preprocess = backbone.default_preprocess()
    pixels = PixelSource([Path(image_root) / i for i in data.images], preprocess, cache=config.cache_pixels,
                         progress=progress and acc.is_main_process)

    encoder, trainable, opt = _trainable_encoder(backbone, config, preprocess.image_size, acc.device)
    ckpt_root = out_dir / "checkpoints"
    start = _resume(ckpt_root, trainable, opt, config, data.key())
    log = out_dir / "log.jsonl"
    if acc.is_main_process:
        _trim_log(log, start)
    model, opt = acc.prepare(trainable, opt)
    meta = {"config": dataclasses.asdict(config), "data_key": data.key(), "total_steps": plan.total}

    def checkpoint(step: int) -> None:
        if acc.is_main_process:
            save_checkpoint(ckpt_root, step, acc.unwrap_model(model).state_dict(), opt.optimizer.state_dict(), meta)
            prune_checkpoints(ckpt_root, config.keep_checkpoints)
        acc.wait_for_everyone()

    stop = plan.total if halt_after is None else min(plan.total, halt_after)
    last_loss = None
    bar = tqdm(range(start, stop), desc="align", unit="step", initial=start, total=plan.total,
               disable=not (progress and acc.is_main_process))
    scores = torch.tensor(data.scores, dtype=torch.float32)
    for g in bar:
        last_loss, rank_loss = _train_step(acc, model, encoder, opt, plan, pixels, txt, scores, g, config)
        if acc.is_main_process:
            _log_step(log, g, plan, last_loss, rank_loss, opt.param_groups[0]["lr"])
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if (g + 1) % config.checkpoint_every == 0 and g + 1 < stop:
            checkpoint(g + 1)
    if stop > start:
        checkpoint(stop)
    final = out_dir / "encoder.safetensors"
    if stop == plan.total and acc.is_main_process:
        _save_encoder(encoder, final)
    acc.wait_for_everyone()
    encoder.to(memory_format=torch.contiguous_format)  # later stages and exports expect the default layout
    backbone.requires_grad_(False)
    backbone.eval()
    return AlignResult(encoder_path=final, steps=stop, total_steps=plan.total, last_loss=last_loss,
                       halted=stop < plan.total)


def _trainable_encoder(backbone, config: AlignConfig, image_size: int, device):
    """The image tower set to train (the rest frozen), what the optimiser steps (the tower, plus the
    rank read-out when the rank loss is on) and its AdamW."""
    backbone.requires_grad_(False)
    encoder = backbone.image_encoder()
    encoder.requires_grad_(True)
    if config.random_crop:
        check_takes_crops(encoder, config.random_crop, image_size, device)
    encoder.train()
    if config.channels_last:
        encoder.to(memory_format=torch.channels_last)
    trainable = TowerWithRankScore(encoder, backbone.config.embed_dim).to(device) if config.rank_weight else encoder
    groups = [{"params": [p for p in encoder.parameters() if p.requires_grad]}]
    if config.rank_weight:
        groups.append({"params": [trainable.rank_w], "weight_decay": 0.0})  # a read-out, not a weight to shrink
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                            weight_decay=config.weight_decay)
    return encoder, trainable, opt


def _resume(ckpt_root: Path, trainable, opt, config: AlignConfig, data_key: str) -> int:
    """Load the newest checkpoint (after checking it belongs to this run); the step to start from."""
    found = list_checkpoints(ckpt_root)
    if not found:
        return 0
    ckpt = load_checkpoint(found[-1])
    _check_resume(ckpt.meta, config, data_key, ckpt.path)
    trainable.load_state_dict(ckpt.model_state)
    opt.load_state_dict(ckpt.optimizer_state)
    return ckpt.step


def _log_step(log: Path, g: int, plan: AlignPlan, loss: float, rank_loss: float | None, lr: float) -> None:
    row = {"step": g + 1, "epoch": g // plan.steps_per_epoch, "loss": loss, "lr": lr}
    if rank_loss is not None:
        row["rank_loss"] = rank_loss
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _save_encoder(encoder, final: Path) -> None:
    """The encoder alone: the ranking read-out is a training aid, not part of the scorer."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(final) as tmp:
        save_file(state, str(tmp))


def _train_step(acc, model, encoder, opt, plan: AlignPlan, pixels, txt: torch.Tensor, scores: torch.Tensor, g: int,
                config: AlignConfig) -> tuple[float, float | None]:
    """One optimiser step; returns the mean total loss and, when ranking, the mean ranking loss."""
    torch.manual_seed(config.seed * 1_000_003 + g)  # any dropout draws the same numbers after a resume
    lr = lr_at(g, plan.total, config)
    for group in opt.param_groups:
        group["lr"] = lr
    images, text_ids = plan.step(g)
    total = torch.zeros((), device=acc.device)
    total_rank = torch.zeros((), device=acc.device)
    for m in range(config.grad_accum):
        idx = plan.micro(images, m, acc.process_index)
        tid = torch.as_tensor(plan.micro(text_ids, m, acc.process_index), device=acc.device)
        sync = m == config.grad_accum - 1
        with (contextlib.nullcontext() if sync else acc.no_sync(model)), _autocast(acc, config):
            # crop and turn the uint8 pixels, then normalise: the same values (normalising is per pixel)
            # for a quarter of the work on 64 px crops of 128 px inputs
            batch = pixels.uint8(idx).to(acc.device)
            if g < plan.crop_steps:
                batch = random_crop(batch, config.random_crop, np.random.default_rng([config.seed, CROP_STREAM, g, m]))
            if config.flip_rotate:
                batch = flip_rotate(batch, np.random.default_rng([config.seed, AUGMENT_STREAM, g, m]))
            batch = normalize(batch, pixels.cfg)
            if config.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            out = model(batch)
            emb, predicted = out if config.rank_weight else (out, None)  # TowerWithRankScore gives both
            loss = contrastive_loss(emb, txt[tid], tid, config.temperature) / config.grad_accum
            if config.rank_weight:
                rank = ranking_loss(predicted, scores[idx].to(acc.device), config.rank_min_gap) / config.grad_accum
                loss = loss + config.rank_weight * rank
                total_rank += rank.detach()
        acc.backward(loss)
        total += loss.detach()
    if config.max_grad_norm > 0:
        acc.clip_grad_norm_(encoder.parameters(), config.max_grad_norm)  # the encoder's norm, as without ranking
    opt.step()
    opt.zero_grad(set_to_none=True)
    mean_rank = float(acc.reduce(total_rank, reduction="mean")) if config.rank_weight else None
    return float(acc.reduce(total, reduction="mean")), mean_rank
