"""Images -> encoder inputs and embeddings, computed once and cached (safetensors, keyed by content).

- `PixelSource`: resized + cropped uint8 pixels of a fixed list of images, either all decoded once
  and held in memory (`cache=True`, for small data and repeated epochs) or decoded per batch.
  Pixels are normalised per batch with `rali_edge.model.preprocess.normalize`, the one
  implementation of CLIP preprocessing, so training sees exactly what scoring sees.
- `extract_embeddings`: batched, no-grad image embeddings [N, D] (float32), cached in a safetensors
  file whose metadata holds a key = sha256(encoder weights checksum, image paths, file sizes and
  mtimes). A cache with another key is recomputed and replaced, never trusted.
- `module_checksum` / `tensors_checksum`: sha256 over parameter names, dtypes, shapes and bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rali_edge._atomic import atomic_path
from rali_edge.bundle import PreprocessConfig
from rali_edge.errors import DataError


def tensors_checksum(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for name, t in named:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def module_checksum(module: nn.Module) -> str:
    return tensors_checksum(sorted(module.state_dict().items()))


def _decode_one(path: Path, cfg: PreprocessConfig) -> torch.Tensor | str:
    from rali_edge.data.images import load_image
    from rali_edge.errors import ImageLoadError
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    try:
        return to_uint8_tensor(resize_and_crop(load_image(path), cfg))
    except ImageLoadError as e:
        return f"{e.path}: {e.reason}"


def _load_uint8(paths: Sequence[Path], cfg: PreprocessConfig) -> torch.Tensor:
    """Decode, resize and crop a batch in threads (PIL releases the GIL while decoding)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = list(pool.map(lambda p: _decode_one(p, cfg), paths))
    bad = [x for x in out if isinstance(x, str)]
    if bad:
        raise DataError(f"{len(bad)} training image(s) could not be read ({'; '.join(bad[:5])}); "
                        "fix or remove them from the data")
    if not out:
        return torch.empty((0, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    return torch.stack(out)


class PixelSource:
    """uint8 pixels [n, 3, S, S] of `paths[i]` by index, from memory (`cache`) or from disk."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], cfg: PreprocessConfig, cache: bool = True,
                 batch: int = 64, progress: bool = True):
        self.paths = [Path(p) for p in paths]
        self.cfg = cfg
        self._pixels: torch.Tensor | None = None
        if cache:
            chunks = [_load_uint8(self.paths[i : i + batch], cfg)
                      for i in tqdm(range(0, len(self.paths), batch), desc="decode images", unit="batch",
                                    disable=not progress, leave=False)]
            self._pixels = torch.cat(chunks) if chunks else torch.empty((0, 3, cfg.image_size, cfg.image_size),
                                                                        dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def uint8(self, indices: Sequence[int]) -> torch.Tensor:
        if self._pixels is not None:
            return self._pixels[torch.as_tensor(list(indices), dtype=torch.long)]
        return _load_uint8([self.paths[i] for i in indices], self.cfg)

    def normalized(self, indices: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        from rali_edge.model.preprocess import normalize

        return normalize(self.uint8(indices).to(device), self.cfg)


def _cache_key(encoder_checksum: str, paths: Sequence[Path], cfg: PreprocessConfig) -> str:
    h = hashlib.sha256(encoder_checksum.encode())
    h.update(json.dumps(dataclass_dict(cfg), sort_keys=True).encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def dataclass_dict(obj) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(obj)))


def _read_cache(cache_path: Path, key: str, n: int) -> np.ndarray | None:
    from safetensors import safe_open

    if not cache_path.is_file():
        return None
    with safe_open(str(cache_path), framework="pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        emb = f.get_tensor("embeddings")
    return emb.numpy() if emb.shape[0] == n else None


@torch.no_grad()
def extract_embeddings(
    encoder: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    cfg: PreprocessConfig,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    cache_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings [N, D] of the images at `paths` with `encoder` (normalized pixels -> features)."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) not found, e.g. {missing[:3]}")
    key = _cache_key(module_checksum(encoder), paths, cfg) if cache_path is not None else ""
    if cache_path is not None:
        cached = _read_cache(Path(cache_path), key, len(paths))
        if cached is not None:
            return cached
    was_training = encoder.training
    encoder.eval()
    source = PixelSource(paths, cfg, cache=False)
    out = []
    for i in tqdm(range(0, len(paths), batch_size), desc="embed", unit="batch", disable=not progress, leave=False):
        idx = range(i, min(i + batch_size, len(paths)))
        out.append(encoder(source.normalized(idx, device)).float().cpu())
    encoder.train(was_training)
    emb = torch.cat(out) if out else torch.empty((0, 0))
    if cache_path is not None:
        from safetensors.torch import save_file

        with atomic_path(cache_path) as tmp:
            save_file({"embeddings": emb.contiguous()}, str(tmp), metadata={"key": key, "n": str(len(paths))})
    return emb.numpy()
