"""The on-disk scorer format: a folder with config.json, model.safetensors and manifest.json.

`config.json` describes the backbone architecture, preprocessing, head sizes and provenance;
`model.safetensors` holds every tensor (`backbone.*` and `head.*`); `manifest.json` lists the
sha256 and size of the other two files so a tampered or truncated bundle is refused on load.
Writing goes through a temporary folder beside the target and one rename (`_atomic.atomic_path`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rali_edge._atomic import atomic_path
from rali_edge.errors import BundleError

if TYPE_CHECKING:
    import torch

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)

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


def _from_dict(cls: type, d: Any, where: str):
    """Build a config dataclass from JSON: refuse unknown and missing keys; __post_init__ checks values."""
    d = _dict(d, where)
    fields = dataclasses.fields(cls)
    unknown = sorted(set(d) - {f.name for f in fields})
    if unknown:
        raise BundleError(f"{where}: unknown keys {unknown} (known: {[f.name for f in fields]})")
    missing = [f.name for f in fields if f.name not in d
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise BundleError(f"{where}: missing required keys {missing}")
    return cls(**d)


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
        return _from_dict(cls, d, "backbone")


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
        return _from_dict(cls, d, "preprocess")


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
        return _from_dict(cls, d, "head")

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
        return _from_dict(cls, d, "provenance")


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
        sections = {name: sec.from_dict(d.get(name)) for name, sec in _SECTIONS.items() if name in d}
        return _from_dict(cls, {**d, **sections}, "bundle config")


_SECTIONS = {"backbone": BackboneConfig, "preprocess": PreprocessConfig, "head": HeadConfig, "provenance": Provenance}


@dataclass
class Bundle:
    path: Path
    config: BundleConfig
    tensors: dict[str, torch.Tensor]
    checksum: str  # sha256 of manifest.json: identifies this exact bundle in artifact metadata

    def head_tensors(self) -> dict[str, torch.Tensor]:
        return bundle_tensors_with_prefix(self.tensors, "head.")

    def backbone_tensors(self) -> dict[str, torch.Tensor]:
        return bundle_tensors_with_prefix(self.tensors, "backbone.")


def bundle_tensors_with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix` ("head" and "head." mean the same), prefix stripped."""
    if not prefix.endswith("."):
        prefix += "."
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


# ---------------------------------------------------------------- tensors


def check_tensors(tensors: dict[str, torch.Tensor], head: HeadConfig, where: str) -> None:
    """Every required head tensor is present, floating point, finite and shaped per the HeadConfig."""
    import torch

    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise BundleError(f"{where}: tensor dict must map names to torch tensors (bad entry {name!r})")
    problems = []
    for name, shape in head.tensor_shapes().items():
        if name not in tensors:
            problems.append(f"missing tensor {name}")
            continue
        t = tensors[name]
        if tuple(t.shape) != shape:
            problems.append(f"{name} has shape {list(t.shape)}, expected {list(shape)} from the head config")
        elif not t.is_floating_point():
            problems.append(f"{name} has dtype {t.dtype}, expected a floating-point dtype")
        elif not bool(torch.isfinite(t).all()):
            problems.append(f"{name} contains NaN or infinite values")
    if problems:
        raise BundleError(f"{where}: " + "; ".join(problems))


def _prepare_for_save(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors that own their storage (safetensors refuses shared memory)."""
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        # tied weights or views into a bigger buffer: give this tensor its own copy
        if ptr in seen_storage or storage.nbytes() != t.nbytes:
            t = t.clone()
        seen_storage.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


# ---------------------------------------------------------------- files and manifest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(folder: str | os.PathLike[str]) -> dict:
    """sha256 and size of every file in the bundle folder except the manifest itself."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != MANIFEST_FILE:
            files[p.name] = {"sha256": _sha256_file(p), "size": p.stat().st_size}
    return {"schema_version": SCHEMA_VERSION, "files": files}


def _write_bytes_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_bundle(out_dir: str | os.PathLike[str], config: BundleConfig, tensors: dict[str, torch.Tensor]) -> Path:
    """Write a complete bundle at `out_dir` atomically (an existing one is replaced only on success)."""
    from safetensors.torch import save_file

    if not isinstance(config, BundleConfig):
        raise BundleError(f"save_bundle needs a BundleConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    check_tensors(tensors, config.head, f"bundle {out_dir}")
    try:
        config_bytes = (json.dumps(config.to_dict(), indent=2) + "\n").encode("utf-8")
    except TypeError as e:  # e.g. non-JSON values in provenance.notes or model_config
        raise BundleError(f"bundle {out_dir}: config is not JSON-serialisable: {e}") from e
    prepared = _prepare_for_save(tensors)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        _write_bytes_synced(tmp / CONFIG_FILE, config_bytes)
        save_file(prepared, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "rali_edge_schema": str(SCHEMA_VERSION)})
        manifest = build_manifest(tmp)
        _write_bytes_synced(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return out_dir


def _read_manifest(path: Path) -> tuple[dict, bytes]:
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{path}: not a rali-edge bundle (no {MANIFEST_FILE})")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{mpath}: manifest must be an object with a 'files' object")
    check_schema_version(manifest.get("schema_version"), str(mpath))
    return manifest, raw


def _verify_files(path: Path, manifest: dict) -> None:
    files = manifest["files"]
    for required in REQUIRED_FILES:
        if required not in files:
            raise BundleError(f"{path}: manifest does not list the required file {required}")
    for name, entry in files.items():
        # only plain names inside the bundle folder: a manifest must not point elsewhere
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST_FILE):
            raise BundleError(f"{path}: manifest lists an invalid file name {name!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or isinstance(entry.get("size"), bool) or not isinstance(entry.get("size"), int):
            raise BundleError(f"{path}: manifest entry for {name} needs 'sha256' (string) and 'size' (integer)")
        fpath = path / name
        if not fpath.is_file():
            raise BundleError(f"{path}: {name} is missing (listed in the manifest)")
        size = fpath.stat().st_size
        if size < entry["size"]:
            raise BundleError(f"{fpath}: file is truncated ({size} bytes, manifest says {entry['size']})")
        if size != entry["size"]:
            raise BundleError(f"{fpath}: size mismatch ({size} bytes, manifest says {entry['size']})")
        digest = _sha256_file(fpath)
        if digest != entry["sha256"]:
            raise BundleError(
                f"checksum mismatch for {name} in {path}: sha256 {digest}, manifest says {entry['sha256']} "
                "(the file was modified or corrupted after the bundle was written)"
            )


def _read_config(path: Path) -> BundleConfig:
    cpath = path / CONFIG_FILE
    try:
        raw = json.loads(cpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{cpath}: not valid JSON ({e})") from e
    try:
        return BundleConfig.from_dict(raw)
    except BundleError as e:
        raise BundleError(f"{cpath}: {e}") from e


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath = path / WEIGHTS_FILE
    try:
        return load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise BundleError(f"{wpath}: cannot read safetensors ({e})") from e


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle: manifest checksums, schema version, config, head tensor shapes."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: bundle folder does not exist")
    if not path.is_dir():
        raise BundleError(f"{path}: a bundle is a folder (config.json, model.safetensors, manifest.json)")
    manifest, manifest_bytes = _read_manifest(path)
    _verify_files(path, manifest)
    config = _read_config(path)
    tensors = _read_tensors(path)
    check_tensors(tensors, config.head, str(path / WEIGHTS_FILE))
    return Bundle(path=path, config=config, tensors=tensors, checksum=hashlib.sha256(manifest_bytes).hexdigest())
