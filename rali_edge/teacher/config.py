"""Teacher training configs: dataclasses that are also the TOML/YAML file format.

Defaults follow the paper / Q-Insight (REFERENCE section 3). Files are read by `rali_edge.config_io`:
unknown keys are errors (a typo never silently falls back to a default) and so are values of the
wrong type. Each dataclass checks its values in __post_init__ through `validate()`, which the trainers
call again because these configs are mutable. `trl` holds extra TRL config fields passed through as they are;
TRL itself rejects unknown ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rali_edge import config_io
from rali_edge.errors import ConfigError

DEFAULT_TEACHER = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass
class ImageBounds:
    """Pixel bounds for Qwen's image processor (None keeps the model's own)."""

    min_pixels: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"images.min_pixels ({self.min_pixels}) must be <= images.max_pixels ({self.max_pixels})")


@dataclass
class GRPOTeacherConfig:
    output_dir: str
    image_root: str
    score_meta: list[str] = field(default_factory=list)  # Data-DeQA-Score meta files (gt_score_norm)
    degradation_meta: list[str] = field(default_factory=list)  # image, distortion_class, severity
    model: str = DEFAULT_TEACHER  # hub name or local path
    model_subfolder: str = ""  # e.g. "score_degradation" for ByteDance/Q-Insight
    score_threshold: float = 0.35
    num_generations: int = 8
    beta: float = 1e-3
    learning_rate: float = 1e-6
    lr_end: float = 1e-9  # linear decay from learning_rate to lr_end (paper: 1e-6 -> 1e-9)
    num_train_epochs: float = 10.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8  # completions per device per step (a multiple of num_generations)
    gradient_accumulation_steps: int = 2
    max_completion_length: int = 256
    temperature: float = 1.0
    bf16: bool | None = None  # None: on when CUDA is available
    gradient_checkpointing: bool = True
    use_vllm: bool = False
    vllm_mode: str = "colocate"  # "colocate" or "server" (`trl vllm-serve` on other GPUs)
    logging_steps: int = 1
    save_steps: int = 500
    seed: int = 42
    images: ImageBounds = field(default_factory=ImageBounds)
    trl: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.score_meta and not self.degradation_meta:
            raise ConfigError("GRPO config: give at least one of score_meta, degradation_meta")
        if self.num_generations < 2:
            raise ConfigError("GRPO config: num_generations must be >= 2 (advantages are relative to the group)")
        if self.per_device_train_batch_size % self.num_generations:
            raise ConfigError(
                f"GRPO config: per_device_train_batch_size ({self.per_device_train_batch_size}) must be a multiple "
                f"of num_generations ({self.num_generations})"
            )
        if self.score_threshold <= 0 or self.learning_rate <= 0 or self.beta < 0:
            raise ConfigError("GRPO config: score_threshold and learning_rate must be > 0, beta >= 0")
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(f"GRPO config: vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")


@dataclass
class RACTConfig:
    """Cross-domain SFT on (image, reasoning text) pairs (paper appendix C, Table 5)."""

    output_dir: str
    image_root: str
    triplets: list[str]  # teacher describe outputs for several datasets
    model: str = DEFAULT_TEACHER  # the single-domain RL-trained teacher
    model_subfolder: str = ""
    score_triplets: list[str] = field(default_factory=list)  # the ONE dataset whose scores are used
    train: str = "vision"  # "vision": vision tower only, LLM frozen; "vision+llm": both
    learning_rate: float = 1e-6
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int | None = None  # None: no truncation (image tokens must never be cut)
    bf16: bool | None = None
    gradient_checkpointing: bool = True
    logging_steps: int = 1
    save_steps: int = 500
    seed: int = 42
    images: ImageBounds = field(default_factory=ImageBounds)
    trl: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.train not in TRAIN_CHOICES:
            raise ConfigError(f"RACT config: train must be one of {', '.join(TRAIN_CHOICES)}, got {self.train!r}")
        if not self.triplets:
            raise ConfigError("RACT config: give at least one triplets file")
        if self.learning_rate <= 0:
            raise ConfigError("RACT config: learning_rate must be > 0")


TRAIN_CHOICES = ("vision", "vision+llm")

C = TypeVar("C")

SUFFIXES = (".toml", ".yaml", ".yml")
# Settings that hold a list of files; a single path string is taken as a one-file list.
_FILE_LISTS = ("score_meta", "degradation_meta", "triplets", "score_triplets")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    return config_io.read_file(path, SUFFIXES)


def config_from_dict(cls: type[C], data: dict[str, Any], where: str) -> C:
    """Build a config dataclass; unknown or missing keys and wrong types raise ConfigError naming `where`."""
    if isinstance(data, dict):
        data = {k: [v] if k in _FILE_LISTS and isinstance(v, str) else v for k, v in data.items()}
    return config_io.from_dict(cls, data, where)


def load_config(cls: type[C], path: str | os.PathLike[str]) -> C:
    return config_from_dict(cls, read_config_file(path), str(path))


def merge_trl_overrides(kwargs: dict[str, Any], overrides: dict[str, Any], what: str) -> dict[str, Any]:
    """Our settings plus the [trl] pass-through table; a key set in both places is an error."""
    clash = sorted(set(overrides) & set(kwargs))
    if clash:
        raise ConfigError(f"{what} config: set {', '.join(clash)} at the top level, not under [trl]")
    return {**kwargs, **overrides}
