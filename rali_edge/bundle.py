"""The on-disk scorer format: a folder with config.json, model.safetensors and manifest.json.

`config.json` describes the backbone architecture, preprocessing, head sizes and provenance;
`model.safetensors` holds every tensor (`backbone.*` and `head.*`); `manifest.json` lists the
sha256 and size of the other two files so a tampered or truncated bundle is refused on load.
Writing goes through a temporary folder beside the target and one rename (`_atomic.atomic_path`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge._atomic import atomic_path
from rali_edge.bundle_config import (  # re-exported: the public names live in rali_edge.bundle
    CLIP_MEAN,
    CLIP_STD,
    INTERPOLATIONS,
    LIBRARIES,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    BackboneConfig,
    BundleConfig,
    HeadConfig,
    PreprocessConfig,
    Provenance,
    check_schema_version,
)
from rali_edge.errors import BundleError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "INTERPOLATIONS", "LIBRARIES", "SCHEMA_VERSION", "SUPPORTED_SCHEMA_VERSIONS",
    "BackboneConfig", "Bundle", "BundleConfig", "HeadConfig", "PreprocessConfig", "Provenance",
    "build_manifest", "bundle_tensors_with_prefix", "check_schema_version", "check_tensors",
    "load_bundle", "save_bundle",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)


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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (also used for official checkpoint provenance)."""
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
            files[p.name] = {"sha256": sha256_file(p), "size": p.stat().st_size}
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
        if size != entry["size"]:
            why = "truncated or modified" if size < entry["size"] else "modified"
            raise BundleError(f"size mismatch for {name} in {path}: {size} bytes, manifest says "
                              f"{entry['size']} (the file was {why} after the bundle was written)")
        digest = sha256_file(fpath)
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
