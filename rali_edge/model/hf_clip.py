"""Hugging Face CLIPModel adapter. Image embedding = get_image_features (projected pooled output).

Tokenizer: a transformers `CLIPTokenizer` built from the CLIP BPE merges that open_clip ships
(`bpe_simple_vocab_16e6.txt.gz`). This is the vocabulary of every OpenAI CLIP checkpoint on the hub
(49,408 tokens, `<|startoftext|>` 49406, `<|endoftext|>` 49407), so hub models, local folders and
random tiny models all tokenize offline and identically.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
from pathlib import Path

import torch
from torch import nn

from rali_edge.bundle import CLIP_MEAN, CLIP_STD, BackboneConfig, PreprocessConfig
from rali_edge.errors import ConfigError, UnsupportedOptionError
from rali_edge.model.backbone_base import Backbone


class _HFImageEncoder(nn.Module):
    """vision_model + visual_projection: the same computation as CLIPModel.get_image_features."""

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Module):
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixels).pooler_output
        return self.visual_projection(pooled)


@functools.lru_cache(maxsize=1)
def _clip_bpe_vocab() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """OpenAI CLIP's vocabulary and merges, rebuilt from open_clip's packaged BPE file."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = tuple(tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1])  # CLIP's own slice
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def clip_tokenizer(max_length: int):
    """A transformers CLIPTokenizer with the OpenAI CLIP vocabulary, built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe_vocab()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=max_length)


class HFClipBackbone(Backbone):
    """transformers CLIPModel. State dict keys are CLIPModel's (`model.vision_model.*`, ...)."""

    def __init__(self, model: nn.Module, config: BackboneConfig, preprocess: PreprocessConfig | None = None):
        super().__init__()
        self.model = model
        self.config = config
        self._preprocess = preprocess
        # Not registered as a submodule: it shares the CLIPModel's modules, so the state dict stays
        # CLIPModel's own keys with no duplicates.
        object.__setattr__(self, "_image_encoder", _HFImageEncoder(model.vision_model, model.visual_projection))
        self._tokenizer = None

    def image_encoder(self) -> nn.Module:
        return self._image_encoder

    def patch_embedding_name(self) -> str:
        return "vision_model.embeddings.patch_embedding"

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        max_len = self.model.config.text_config.max_position_embeddings
        if self._tokenizer is None:
            self._tokenizer = clip_tokenizer(max_len)
        tok = self._tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        device = next(self.model.parameters()).device
        out = self.model.get_text_features(input_ids=tok["input_ids"].to(device),
                                           attention_mask=tok["attention_mask"].to(device))
        # transformers 5.x returns a ModelOutput whose pooler_output is projected; 4.x a tensor
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def default_preprocess(self) -> PreprocessConfig:
        if self._preprocess is not None:
            return self._preprocess
        size = self.config.image_size
        return PreprocessConfig(image_size=size, resize=size, mean=CLIP_MEAN, std=CLIP_STD)


def _hf_backbone_config(model: nn.Module, name: str) -> BackboneConfig:
    cfg = model.config
    return BackboneConfig(
        library="hf",
        name=name,
        pretrained=None,
        model_config=json.loads(cfg.to_json_string(use_diff=False)),
        embed_dim=int(cfg.projection_dim),
        image_size=int(cfg.vision_config.image_size),
    )


def _build_hf(cfg: BackboneConfig) -> HFClipBackbone:
    from transformers import CLIPConfig, CLIPModel

    if not cfg.model_config:
        raise ConfigError(f"hf backbone {cfg.name!r}: model_config is empty, cannot rebuild it offline")
    model = CLIPModel(CLIPConfig.from_dict(copy.deepcopy(cfg.model_config)))
    return HFClipBackbone(model.eval(), cfg)


_HF_RESAMPLE = {3: "bicubic", 2: "bilinear"}  # PIL resample codes used in preprocessor_config.json


def preprocess_from_hf_dict(d: dict, where: str) -> PreprocessConfig:
    """PreprocessConfig from a Hugging Face preprocessor_config.json (CLIPImageProcessor fields)."""
    size, crop = d.get("size", 224), d.get("crop_size", 224)
    resize = size.get("shortest_edge") if isinstance(size, dict) else size
    crop_hw = (crop.get("height"), crop.get("width")) if isinstance(crop, dict) else (crop, crop)
    problems = []
    if not isinstance(resize, int):
        problems.append(f"size {size!r} is not a shortest_edge resize")
    if crop_hw[0] != crop_hw[1] or not isinstance(crop_hw[0], int):
        problems.append(f"crop_size {crop!r} is not square")
    if d.get("do_center_crop", True) is False or d.get("do_resize", True) is False:
        problems.append("resize and centre crop must both be enabled")
    if d.get("do_rescale", True) is False or d.get("do_normalize", True) is False:
        problems.append("rescale and normalize must both be enabled")
    resample = d.get("resample", 3)
    if resample not in _HF_RESAMPLE:
        problems.append(f"resample {resample!r} is not bicubic (3) or bilinear (2)")
    if problems:
        raise UnsupportedOptionError(f"{where}: unsupported preprocessing: " + "; ".join(problems))
    return PreprocessConfig(
        image_size=crop_hw[0],
        resize=resize,
        interpolation=_HF_RESAMPLE[resample],
        mean=tuple(float(x) for x in d.get("image_mean", CLIP_MEAN)),
        std=tuple(float(x) for x in d.get("image_std", CLIP_STD)),
    )


def _read_hf_preprocessor(name: str) -> dict | None:
    local = Path(name)
    if local.is_dir():
        f = local / "preprocessor_config.json"
        return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(name, "preprocessor_config.json")).read_text(encoding="utf-8"))


def load_hf_backbone(name: str) -> HFClipBackbone:
    """A CLIPModel from a hub name or a local save_pretrained folder, with its preprocessing."""
    from transformers import CLIPModel

    try:
        model = CLIPModel.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load Hugging Face CLIPModel {name!r}: {e}") from e
    proc = _read_hf_preprocessor(name)
    cfg = _hf_backbone_config(model, name)
    # A folder without preprocessor_config.json: CLIP's processors resize and crop to the model's size.
    preprocess = preprocess_from_hf_dict(proc, f"{name}/preprocessor_config.json") if proc is not None else None
    return HFClipBackbone(model.eval(), cfg, preprocess)
