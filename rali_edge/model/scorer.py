"""RaliScorer (backbone + head, a torch module) and Scorer (what `rali_edge.load_scorer` returns)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from rali_edge.bundle import Bundle, BundleConfig, HeadConfig, PreprocessConfig, Provenance, load_bundle, save_bundle
from rali_edge.errors import BundleError, ConfigError
from rali_edge.model.backbone import Backbone, build_backbone
from rali_edge.model.head import RaliHead
from rali_edge.model.preprocess import normalize, preprocess_images


class RaliScorer(nn.Module):
    """Normalized pixels [B,3,H,W] -> scores [B] with the official RALI formula."""

    def __init__(self, backbone: Backbone, head: RaliHead):
        super().__init__()
        if backbone.config.embed_dim != head.embed_dim:
            raise ConfigError(f"backbone embeds {backbone.config.embed_dim}-d features, head expects {head.embed_dim}")
        self.backbone = backbone
        self.head = head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.encode_image(pixels))

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor for model.safetensors: `backbone.*` (the backbone's state dict) and `head.*`."""
        out = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        out.update({f"head.{k}": v for k, v in self.head.tensors().items()})
        return out

    def bundle_config(self, preprocess: PreprocessConfig, provenance: Provenance) -> BundleConfig:
        head = HeadConfig(embed_dim=self.head.embed_dim, pca_dim=self.head.pca_dim,
                          num_basis=self.head.num_basis, temperature=self.head.temperature())
        return BundleConfig(backbone=self.backbone.config, preprocess=preprocess, head=head, provenance=provenance)

    def save(self, out_dir: str | os.PathLike[str], preprocess: PreprocessConfig, provenance: Provenance) -> Path:
        """Write a bundle (atomic): config.json + model.safetensors + manifest.json."""
        return save_bundle(out_dir, self.bundle_config(preprocess, provenance), self.tensors())

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> RaliScorer:
        backbone = build_backbone(bundle.config.backbone)
        try:
            backbone.load_state_dict(bundle.backbone_tensors(), strict=True)
        except RuntimeError as e:  # missing / unexpected keys or shape mismatches
            raise BundleError(f"{bundle.path}: backbone tensors do not fit the configured architecture: {e}") from e
        return cls(backbone, RaliHead.from_tensors(bundle.head_tensors())).eval()


@dataclass
class ScoreResult:
    paths: list[str]  # the inputs that were scored, in input order
    scores: np.ndarray  # float [len(paths)], [1, 5] scale
    failures: list  # list[rali_edge.data.images.BadImage]: inputs that could not be read, with reasons


ImagesInput = torch.Tensor | Sequence[str | os.PathLike | Image.Image] | str | os.PathLike | Image.Image


class Scorer:
    """A loaded bundle, ready to score images.

    `score(images)` and `embed(images)` take a path, a PIL image, a list of either, or a tensor
    [B,3,H,W]: a float tensor is taken as already preprocessed (resized, cropped and normalized
    with this bundle's mean/std); a uint8 tensor as resized and cropped RGB pixels that still need
    normalizing. Paths that cannot be read raise ImageLoadError here; `score_files` reports them instead.
    """

    def __init__(self, scorer: RaliScorer, bundle: Bundle, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.scorer = scorer.to(self.device).eval()
        self.bundle = bundle
        self.config: BundleConfig = bundle.config

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.config.preprocess

    def _batches(self, images: ImagesInput, batch_size: int) -> Iterator[torch.Tensor]:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(images, torch.Tensor):
            pixels = images if images.dim() == 4 else images.unsqueeze(0)
            size = self.preprocess.image_size
            if pixels.shape[1:] != (3, size, size):
                raise ConfigError(f"expected a tensor [B,3,{size},{size}], got {list(images.shape)}")
            for i in range(0, pixels.shape[0], batch_size):
                chunk = pixels[i:i + batch_size]
                yield normalize(chunk, self.preprocess) if chunk.dtype == torch.uint8 else chunk.float()
            return
        items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
        for i in range(0, len(items), batch_size):
            yield preprocess_images([_open(x) for x in items[i:i + batch_size]], self.preprocess)

    @torch.no_grad()
    def _run(self, fn, images: ImagesInput, batch_size: int) -> np.ndarray:
        outs = [fn(px.to(self.device)).float().cpu() for px in self._batches(images, batch_size)]
        return torch.cat(outs).numpy() if outs else np.zeros((0,), dtype=np.float32)

    def score(self, images: ImagesInput, batch_size: int = 32) -> np.ndarray:
        """Scores [N] (float32, [1, 5] scale, not clamped)."""
        return self._run(self.scorer, images, batch_size)

    def embed(self, images: ImagesInput, batch_size: int = 32) -> np.ndarray:
        """Backbone embeddings [N, D] (projected, not L2-normalised)."""
        out = self._run(self.scorer.backbone.encode_image, images, batch_size)
        return out.reshape(-1, self.config.backbone.embed_dim)

    def score_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                    progress: bool = False) -> ScoreResult:
        """Score files; unreadable ones are reported in `failures` and the rest are still scored."""
        from tqdm import tqdm

        from rali_edge.data.images import load_images

        paths = [str(p) for p in paths]
        scored: list[str] = []
        scores: list[np.ndarray] = []
        failures = []
        with tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress) as bar:
            for start in range(0, len(paths), batch_size):
                chunk = paths[start:start + batch_size]
                good, bad = load_images(chunk)
                failures.extend(bad)
                if good:
                    scores.append(self.score([img for _, img in good], batch_size=batch_size))
                    scored.extend(chunk[i] for i, _ in good)
                bar.update(len(chunk))
        arr = np.concatenate(scores) if scores else np.zeros((0,), dtype=np.float32)
        return ScoreResult(paths=scored, scores=arr, failures=failures)


def _open(item: str | os.PathLike | Image.Image) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        from rali_edge.data.images import load_image

        return load_image(item)
    raise ConfigError(f"cannot score a {type(item).__name__}: pass paths, PIL images or a tensor")


def load_scorer(bundle_dir: str | os.PathLike[str], device: str = "cpu") -> Scorer:
    """Load and verify a bundle, rebuild its model offline, and return a Scorer."""
    bundle = load_bundle(bundle_dir)
    return Scorer(RaliScorer.from_bundle(bundle), bundle, device=device)
