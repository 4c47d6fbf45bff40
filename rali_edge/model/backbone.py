"""Image/text encoders behind one small protocol, with two adapters: Hugging Face CLIP and open_clip.

The image embedding is the projected pooled output (HF `get_image_features`, open_clip
`encode_image(normalize=False)`), NOT L2-normalised, as in the official RALI code. Each adapter
records its whole architecture in `BackboneConfig.model_config`, so `build_backbone(cfg)` rebuilds
it offline and a bundle's safetensors fill the weights.

Tokenizers (text is only needed for alignment):
- HF: a transformers `CLIPTokenizer` built from the CLIP BPE merges that open_clip ships
  (`bpe_simple_vocab_16e6.txt.gz`). This is the vocabulary of every OpenAI CLIP checkpoint on the
  hub (49,408 tokens, `<|startoftext|>` 49406, `<|endoftext|>` 49407), so hub models, local
  folders and random tiny models all tokenize offline and identically.
- open_clip: `open_clip.get_tokenizer(name, context_length)`, which is offline for the default BPE.
"""

from __future__ import annotations

from rali_edge.bundle import BackboneConfig
from rali_edge.errors import ConfigError
from rali_edge.model.backbone_base import Backbone
from rali_edge.model.hf_clip import (  # noqa: F401  (re-exported)
    HFClipBackbone,
    _build_hf,
    clip_tokenizer,
    load_hf_backbone,
    preprocess_from_hf_dict,
)
from rali_edge.model.open_clip_backbone import (  # noqa: F401  (re-exported)
    OpenClipBackbone,
    _build_open_clip,
    load_open_clip_backbone,
    open_clip_backbone_config,
    open_clip_model_from_cfg,
    preprocess_from_open_clip,
)

__all__ = ["Backbone", "BACKBONES", "HFClipBackbone", "OpenClipBackbone", "build_backbone",
           "load_pretrained_backbone", "clip_tokenizer", "preprocess_from_hf_dict", "open_clip_backbone_config"]


BACKBONES = {"hf": HFClipBackbone, "open_clip": OpenClipBackbone}
_BUILDERS = {"hf": _build_hf, "open_clip": _build_open_clip}


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """The architecture from cfg.model_config with random weights (load a state dict after)."""
    if cfg.library not in _BUILDERS:
        raise ConfigError(f"unknown backbone library {cfg.library!r}; known: {sorted(_BUILDERS)}")
    return _BUILDERS[cfg.library](cfg)


def load_pretrained_backbone(library: str, name: str, pretrained: str | None = None) -> Backbone:
    """Real weights: HF hub name or local save_pretrained folder; open_clip name + tag or checkpoint file."""
    loaders = {"hf": lambda: load_hf_backbone(name), "open_clip": lambda: load_open_clip_backbone(name, pretrained)}
    if library not in loaders:
        raise ConfigError(f"unknown backbone library {library!r}; known: {sorted(loaders)}")
    if library == "hf" and pretrained is not None:
        raise ConfigError("hf backbones take no pretrained tag: pass the hub name or folder as the name")
    return loaders[library]()
