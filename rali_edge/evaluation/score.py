"""Score image files with an open runner (any artifact, or a bundle), as a library call.

The work is the batch core's (`rali_edge.batch`): files read and decoded by the one safe loader ahead
of the runner in a thread pool, prepared as the artifact's metadata says (the same uint8 pixels every
evaluation uses). Unreadable files are reported, never raised, and the rest are still scored. For
collections too big for memory, outputs on disk, resume or Ray, use `rali_edge.batch.api`
(`rali-edge score`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rali_edge.model.scorer import ScoreResult
    from rali_edge.runtime.base import Runner


def score_files(runner: Runner, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                progress: bool = False, decode_threads: int | None = None) -> ScoreResult:
    """Scores of the readable files (in input order) and a BadImage per unreadable one."""
    from rali_edge.batch.core import BatchScorer
    from rali_edge.batch.local import LocalEngine, LocalSession
    from rali_edge.batch.rows import ScoredRows
    from rali_edge.data.images import BadImage
    from rali_edge.model.scorer import ScoreResult

    engine = LocalEngine(batch_size=batch_size, decode_threads=decode_threads, progress=progress)
    rows = ScoredRows.concat(LocalSession(engine, BatchScorer(runner)).score([str(p) for p in paths]))
    ok = [i for i, e in enumerate(rows.errors) if not e]
    return ScoreResult(paths=[rows.paths[i] for i in ok], scores=rows.scores[ok].astype("float32"),
                       failures=[BadImage(p, e) for p, e in rows.failures()])
