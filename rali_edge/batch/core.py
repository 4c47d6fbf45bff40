"""The one read + decode + preprocess + run core of both engines (local and Ray).

`BatchScorer.prepare(location)` reads the bytes (`inputs.read_bytes`), decodes them with the one safe
loader (`data.images.load_image`) and resizes and crops them as the artifact's metadata says
(`model.preprocess`): the uint8 pixels every runner takes. It never raises for a bad file: the reason
travels with the row. It is thread-safe (PIL releases the GIL while decoding and resizing), so the
engines run it in thread pools. `BatchScorer.run(prepared)` runs the readable images of one batch
through the artifact's `rali_edge.runtime` runner, on the calling thread, and returns one row per input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.batch.inputs import read_bytes
from rali_edge.batch.rows import ScoredRows
from rali_edge.errors import ImageLoadError

if TYPE_CHECKING:
    from rali_edge.runtime.base import Runner


@dataclass
class Prepared:
    path: str
    pixels: np.ndarray | None   # uint8 [3, S, S]; None when the file could not be used
    error: str = ""


def open_artifact_runner(path: str | os.PathLike, threads: int | None = None, device: str | None = None) -> Runner:
    """The artifact's runner: `threads` intra-op threads where its runtime takes a count, and `device`
    for a bundle (PyTorch; callers refuse a device for other artifacts before any work)."""
    from rali_edge.evaluation.measure import open_runner_for

    runner = open_runner_for(path, threads, **({} if device is None else {"device": device}))
    runner.require_available()
    return runner


class BatchScorer:
    def __init__(self, runner: Runner):
        self.runner = runner
        self.preprocess = runner.preprocess_config()

    def prepare(self, location: str) -> Prepared:
        """Read, decode, resize and crop one image; a failure is a Prepared with its reason."""
        try:
            return Prepared(location, self.prepare_bytes(location, read_bytes(location)))
        except ImageLoadError as exc:
            return Prepared(location, None, exc.reason)

    def prepare_bytes(self, location: str, data: bytes) -> np.ndarray:
        from rali_edge.data.images import load_image
        from rali_edge.model.preprocess import resize_and_crop

        if not data:   # the loader's own words for an empty file
            raise ImageLoadError(location, "empty file (0 bytes)")
        stream = io.BytesIO(data)
        stream.name = location   # the loader names the file in its errors
        img = load_image(stream)
        # HWC -> CHW in numpy, not torch (preprocess.to_uint8_tensor): torch's OpenMP pool called from
        # several decode threads at once oversubscribes the cores the runner needs
        return np.ascontiguousarray(np.asarray(resize_and_crop(img, self.preprocess), np.uint8).transpose(2, 0, 1))

    def run(self, prepared: Sequence[Prepared]) -> ScoredRows:
        """One row per prepared image, in order; the readable ones scored in one runner call."""
        scores = np.full(len(prepared), np.nan)
        errors = [p.error for p in prepared]
        good = [i for i, p in enumerate(prepared) if p.pixels is not None]
        if good:
            out = self.runner.run(np.stack([prepared[i].pixels for i in good]))["score"]
            scores[good] = out
            for i in good:
                if not np.isfinite(scores[i]):
                    errors[i] = f"the artifact gave a non-finite score ({scores[i]})"
                    scores[i] = np.nan
        return ScoredRows([p.path for p in prepared], scores, errors)

    def score(self, locations: Sequence[str], pool: Executor | None = None) -> ScoredRows:
        """prepare (in `pool` when given) then run: one batch, as a Ray actor scores it."""
        prepared = list(pool.map(self.prepare, locations)) if pool is not None else [self.prepare(p) for p in locations]
        return self.run(prepared)
