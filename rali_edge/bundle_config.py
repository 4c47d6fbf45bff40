"""The bundle's config.json as frozen dataclasses that validate themselves (types, ranges, versions).

`from_dict` reads config.json through `rali_edge.config_io` (unknown keys, missing keys, types);
`__post_init__` checks values, so a config built in code is checked the same way.
Imported and re-exported by `rali_edge.bundle`; import these names from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rali_edge import config_io
from rali_edge.errors import BundleError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

LIBRARIES = frozenset({"hf", "open_clip"})
INTERPOLATIONS = frozenset({"bicubic", "bilinear"})
CROPS = frozenset({"center"})


# ---------------------------------------------------------------- validators (value, where) -> value


def _int(value: Any, where: str, minimum: int | None = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise BundleError(f"{where}: must be >= {minimum}, got {value}")
    return value


def _float(value: Any, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise BundleError(f"{where}: must be a finite{' positive' if positive else ''} number, got {value}")
    return value


def _str(value: Any, where: str, allowed: frozenset[str] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise BundleError(f"{where}: expected a non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise BundleError(f"{where}: {value!r} is not one of {sorted(allowed)}")
    return value


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise BundleError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str, item) -> list:
    if not isinstance(value, (list, tuple)):
        raise BundleError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _triple(value: Any, where: str, positive: bool) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise BundleError(f"{where}: expected 3 numbers (one per RGB channel), got {value!r}")
    return tuple(_float(v, f"{where}[{i}]", positive) for i, v in enumerate(value))  # type: ignore[return-value]


def _optional(check):
    return lambda v, w: None if v is None else check(v, w)


def _one_of(allowed: frozenset[str]):
    return lambda v, w: _str(v, w, allowed)


def check_schema_version(version: Any, where: str) -> int:
    """Refuse a schema version this rali-edge cannot read, naming the ones it can."""
    supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{where}: unsupported bundle schema version {version!r}; "
            f"this rali-edge supports schema versions: {supported}"
        )
    return version


def _check_fields(obj: Any, checks: dict, where: str) -> None:
    """Validate and normalise (e.g. list -> tuple) each field of a frozen dataclass in place."""
    for name, check in checks.items():
        object.__setattr__(obj, name, check(getattr(obj, name), f"{where}.{name}"))


# ---------------------------------------------------------------- config dataclasses


@dataclass(frozen=True)
class BackboneConfig:
    library: str  # "hf" (transformers CLIPModel) or "open_clip"
    name: str  # hub name, open_clip model name, or the local path it came from
    pretrained: str | None  # open_clip pretrained tag; None for hf or random weights
    model_config: dict | None  # full architecture, so the bundle rebuilds offline
    embed_dim: int  # D: projected image-embedding size
    image_size: int

    def __post_init__(self) -> None:
        _check_fields(self, {
            "library": _one_of(LIBRARIES), "name": _str, "pretrained": _optional(_str),
            "model_config": _optional(_dict), "embed_dim": _int, "image_size": _int,
        }, "backbone")

    @classmethod
    def from_dict(cls, d: Any) -> BackboneConfig:
        return config_io.from_dict(cls, d, "backbone", error=BundleError)


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int  # the square crop fed to the encoder
    resize: int  # shortest side resized to this first
    crop: str = "center"
    interpolation: str = "bicubic"  # "bicubic" | "bilinear"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        _check_fields(self, {
            "image_size": _int, "resize": _int, "crop": _one_of(CROPS),
            "interpolation": _one_of(INTERPOLATIONS),
            "mean": lambda v, w: _triple(v, w, positive=False), "std": lambda v, w: _triple(v, w, positive=True),
        }, "preprocess")
        if self.resize < self.image_size:
            # a centre crop larger than the resized image would have to pad: never what CLIP saw
            raise BundleError(f"preprocess: resize ({self.resize}) must be >= image_size ({self.image_size})")

    @classmethod
    def from_dict(cls, d: Any) -> PreprocessConfig:
        return config_io.from_dict(cls, d, "preprocess", error=BundleError)


@dataclass(frozen=True)
class HeadConfig:
    embed_dim: int  # D
    pca_dim: int  # M
    num_basis: int  # K
    temperature: float  # tau = 1 / logit_scale at save time (informational; the tensor rules)

    def __post_init__(self) -> None:
        _check_fields(self, {
            "embed_dim": _int, "pca_dim": _int, "num_basis": _int,
            "temperature": lambda v, w: _float(v, w, positive=True),
        }, "head")
        if self.pca_dim > self.embed_dim:
            raise BundleError(f"head: pca_dim ({self.pca_dim}) cannot exceed embed_dim ({self.embed_dim})")

    @classmethod
    def from_dict(cls, d: Any) -> HeadConfig:
        return config_io.from_dict(cls, d, "head", error=BundleError)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every required `head.*` tensor must have."""
        d, m, k = self.embed_dim, self.pca_dim, self.num_basis
        return {
            "head.pca_mean": (d,), "head.pca_scale": (d,), "head.pca_components": (m, d),
            "head.prototypes": (k, m), "head.proto_scores": (k,), "head.logit_scale": (),
        }


@dataclass(frozen=True)
class Provenance:
    data: list[str]
    seeds: list[int]
    package_version: str
    created: str  # UTC, ISO 8601
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_fields(self, {
            "data": lambda v, w: _list(v, w, _str), "seeds": lambda v, w: _list(v, w, lambda s, ws: _int(s, ws, None)),
            "package_version": _str, "created": _str, "notes": _dict,
        }, "provenance")

    @classmethod
    def now(cls, data=(), seeds=(), notes: dict | None = None) -> Provenance:
        """Provenance stamped with this package's version and the current UTC time."""
        from rali_edge import __version__

        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(data=[str(x) for x in data], seeds=[int(s) for s in seeds], package_version=__version__,
                   created=created, notes=dict(notes or {}))

    @classmethod
    def from_dict(cls, d: Any) -> Provenance:
        return config_io.from_dict(cls, d, "provenance", error=BundleError)


@dataclass(frozen=True)
class BundleConfig:
    backbone: BackboneConfig
    preprocess: PreprocessConfig
    head: HeadConfig
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_schema_version(self.schema_version, "bundle config")
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise BundleError(f"bundle config: {name} must be a {cls.__name__}")
        if self.backbone.embed_dim != self.head.embed_dim:
            raise BundleError(f"bundle config: backbone.embed_dim ({self.backbone.embed_dim}) "
                              f"!= head.embed_dim ({self.head.embed_dim})")
        if self.backbone.image_size != self.preprocess.image_size:
            raise BundleError(f"bundle config: backbone.image_size ({self.backbone.image_size}) "
                              f"!= preprocess.image_size ({self.preprocess.image_size})")

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for name in _SECTIONS:
            out[name] = json.loads(json.dumps(dataclasses.asdict(getattr(self, name))))
        return out

    @classmethod
    def from_dict(cls, d: Any) -> BundleConfig:
        d = _dict(d, "bundle config")
        # the version first: a newer bundle gets "unsupported version", not a confusing key error
        check_schema_version(d.get("schema_version"), "bundle config")
        return config_io.from_dict(cls, d, "bundle config", error=BundleError)


_SECTIONS = {"backbone": BackboneConfig, "preprocess": PreprocessConfig, "head": HeadConfig, "provenance": Provenance}
