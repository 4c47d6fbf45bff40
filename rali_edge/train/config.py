"""The training config: one TOML file with a section per stage, each a frozen dataclass.

    [data]      train_meta, image_root, triplets (paths relative to the TOML file's folder)
    [backbone]  source = "pretrained" | "tiny", library, name, pretrained, image_size
    [align]     rali_edge.train.align.AlignConfig
    [compress]  rali_edge.train.compress.CompressConfig
    [fit]       rali_edge.train.fit.FitConfig

Every field can also be set on the command line as `--set section.field=value` (value parsed as
TOML, so `--set align.lr=2e-5`, `--set data.train_meta=["a.json"]`). The file is read by
`rali_edge.config_io`: unknown sections or fields and values of the wrong type are ConfigErrors naming
the file and key (`align.lr`); nothing is ignored. Ranges are checked by each section's __post_init__.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rali_edge import config_io
from rali_edge.errors import ConfigError
from rali_edge.train.align import AlignConfig
from rali_edge.train.compress import CompressConfig
from rali_edge.train.fit import FitConfig


@dataclass(frozen=True)
class DataConfig:
    train_meta: tuple[str, ...] = ()  # Data-DeQA-Score meta JSON files with gt_score_norm
    image_root: str = ""
    triplets: str = ""  # the teacher's triplets JSONL (image, gt_score_norm, seed, text, ...)


BACKBONE_SOURCES = ("pretrained", "tiny", "random")


@dataclass(frozen=True)
class BackboneSpec:
    # "pretrained": real weights from `name` (hub name or local path) and `pretrained` (open_clip tag);
    # "tiny": rali_edge.model.tiny's random-weight test model of `library` at `image_size`;
    # "random": random weights of the architecture in `config_file` (a bundle config.json "backbone"
    # section, i.e. a BackboneConfig as JSON). Random weights are seeded with align.seed.
    source: str = "pretrained"
    library: str = "hf"  # "hf" (transformers CLIPModel) or "open_clip"
    name: str = "openai/clip-vit-large-patch14-336"
    pretrained: str = ""  # open_clip pretrained tag; "" for none
    image_size: int = 32  # tiny only
    config_file: str = ""  # random only

    def __post_init__(self) -> None:
        if self.source not in BACKBONE_SOURCES:
            raise ConfigError(f"backbone.source {self.source!r} is not one of {list(BACKBONE_SOURCES)}")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    align: AlignConfig = field(default_factory=AlignConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "backbone": BackboneSpec,
    "align": AlignConfig,
    "compress": CompressConfig,
    "fit": FitConfig,
}


def section_from_dict(cls: type, values: dict, where: str) -> Any:
    """Build one section dataclass from a dict, refusing unknown keys and wrong types."""
    return config_io.from_dict(cls, values, where)


def _apply_override(tables: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"--set {item!r}: expected section.field=value (e.g. align.lr=2e-5)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: --set backbone.library=open_clip
    tables.setdefault(section, {})[name] = value


def _resolve_paths(data: DataConfig, base: Path) -> DataConfig:
    def fix(p: str) -> str:
        return str((base / p).resolve()) if p else p

    return DataConfig(train_meta=tuple(fix(p) for p in data.train_meta), image_root=fix(data.image_root),
                      triplets=fix(data.triplets))


def _resolve_backbone(spec: BackboneSpec, base: Path) -> BackboneSpec:
    if not spec.config_file:
        return spec
    return dataclasses.replace(spec, config_file=str((base / spec.config_file).resolve()))


def config_from_dict(tables: dict, where: str = "config",
                     base_dir: str | os.PathLike[str] | None = None) -> TrainConfig:
    """The whole config from parsed TOML tables; with base_dir, relative paths are resolved against it."""
    config = config_io.from_dict(TrainConfig, tables, where)
    if base_dir is None:
        return config
    base = Path(base_dir)
    return dataclasses.replace(config, data=_resolve_paths(config.data, base),
                               backbone=_resolve_backbone(config.backbone, base))


def load_train_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training TOML (or only the defaults when path is None) and apply `--set` overrides."""
    tables: dict = {}
    where, base = "command line", Path.cwd()
    if path is not None:
        tables = config_io.read_file(path, (".toml",), what="training config")
        where, base = str(path), Path(path).parent
    for item in overrides:
        _apply_override(tables, item)
    return config_from_dict(tables, where, base_dir=base)


def check_data(config: TrainConfig, stage: str) -> None:
    """The data paths a stage needs are set (checked before any work starts)."""
    need = {"align": ("triplets", "image_root"), "compress": ("train_meta", "image_root"),
            "fit": ("train_meta", "image_root")}[stage]
    missing = [n for n in need if not getattr(config.data, n)]
    if missing:
        raise ConfigError(f"stage {stage} needs [data] {', '.join(missing)} in the training config")
