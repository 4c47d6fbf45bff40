"""Tiny random models for tests, demos and benchmarks: real code paths, random weights, built in < 1 s.

Nothing here is a trained model; bundles made here say so in their provenance notes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rali_edge.bundle import BackboneConfig, Provenance
from rali_edge.errors import ConfigError

TINY_WIDTH = 32
TINY_LAYERS = 2
TINY_HEADS = 2
TINY_CONTEXT = 16
CLIP_VOCAB = 49408  # the CLIP BPE vocabulary both tokenizers use


def _tiny_hf_config(image_size: int, patch_size: int) -> dict:
    from transformers import CLIPConfig

    text = dict(vocab_size=CLIP_VOCAB, hidden_size=TINY_WIDTH, intermediate_size=2 * TINY_WIDTH,
                num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS,
                max_position_embeddings=TINY_CONTEXT, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(hidden_size=TINY_WIDTH, intermediate_size=2 * TINY_WIDTH, num_hidden_layers=TINY_LAYERS,
                  num_attention_heads=TINY_HEADS, image_size=image_size, patch_size=patch_size)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY_WIDTH)
    return json.loads(cfg.to_json_string(use_diff=False))


def _tiny_open_clip_config(image_size: int, patch_size: int) -> dict:
    return {
        "embed_dim": TINY_WIDTH,
        "quick_gelu": True,
        "vision_cfg": {"image_size": image_size, "layers": TINY_LAYERS, "width": TINY_WIDTH,
                       "head_width": TINY_WIDTH // TINY_HEADS, "patch_size": patch_size},
        "text_cfg": {"context_length": TINY_CONTEXT, "vocab_size": CLIP_VOCAB, "width": TINY_WIDTH,
                     "heads": TINY_HEADS, "layers": TINY_LAYERS},
    }


def _tiny_hf(image_size: int, patch: int) -> BackboneConfig:
    return BackboneConfig(library="hf", name="rali-tiny-hf-clip", pretrained=None,
                          model_config=_tiny_hf_config(image_size, patch),
                          embed_dim=TINY_WIDTH, image_size=image_size)


def _tiny_open_clip(image_size: int, patch: int) -> BackboneConfig:
    from rali_edge.bundle import CLIP_MEAN, CLIP_STD
    from rali_edge.model.backbone import open_clip_backbone_config

    pcfg = {"size": image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "interpolation": "bicubic", "resize_mode": "shortest"}
    return open_clip_backbone_config("rali-tiny-open-clip", None, _tiny_open_clip_config(image_size, patch), pcfg)


_TINY = {"hf": _tiny_hf, "open_clip": _tiny_open_clip}


def tiny_backbone_config(library: str = "open_clip", image_size: int = 32) -> BackboneConfig:
    """A 2-layer, width-32 ViT CLIP (patch 8, or 16 for images >= 128 px) of either library."""
    if library not in _TINY:
        raise ConfigError(f"unknown backbone library {library!r}; known: {sorted(_TINY)}")
    patch = 16 if image_size >= 128 else 8
    if image_size % patch:
        raise ConfigError(f"tiny backbone: image_size {image_size} must be a multiple of the patch size {patch}")
    return _TINY[library](image_size, patch)


def _small_clip(name: str, vision_cfg: dict, image_size: int, context: int, embed_dim: int, text_width: int,
                text_layers: int) -> BackboneConfig:
    """An open_clip CLIP config of `vision_cfg` and a small text tower (CLIP BPE, CLIP mean/std, bicubic)."""
    from rali_edge.bundle import CLIP_MEAN, CLIP_STD
    from rali_edge.model.backbone import open_clip_backbone_config

    model_cfg = {
        "embed_dim": embed_dim,
        "quick_gelu": True,
        "vision_cfg": {"image_size": image_size, **vision_cfg},
        "text_cfg": {"context_length": context, "vocab_size": CLIP_VOCAB, "width": text_width,
                     "heads": TINY_HEADS, "layers": text_layers},
    }
    pcfg = {"size": image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "interpolation": "bicubic", "resize_mode": "shortest"}
    return open_clip_backbone_config(name, None, model_cfg, pcfg)


def tiny_resnet_backbone_config(image_size: int = 64, width: int = 16, context: int = 77, embed_dim: int = TINY_WIDTH,
                                text_width: int = TINY_WIDTH, text_layers: int = TINY_LAYERS) -> BackboneConfig:
    """A small open_clip CLIP whose image tower is a ModifiedResNet (stages of 1 block, base `width`).

    CNNs pick up low-level quality cues (blur, noise, blocking) from little data far better than a
    tiny ViT, which memorises image content instead. Its attention pool has a positional embedding
    of the final grid, so it takes `image_size` input only. Export keeps an explicit normalisation
    layer for it (its stem conv is padded, so nothing folds exactly).
    """
    if image_size % 32:
        raise ConfigError(f"tiny ResNet: image_size {image_size} must be a multiple of 32")
    vision = {"layers": [1, 1, 1, 1], "width": width, "head_width": 16}
    return _small_clip("rali-tiny-open-clip-rn", vision, image_size, context, embed_dim, text_width, text_layers)


def tiny_timm_backbone_config(model_name: str = "test_resnet", image_size: int = 128, context: int = 77,
                              embed_dim: int = TINY_WIDTH, text_width: int = TINY_WIDTH,
                              text_layers: int = TINY_LAYERS) -> BackboneConfig:
    """A small open_clip CLIP whose image tower is the timm model `model_name`, random weights, with
    global average pooling and a linear projection (open_clip's TimmModel).

    Fully convolutional up to the average pool, so the tower takes crops of any size: alignment can
    train it on random crops (`AlignConfig.random_crop`) and score whole images. The default,
    timm's `test_resnet` (0.4 M parameters: a deep 3-conv stem of 8-8-16 channels, then one
    basic or bottleneck block per stage), is the smallest ResNet timm registers.
    """
    import timm

    if not timm.is_model(model_name):
        raise ConfigError(f"timm has no model named {model_name!r} (see timm.list_models())")
    vision = {"timm_model_name": model_name, "timm_pool": "avg", "timm_proj": "linear"}
    return _small_clip(f"rali-tiny-open-clip-timm-{model_name}", vision, image_size, context, embed_dim,
                       text_width, text_layers)


def random_head(embed_dim: int, pca_dim: int, num_basis: int, generator: torch.Generator):
    """A random head whose basis scores spread evenly over [1, 5] (so scores vary with the image)."""
    from rali_edge.model.head import RaliHead

    if pca_dim > embed_dim:
        raise ConfigError(f"pca_dim ({pca_dim}) cannot exceed the embedding size ({embed_dim})")
    comps, _ = torch.linalg.qr(torch.randn(embed_dim, pca_dim, generator=generator))
    return RaliHead(
        pca_mean=0.1 * torch.randn(embed_dim, generator=generator),
        pca_components=comps.T.contiguous(),
        prototypes=torch.randn(num_basis, pca_dim, generator=generator),
        proto_scores=torch.linspace(1.0, 5.0, num_basis),
        pca_scale=1.0 + 0.1 * torch.rand(embed_dim, generator=generator),
    )


def make_random_scorer(library: str = "open_clip", pca_dim: int = 8, num_basis: int = 6, seed: int = 0,
                       image_size: int = 32, backbone_config: BackboneConfig | None = None):
    """(RaliScorer, PreprocessConfig) with random weights, deterministic for a seed.

    `backbone_config` overrides the tiny ViT of `library` (e.g. `tiny_resnet_backbone_config()`).
    """
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.scorer import RaliScorer

    cfg = backbone_config or tiny_backbone_config(library, image_size)
    torch.manual_seed(seed)
    backbone = build_backbone(cfg)
    gen = torch.Generator().manual_seed(seed)
    head = random_head(cfg.embed_dim, pca_dim, num_basis, gen)
    return RaliScorer(backbone, head).eval(), backbone.default_preprocess()


def make_random_bundle(out_dir: str | os.PathLike[str], library: str = "open_clip", pca_dim: int = 8,
                       num_basis: int = 6, seed: int = 0, image_size: int = 32,
                       backbone_config: BackboneConfig | None = None) -> Path:
    """Save a tiny random-weight scorer bundle at out_dir (for tests, demos and benchmarks)."""
    scorer, preprocess = make_random_scorer(library, pca_dim, num_basis, seed, image_size, backbone_config)
    prov = Provenance.now(seeds=[seed], notes={"random_weights": True,
                                                "made_by": "rali_edge.model.tiny.make_random_bundle"})
    return scorer.save(out_dir, preprocess, prov)
