"""Score image files with any artifact (or a bundle) through its `rali_edge.runtime` runner.

The files are read with the one safe loader and prepared as the artifact's metadata says (the same
uint8 pixels every evaluation uses); unreadable files are reported, never raised, and the rest are
still scored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rali_edge.model.scorer import ScoreResult
    from rali_edge.runtime.base import Runner


def score_files(runner: Runner, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                progress: bool = False) -> ScoreResult:
    from tqdm import tqdm

    from rali_edge.data.images import load_images
    from rali_edge.errors import ConfigError
    from rali_edge.model.preprocess import uint8_batch
    from rali_edge.model.scorer import ScoreResult

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    pre = runner.preprocess_config()
    paths = [str(p) for p in paths]
    scored, scores, failures = [], [], []
    with tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            good, bad = load_images(chunk)   # decoded one chunk at a time: memory stays flat
            failures.extend(bad)
            if good:
                scores.append(runner.run(uint8_batch([img for _, img in good], pre).numpy())["score"])
                scored.extend(chunk[i] for i, _ in good)
            bar.update(len(chunk))
    arr = np.concatenate(scores) if scores else np.zeros((0,), dtype=np.float32)
    return ScoreResult(paths=scored, scores=arr, failures=failures)
