"""The backbone protocol shared by both adapters (see backbone.py for the registry)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from rali_edge.bundle import BackboneConfig, PreprocessConfig


class Backbone(nn.Module):
    """Protocol: `image_encoder()` maps normalized pixels [B,3,H,W] to features [B, D]."""

    config: BackboneConfig

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder()(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_image(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def image_encoder(self) -> nn.Module:
        raise NotImplementedError

    def text_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter outside the image encoder (text tower, CLIP's own logit scale)."""
        visual = {id(p) for p in self.image_encoder().parameters()}
        return (p for p in self.parameters() if id(p) not in visual)

    def patch_embedding_name(self) -> str | None:
        """Dotted name of the padding-free patch Conv2d inside image_encoder(), into which export folds
        the input normalisation exactly; None when the tower has none (e.g. a ResNet stem)."""
        raise NotImplementedError

    def default_preprocess(self) -> PreprocessConfig:
        raise NotImplementedError
