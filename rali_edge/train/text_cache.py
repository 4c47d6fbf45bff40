"""Frozen text-tower embeddings of the reasoning texts, computed once and cached.

The cache is one safetensors file: tensor "embeddings" [U, D] (L2-normalised, float32) and metadata
"backbone" (sha256 of the text tower's weights) and "hashes" (sha256 of each text, row order).
A cache made with other text weights is ignored and rewritten; texts not in it are encoded and
appended. Texts are embedded with the text tower in eval mode under no_grad: it never trains.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rali_edge._atomic import atomic_path
from rali_edge.train.embeddings import tensors_checksum


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_tower_checksum(backbone) -> str:
    """sha256 of the parameters outside the image encoder (what encode_text depends on)."""
    text_ids = {id(p) for p in backbone.text_parameters()}
    named = sorted((n, p) for n, p in backbone.named_parameters() if id(p) in text_ids)
    return tensors_checksum(named)


def _read(cache: Path, checksum: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    if not cache.is_file():
        return {}
    with safe_open(str(cache), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("backbone") != checksum:
            return {}
        emb = f.get_tensor("embeddings")
    return dict(zip(json.loads(meta["hashes"]), emb))


@torch.no_grad()
def _encode(backbone, texts: list[str], batch: int, progress: bool) -> torch.Tensor:
    was_training = backbone.training
    backbone.eval()
    out = []
    for i in tqdm(range(0, len(texts), batch), desc="encode texts", unit="batch", disable=not progress, leave=False):
        out.append(F.normalize(backbone.encode_text(texts[i : i + batch]).float(), dim=-1).cpu())
    backbone.train(was_training)
    return torch.cat(out)


def text_embeddings(backbone, texts: Sequence[str], cache_path: str | os.PathLike[str] | None = None,
                    batch: int = 256, progress: bool = True, write: bool = True) -> torch.Tensor:
    """L2-normalised text embeddings [len(texts), D] on the CPU, from the cache where possible."""
    texts = list(texts)
    checksum = text_tower_checksum(backbone)
    cache = Path(cache_path) if cache_path is not None else None
    known = _read(cache, checksum) if cache is not None else {}
    hashes = [text_hash(t) for t in texts]
    todo = list(dict.fromkeys(h for h in hashes if h not in known))
    if todo:
        by_hash = dict(zip(hashes, texts))
        fresh = _encode(backbone, [by_hash[h] for h in todo], batch, progress)
        known.update(zip(todo, fresh))
        if cache is not None and write:
            from safetensors.torch import save_file

            order = list(known)
            with atomic_path(cache) as tmp:
                save_file({"embeddings": torch.stack([known[h] for h in order]).contiguous()}, str(tmp),
                          metadata={"backbone": checksum, "hashes": json.dumps(order)})
    return torch.stack([known[h] for h in hashes])
