"""Auxiliary ranking loss for the align stage (`AlignConfig.rank_weight`).

The contrastive loss only asks an image to sit near its own reasoning text; when the texts say little
about fine quality differences (template texts, a random text tower), images of close scores end up
ordered at random. A RankNet loss (Burges et al. 2005) over the pairs of a batch whose ground-truth
scores differ by more than `min_gap` asks a linear read-out of the normalised embedding to order them
as the scores do. The read-out `rank_w` lives beside the encoder during alignment only: the bundle
keeps the encoder, and the scorer's head is still the fitted cosine-softmax basis (paper section 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Fixed gain on the read-out: with a unit-norm embedding and a zero-initialised weight, a score difference
# of a few units (what RankNet needs for confident pairs) then takes a weight of norm ~0.5, reached in a
# few hundred AdamW steps at the demo's learning rate.
READOUT_GAIN = 10.0


class TowerWithRankScore(nn.Module):
    """The image encoder plus a zero-initialised linear read-out; forward gives (embedding, score)."""

    def __init__(self, encoder: nn.Module, embed_dim: int):
        super().__init__()
        self.encoder = encoder
        self.rank_w = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.encoder(pixels)
        score = F.normalize(emb.float(), dim=-1) @ self.rank_w.float() * READOUT_GAIN
        return emb, score


def ranking_loss(scores: torch.Tensor, targets: torch.Tensor, min_gap: float) -> torch.Tensor:
    """Mean RankNet loss over the pairs (i, j) with targets[i] - targets[j] > min_gap (zero when none)."""
    diff_t = targets[:, None] - targets[None, :]
    ordered = diff_t > min_gap
    if not bool(ordered.any()):
        return scores.sum() * 0.0  # keeps the graph, so every process runs the same backward
    diff_s = (scores[:, None] - scores[None, :])[ordered]
    # -log sigmoid(s_i - s_j): the pair's probability of being ranked as the targets say
    return F.softplus(-diff_s).mean()
