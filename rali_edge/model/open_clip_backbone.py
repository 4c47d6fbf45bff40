"""open_clip adapter (CLIP / CustomTextCLIP). Image embedding = encode_image(normalize=False).

`BackboneConfig.model_config` uses open_clip's own hub layout {"model_cfg": ..., "preprocess_cfg": ...};
the tokenizer is `open_clip.get_tokenizer` (offline for the default CLIP BPE).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from rali_edge.bundle import CLIP_MEAN, CLIP_STD, BackboneConfig, PreprocessConfig
from rali_edge.errors import ConfigError, UnsupportedOptionError
from rali_edge.model.backbone_base import Backbone


class OpenClipBackbone(Backbone):
    """open_clip CLIP / CustomTextCLIP. State dict keys are the open_clip model's (`model.visual.*`, ...).

    `config.model_config` is open_clip's own hub config layout: {"model_cfg": ..., "preprocess_cfg": ...}.
    """

    def __init__(self, model: nn.Module, config: BackboneConfig):
        super().__init__()
        self.model = model
        self.config = config
        self._tokenizer = None

    def image_encoder(self) -> nn.Module:
        return self.model.visual

    def patch_embedding_name(self) -> str | None:
        from open_clip.transformer import VisionTransformer

        # Folding mean/std into a padded stem conv (ResNets, timm stems) is not exact: only ViT patch
        # convs qualify; for the others export keeps an explicit normalisation layer.
        return "conv1" if isinstance(self.model.visual, VisionTransformer) else None

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            import open_clip

            ctx = self.config.model_config["model_cfg"]["text_cfg"].get("context_length", 77)
            schema, _ = open_clip.factory.parse_model_name(self.config.name)
            known = schema is not None or open_clip.get_model_config(self.config.name) is not None
            # A model built from a config dict (e.g. tiny) has no registered name: the default CLIP BPE.
            self._tokenizer = (open_clip.get_tokenizer(self.config.name, context_length=ctx) if known
                               else open_clip.SimpleTokenizer(context_length=ctx))
        device = next(self.model.parameters()).device
        return self.model.encode_text(self._tokenizer(list(texts)).to(device), normalize=False)

    def default_preprocess(self) -> PreprocessConfig:
        return preprocess_from_open_clip(self.config.model_config.get("preprocess_cfg", {}),
                                         self.config.image_size, self.config.name)


_OPEN_CLIP_INTERP = {"bicubic": "bicubic", "bilinear": "bilinear"}


def preprocess_from_open_clip(pcfg: dict, image_size: int, name: str) -> PreprocessConfig:
    mode = pcfg.get("resize_mode", "shortest")
    if mode != "shortest":
        raise UnsupportedOptionError(
            f"open_clip model {name!r} uses resize_mode {mode!r}; rali-edge preprocessing implements "
            "only 'shortest' (resize shortest side, centre crop)"
        )
    interp = pcfg.get("interpolation", "bicubic")
    if interp not in _OPEN_CLIP_INTERP:
        raise UnsupportedOptionError(f"open_clip model {name!r}: interpolation {interp!r} is not supported")
    return PreprocessConfig(
        image_size=image_size,
        resize=image_size,
        interpolation=_OPEN_CLIP_INTERP[interp],
        mean=tuple(float(x) for x in pcfg.get("mean", CLIP_MEAN)),
        std=tuple(float(x) for x in pcfg.get("std", CLIP_STD)),
    )


def _square(size, where: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise UnsupportedOptionError(f"{where}: non-square image size {size!r} is not supported")
        size = size[0]
    return int(size)


def open_clip_model_from_cfg(model_cfg: dict) -> nn.Module:
    """Instantiate an open_clip model from its architecture dict (random weights, nothing downloaded)."""
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(model_cfg)
    if "multimodal_cfg" in cfg:
        raise UnsupportedOptionError("open_clip CoCa models (multimodal_cfg) are not supported as backbones")
    is_hf_text = "hf_model_name" in cfg.get("text_cfg", {})
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    if is_hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or is_hf_text
    model_class = CustomTextCLIP if custom_text else CLIP
    return model_class(**cfg)


def open_clip_backbone_config(name: str, pretrained: str | None, model_cfg: dict, preprocess_cfg: dict) -> BackboneConfig:
    image_size = _square(model_cfg["vision_cfg"].get("image_size", 224), f"open_clip model {name!r}")
    pcfg = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()}
    return BackboneConfig(
        library="open_clip",
        name=name,
        pretrained=pretrained,
        model_config={"model_cfg": copy.deepcopy(model_cfg), "preprocess_cfg": pcfg},
        embed_dim=int(model_cfg["embed_dim"]),
        image_size=image_size,
    )


def _build_open_clip(cfg: BackboneConfig) -> OpenClipBackbone:
    if not cfg.model_config or "model_cfg" not in cfg.model_config:
        raise ConfigError(f"open_clip backbone {cfg.name!r}: model_config needs a 'model_cfg' entry to rebuild")
    return OpenClipBackbone(open_clip_model_from_cfg(cfg.model_config["model_cfg"]).eval(), cfg)


def _open_clip_model_cfg(name: str) -> dict:
    import open_clip

    schema, identifier = open_clip.factory.parse_model_name(name)
    try:
        if schema == "local-dir":
            path = Path(identifier) / "open_clip_config.json"
            return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
        if schema == "hf-hub":
            return open_clip.factory._get_hf_config(identifier)["model_cfg"]
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"cannot read the open_clip config of {name!r}: {type(e).__name__}: {e}") from e
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    return cfg


def load_open_clip_backbone(name: str, pretrained: str | None) -> OpenClipBackbone:
    """open_clip model name + pretrained tag or checkpoint file, or an 'hf-hub:' / 'local-dir:' name."""
    import open_clip

    model_cfg = _open_clip_model_cfg(name)
    schema, _ = open_clip.factory.parse_model_name(name)
    if schema is None and pretrained is None:
        raise ConfigError(f"cannot load open_clip model {name!r}: no pretrained tag or checkpoint file given "
                          f"(tags: {open_clip.list_pretrained_tags_by_model(name)})")
    try:
        # require_pretrained: never hand back random weights as if they were the named model
        model = open_clip.create_model(name, pretrained=pretrained, require_pretrained=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise ConfigError(f"cannot load open_clip model {name!r} (pretrained={pretrained!r}): {e}") from e
    preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
    return OpenClipBackbone(model.eval(), open_clip_backbone_config(name, pretrained, model_cfg, preprocess_cfg))
