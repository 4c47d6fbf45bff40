"""`score_collection`: inputs -> the engine -> a writer; what `rali-edge score` runs.

Order: check the artifact's runtime is here (NotRunnableHere), expand the inputs (a missing or empty
input is an InputFileError), both before any work; the engine's session opens the artifact (its
metadata: the driver needs the runtime too, on Ray as well); the writer lists the rows already written
(--resume); the engine scores only the paths not yet written. A failure or an interrupt still keeps
every complete part (`writer.abort`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rali_edge.batch.artifact import ArtifactFiles
from rali_edge.batch.rows import ScoredRows
from rali_edge.batch.writers import SHA_KEY

MAX_LISTED_FAILURES = 50


class Engine(Protocol):
    """LocalEngine or RayEngine: `session(files)` opens the artifact; the session has `metadata`
    (the artifact's ArtifactMetadata) and `score(paths)`, an iterator of ScoredRows."""

    def session(self, files: ArtifactFiles): ...


class Sink(Protocol):
    existing: ScoredRows

    def write(self, rows: ScoredRows) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class BatchSummary:
    total: int = 0                  # rows in the output (this run's and, with --resume, earlier ones)
    skipped: int = 0                # inputs already in the output (--resume)
    errors: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # the first MAX_LISTED_FAILURES

    def add(self, rows: ScoredRows) -> None:
        self.total += len(rows)
        failed = rows.failures()
        self.errors += len(failed)
        self.failures.extend(failed[:max(0, MAX_LISTED_FAILURES - len(self.failures))])


def run_metadata(files: ArtifactFiles, meta) -> dict[str, str]:
    """What every output carries: which artifact (its checksum first), what it is, who wrote it."""
    from rali_edge import __version__

    return {SHA_KEY: files.sha256, "rali_edge.artifact": files.path.name,
            "rali_edge.format": meta.format, "rali_edge.precision": meta.precision,
            "rali_edge.bundle_checksum": meta.bundle_checksum or "", "rali_edge.version": __version__}


def check_runnable(artifact: str | os.PathLike) -> None:
    """NotRunnableHere (exit 2) when the artifact's runtime is absent here, before any image is read."""
    from rali_edge.errors import NotRunnableHere
    from rali_edge.runtime import runner_class

    ok, why = runner_class(artifact).available()
    if not ok:
        raise NotRunnableHere(f"{artifact}: cannot run here: {why}")


def score_collection(artifact: str | os.PathLike, inputs: Sequence[str | os.PathLike], engine: Engine,
                     sink_factory, out: Path | None = None, resume: bool = False) -> BatchSummary:
    """Score every image the inputs name with `artifact` on `engine`; rows go to the sink that
    `sink_factory(out, metadata, resume)` makes (a writers.WRITERS class, or a printer)."""
    from rali_edge.batch.inputs import expand_inputs

    check_runnable(artifact)
    paths = expand_inputs(inputs)
    files = ArtifactFiles.of(artifact)
    with engine.session(files) as session:
        sink = sink_factory(out, run_metadata(files, session.metadata), resume)
        summary = BatchSummary()
        summary.add(sink.existing)
        done = set(sink.existing.paths)
        todo = [p for p in paths if p not in done]
        summary.skipped = len(paths) - len(todo)
        try:
            for rows in session.score(todo) if todo else ():
                sink.write(rows)
                summary.add(rows)
        except BaseException:
            sink.abort()
            raise
        sink.close()
    return summary
