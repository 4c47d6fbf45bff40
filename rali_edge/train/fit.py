"""Score definition (paper section 4): fine-tune the head on image-score pairs.

Trainable: `pca_scale`, `prototypes`, `proto_scores`, `logit_scale` (init 1/0.07 as the official
code), and `pca_components` when `train_components` is set. The backbone is not touched: the stage
works on embeddings extracted once with the aligned encoder.

Loss: mean squared error between predicted and ground-truth scores, plus `plcc_weight * (1 - PLCC)`
over the mini-batch. MSE keeps scores on the [1, 5] scale (the official evaluation also reports MAE
and uses plain, un-fitted correlations); the PLCC term rewards ranking and linearity directly, which
is what PLCC/SRCC measure. `plcc_weight = 0` gives plain MSE.

Optimiser: Adam, lr 3e-2 (paper), constant. Early stopping: after each epoch the validation MSE is
measured; the best head is kept and training stops after `patience` epochs without improvement.
Every epoch appends one JSON line (epoch, train loss, validation MSE/PLCC, lr) to the log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rali_edge.errors import ConfigError, DataError
from rali_edge.model.head import RaliHead


@dataclass(frozen=True)
class FitConfig:
    """Options of the fit stage; `[fit]` in the training TOML."""

    lr: float = 3e-2
    epochs: int = 100
    batch_size: int = 256
    plcc_weight: float = 0.5
    train_components: bool = False
    patience: int = 10
    val_fraction: float = 0.1  # share of the training records held out for early stopping
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"fit.lr must be positive, got {self.lr}")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fit.{name} must be a positive integer, got {value!r}")
        if self.plcc_weight < 0:
            raise ConfigError(f"fit.plcc_weight must be >= 0, got {self.plcc_weight}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"fit.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class FitResult:
    head: RaliHead  # the best head (lowest validation MSE; last one when there is no validation set)
    best_epoch: int
    best_val_mse: float | None
    history: list[dict] = field(default_factory=list)


def batch_plcc(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Differentiable Pearson correlation of two 1-D tensors (0 when either is constant)."""
    p = pred - pred.mean()
    g = gt - gt.mean()
    return (p * g).sum() / (p.norm() * g.norm()).clamp(min=1e-8)


def fit_loss(pred: torch.Tensor, gt: torch.Tensor, plcc_weight: float) -> torch.Tensor:
    loss = torch.mean((pred - gt) ** 2)
    if plcc_weight > 0 and len(gt) > 1:
        loss = loss + plcc_weight * (1.0 - batch_plcc(pred, gt))
    return loss


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise DataError(f"fit: {name} contains NaN or infinite values")
    return t


@torch.no_grad()
def evaluate_head(head: RaliHead, emb: torch.Tensor, scores: torch.Tensor, batch: int = 4096) -> dict:
    """MSE and PLCC of the head's predictions on embeddings [N, D]."""
    pred = torch.cat([head(emb[i : i + batch]) for i in range(0, len(emb), batch)])
    return {"mse": float(torch.mean((pred - scores) ** 2)), "plcc": float(batch_plcc(pred, scores))}


def _append_log(log_path: Path | None, row: dict) -> None:
    if log_path is None:
        return
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def fit_head(
    head: RaliHead,
    train_emb: np.ndarray | torch.Tensor,
    train_scores: np.ndarray | torch.Tensor,
    val_emb: np.ndarray | torch.Tensor | None = None,
    val_scores: np.ndarray | torch.Tensor | None = None,
    config: FitConfig | None = None,
    log_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `head` in place on (embedding, score) pairs; returns the best head and the history."""
    config = config or FitConfig()
    x, y = _as_tensor(train_emb, "training embeddings"), _as_tensor(train_scores, "training scores")
    if x.dim() != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(f"fit needs embeddings [N, D] and N scores, got {tuple(x.shape)} and {tuple(y.shape)}")
    has_val = val_emb is not None and val_scores is not None and len(val_scores) > 0
    vx = _as_tensor(val_emb, "validation embeddings") if has_val else None
    vy = _as_tensor(val_scores, "validation scores") if has_val else None
    log = Path(log_path) if log_path is not None else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("", encoding="utf-8")  # a rerun of the stage starts a fresh log

    head.train()
    opt = torch.optim.Adam(head.trainable(components=config.train_components), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    best = (0, float("inf"))
    history: list[dict] = []
    bar = tqdm(range(1, config.epochs + 1), desc="fit", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(x), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(x), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = fit_loss(head(x[idx]), y[idx], config.plcc_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        row = {"epoch": epoch, "train_loss": total / seen, "lr": config.lr}
        score_on = (vx, vy) if has_val else (x, y)
        metrics = evaluate_head(head, *score_on)
        row.update({("val_" if has_val else "train_") + k: v for k, v in metrics.items()})
        history.append(row)
        _append_log(log, row)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", mse=f"{metrics['mse']:.4f}")
        if metrics["mse"] < best[1]:
            best = (epoch, metrics["mse"])
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        elif has_val and epoch - best[0] >= config.patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return FitResult(head=head, best_epoch=best[0], best_val_mse=best[1] if has_val else None, history=history)


def head_from_compress(pca_mean, pca_components, prototypes, proto_scores) -> RaliHead:
    """The initial head: compress results, pca_scale = 1, logit_scale = 1/0.07 (official init)."""
    return RaliHead(
        pca_mean=torch.as_tensor(np.asarray(pca_mean), dtype=torch.float32),
        pca_components=torch.as_tensor(np.asarray(pca_components), dtype=torch.float32),
        prototypes=torch.as_tensor(np.asarray(prototypes), dtype=torch.float32),
        proto_scores=torch.as_tensor(np.asarray(proto_scores), dtype=torch.float32),
    )
