"""The Ray Data actor of the Ray engine: the artifact from bytes, one runner, the shared core.

Imported by Ray workers (rali-edge must be installed on every node); imports no Ray at module level.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

from rali_edge.batch.artifact import materialise
from rali_edge.batch.core import BatchScorer, open_artifact_runner
from rali_edge.batch.rows import to_arrow


class ScoreActor:
    """Holds one runner for its life; each call scores one batch of paths into Arrow rows.

    `artifact` is a 1-tuple holding the ObjectRef of `ArtifactFiles.blobs()`: nested, so Ray hands the
    ref itself to the constructor and the bytes are fetched once per actor, from the object store.
    """

    def __init__(self, artifact: tuple, name: str, sha256: str, threads: int, device: str | None = None):
        import ray

        self._dir = tempfile.mkdtemp(prefix="rali-edge-artifact-")
        path = materialise(ray.get(artifact[0]), name, sha256, self._dir)
        self.core = BatchScorer(open_artifact_runner(path, threads=threads, device=device))
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="rali-decode")

    def __call__(self, batch):
        return to_arrow(self.core.score(batch.column("path").to_pylist(), self.pool))

    def __del__(self):   # also after a failed __init__: only what was made
        if hasattr(self, "pool"):
            self.pool.shutdown(wait=False)
        if hasattr(self, "_dir"):
            shutil.rmtree(self._dir, ignore_errors=True)
