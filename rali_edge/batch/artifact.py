"""The artifact of a batch run as data: its files, its checksum, and a copy of it on another machine.

`artifact_sha256` is the checksum written into every output's metadata: for a single-file artifact the
sha256 of its bytes (what `sha256sum model.onnx` prints); for a folder (a bundle, a .mlpackage) the
sha256 of its sorted `relative/path<TAB>sha256-of-file<LF>` lines. Ray workers get the artifact as
bytes (`ArtifactFiles.blobs`) and `materialise` it in a temporary folder, checking that checksum,
so every actor runs exactly the artifact the driver named, on any node.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rali_edge.bundle import sha256_file
from rali_edge.errors import ConfigError

SIDECAR_SUFFIX = ".json"     # `<artifact>.json` beside a file artifact: metadata some runners read


def _tree_sha256(files: dict[str, Path]) -> str:
    lines = "".join(f"{rel}\t{sha256_file(p)}\n" for rel, p in sorted(files.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _tree(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def artifact_sha256(path: str | os.PathLike) -> str:
    p = Path(path)
    return _tree_sha256(_tree(p)) if p.is_dir() else sha256_file(p)


@dataclass(frozen=True)
class ArtifactFiles:
    """One artifact (file or folder) and the metadata sidecar beside it, if any."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> ArtifactFiles:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: no such artifact or bundle")
        return cls(p, artifact_sha256(p))

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + SIDECAR_SUFFIX)

    def blobs(self) -> dict[str, bytes]:
        """Relative name -> bytes, for every file that makes the artifact (names start with its name)."""
        if self.path.is_dir():
            out = {f"{self.path.name}/{rel}": p.read_bytes() for rel, p in _tree(self.path).items()}
        else:
            out = {self.path.name: self.path.read_bytes()}
        if self.path.is_file() and self.sidecar.is_file():
            out[self.sidecar.name] = self.sidecar.read_bytes()
        return out


def materialise(blobs: dict[str, bytes], name: str, sha256: str, dest: str | os.PathLike) -> Path:
    """Write `blobs` under `dest` and return the artifact's path there, after checking its checksum."""
    dest = Path(dest)
    for rel, data in blobs.items():
        target = dest / rel
        if dest.resolve() not in target.resolve().parents:
            raise ConfigError(f"artifact file {rel!r} would land outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    path = dest / name
    got = artifact_sha256(path)
    if got != sha256:
        raise ConfigError(f"{name}: the copy on this worker has sha256 {got}, not {sha256}")
    return path
