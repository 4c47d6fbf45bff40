"""The RALI scoring head: exactly the released official formula (REFERENCE section 1).

    x   = ((feats - pca_mean) / |pca_scale|) @ pca_components.T      # [B, M]
    x   = normalize(x);  p = normalize(prototypes);  sim = x @ p.T     # [B, K]
    w   = softmax(sim / tau),  tau = 1 / logit_scale.clamp(min=1e-6)
    score = w @ proto_scores                                           # [B], [1, 5] scale, not clamped
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rali_edge.errors import BundleError

HEAD_TENSORS = ("pca_mean", "pca_scale", "pca_components", "prototypes", "proto_scores", "logit_scale")
DEFAULT_LOGIT_SCALE = 1.0 / 0.07  # the official initialisation


class RaliHead(nn.Module):
    """PCA projection + softmax-weighted basis scores. `pca_mean` is a buffer (never trained)."""

    def __init__(
        self,
        pca_mean: torch.Tensor,
        pca_components: torch.Tensor,
        prototypes: torch.Tensor,
        proto_scores: torch.Tensor,
        pca_scale: torch.Tensor | None = None,
        logit_scale: torch.Tensor | float = DEFAULT_LOGIT_SCALE,
    ):
        super().__init__()
        m, d = pca_components.shape
        k = prototypes.shape[0]
        pca_scale = torch.ones(d) if pca_scale is None else pca_scale
        logit_scale = torch.as_tensor(logit_scale, dtype=torch.float32).reshape(())
        _check_shapes(pca_mean, pca_scale, pca_components, prototypes, proto_scores, m, d, k)
        f32 = dict(dtype=torch.float32)
        self.register_buffer("pca_mean", pca_mean.detach().clone().to(**f32))
        self.pca_scale = nn.Parameter(pca_scale.detach().clone().to(**f32))
        self.pca_components = nn.Parameter(pca_components.detach().clone().to(**f32))
        self.prototypes = nn.Parameter(prototypes.detach().clone().to(**f32))
        self.proto_scores = nn.Parameter(proto_scores.detach().clone().to(**f32))
        self.logit_scale = nn.Parameter(logit_scale.detach().clone())

    @property
    def embed_dim(self) -> int:
        return self.pca_components.shape[1]

    @property
    def pca_dim(self) -> int:
        return self.pca_components.shape[0]

    @property
    def num_basis(self) -> int:
        return self.prototypes.shape[0]

    def temperature(self) -> float:
        """tau = 1 / logit_scale.clamp(min=1e-6), as a Python float."""
        return 1.0 / max(float(self.logit_scale.detach()), 1e-6)

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """Backbone features [B, D] -> PCA coordinates [B, M], L2-normalised."""
        x = ((feats - self.pca_mean) / self.pca_scale.abs()) @ self.pca_components.T
        return F.normalize(x, dim=-1)

    def weights(self, feats: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the K basis vectors [B, K]."""
        x = self.project(feats)
        p = F.normalize(self.prototypes, dim=-1)
        tau = 1.0 / self.logit_scale.clamp(min=1e-6)
        return torch.softmax((x @ p.T) / tau, dim=-1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Backbone features [B, D] -> scores [B] on the [1, 5] scale (not clamped)."""
        return self.weights(feats) @ self.proto_scores

    def trainable(self, components: bool = False) -> list[nn.Parameter]:
        """Set requires_grad for the score-definition stage and return the parameters that train.

        pca_scale, prototypes, proto_scores and logit_scale always train; pca_components only when
        `components` is true (the official code allows both).
        """
        train = [self.pca_scale, self.prototypes, self.proto_scores, self.logit_scale]
        self.pca_components.requires_grad_(components)
        if components:
            train.append(self.pca_components)
        for p in train:
            p.requires_grad_(True)
        return train

    def tensors(self) -> dict[str, torch.Tensor]:
        """The six head tensors under their bare names (prefix them with 'head.' for a bundle)."""
        return {name: getattr(self, name).detach() for name in HEAD_TENSORS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> RaliHead:
        """Build from the `head.*` tensors of a bundle (prefix already stripped)."""
        missing = [n for n in HEAD_TENSORS if n not in tensors]
        if missing:
            raise BundleError(f"head tensors missing: {missing}")
        extra = sorted(set(tensors) - set(HEAD_TENSORS))
        if extra:
            raise BundleError(f"unknown head tensors: {extra}")
        return cls(
            pca_mean=tensors["pca_mean"],
            pca_components=tensors["pca_components"],
            prototypes=tensors["prototypes"],
            proto_scores=tensors["proto_scores"],
            pca_scale=tensors["pca_scale"],
            logit_scale=tensors["logit_scale"],
        )


def _check_shapes(mean, scale, comps, protos, scores, m: int, d: int, k: int) -> None:
    expected = {
        "pca_mean": (mean, (d,)),
        "pca_scale": (scale, (d,)),
        "prototypes": (protos, (k, m)),
        "proto_scores": (scores, (k,)),
    }
    bad = [f"{n} {list(t.shape)} != {list(s)}" for n, (t, s) in expected.items() if tuple(t.shape) != s]
    if comps.dim() != 2:
        bad.append(f"pca_components must be 2-D [M, D], got {list(comps.shape)}")
    if bad:
        raise BundleError("head tensor shapes do not fit together: " + "; ".join(bad))

