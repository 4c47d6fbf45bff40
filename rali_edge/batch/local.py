"""The local engine: one process, a thread pool reading and decoding ahead while the runner runs.

Decoding (PIL, which releases the GIL) overlaps inference: while batch k runs, the pool already
prepares batches k+1 .. k+`ahead`. Memory stays flat: at most (ahead + 1) batches of pixels exist.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from rali_edge.batch.core import BatchScorer, Prepared, open_artifact_runner
from rali_edge.batch.rows import ScoredRows
from rali_edge.errors import ConfigError


def default_decode_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class LocalEngine:
    batch_size: int = 32
    decode_threads: int | None = None     # None: default_decode_threads()
    ahead: int = 2                        # batches prepared ahead of the one running
    device: str | None = None             # torch device, bundles only
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.decode_threads is not None and self.decode_threads < 1:
            raise ConfigError(f"--decode-threads {self.decode_threads}: must be >= 1")
        if self.ahead < 0:
            raise ConfigError(f"ahead={self.ahead}: must be >= 0")

    @contextmanager
    def session(self, files) -> Iterator[LocalSession]:
        """Open the artifact's runner once (`files`: an ArtifactFiles); its metadata is the run's."""
        yield LocalSession(self, BatchScorer(open_artifact_runner(files.path, device=self.device)))


@dataclass
class LocalSession:
    engine: LocalEngine
    core: BatchScorer

    @property
    def metadata(self):
        return self.core.runner.metadata

    def score(self, paths: Sequence[str]) -> Iterator[ScoredRows]:
        """Rows for `paths`, in order, one ScoredRows per batch."""
        from tqdm import tqdm

        e = self.engine
        with ThreadPoolExecutor(e.decode_threads or default_decode_threads(), thread_name_prefix="rali-decode") \
                as pool, tqdm(total=len(paths), desc="scoring", unit="img", disable=not e.progress) as bar:
            for prepared in _prefetched(pool, self.core.prepare, paths, e.batch_size, e.ahead):
                rows = self.core.run(prepared)
                bar.update(len(rows))
                yield rows


def _prefetched(pool: ThreadPoolExecutor, prepare: Callable[[str], Prepared], paths: Sequence[str],
                batch_size: int, ahead: int) -> Iterator[list[Prepared]]:
    """Batches of prepared images, in order, with up to `ahead` more batches in flight in `pool`."""
    pending: deque[Future] = deque()
    submitted = 0
    try:
        while submitted < len(paths) or pending:
            while submitted < len(paths) and len(pending) < (ahead + 1) * batch_size:
                pending.append(pool.submit(prepare, paths[submitted]))
                submitted += 1
            take = min(batch_size, len(pending))
            yield [pending.popleft().result() for _ in range(take)]
    finally:   # stopped early (an error downstream): drop what was queued, keep nothing running
        for future in pending:
            future.cancel()
