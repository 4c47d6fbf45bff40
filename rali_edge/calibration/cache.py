"""On-disk cache of preprocessed calibration sets: one .npz per key (pixels + provenance as JSON).

The key is a hash of everything that decides the pixels (image files with size and mtime, seed, size,
buckets, preprocess), so a changed image or setting never reuses stale pixels. Loading never
unpickles (`allow_pickle=False`); a corrupt cache file is an error naming the file, not a silent redo.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from rali_edge._atomic import atomic_write_bytes
from rali_edge.errors import DataError

CACHE_VERSION = 1


def cache_key(inputs: dict) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **inputs}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def cache_file(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"calib-{key[:24]}.npz"


def save_cached(cache_dir: str | Path, key: str, pixels: np.ndarray, provenance: dict) -> Path:
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(provenance).encode("utf-8"), dtype=np.uint8)
    np.savez(buf, pixels=pixels, provenance=meta)
    return atomic_write_bytes(cache_file(cache_dir, key), buf.getvalue())


def load_cached(cache_dir: str | Path, key: str) -> tuple[np.ndarray, dict] | None:
    path = cache_file(cache_dir, key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            pixels = data["pixels"]
            provenance = json.loads(data["provenance"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable calibration cache ({exc}); delete it to rebuild") from exc
    if provenance.get("cache_key") != key or pixels.dtype != np.uint8:
        raise DataError(f"{path}: calibration cache does not match its key; delete it to rebuild")
    return pixels, provenance
