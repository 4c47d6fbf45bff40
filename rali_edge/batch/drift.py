"""`validate --engine ray`: drift of artifacts against the float bundle, the images scored on Ray.

The float bundle, then each artifact, scores every image of the meta files through the Ray engine (the
same core as `score --engine ray`; no process ever holds the pixels of the whole set). The scores go to
the one evaluation core through `validate_artifacts(..., measurer=RayMeasurer(engine))`: the same
DriftRows, budget, analysis and report as the local engine, so the same numbers.

Differences from the local engine, by design: --device-preprocess is refused (it needs the pixels);
an artifact whose runtime is absent on the driver is "not runnable here" (no Core ML simulation);
the embedding cosine is not measured (rows carry scores only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rali_edge.batch.artifact import ArtifactFiles
from rali_edge.batch.ray_engine import RayEngine, ray_connection
from rali_edge.batch.rows import ScoredRows
from rali_edge.errors import ConfigError, NotRunnableHere, RaliEdgeError, UnsupportedOptionError


@dataclass
class ScoredSet:
    """What the evaluation core reads of an EvalSet (evaluation/evalset.py), without the pixels."""

    dataset: str
    paths: list[str]               # the images the float model scored, in meta order
    images: list[str]
    gt: np.ndarray | None
    bad_images: list[dict] = field(default_factory=list)   # {"path", "reason"}

    def __len__(self) -> int:
        return len(self.paths)


def _score_all(engine: RayEngine, artifact: Path, locations: Sequence[str],
               image_size: int | None = None) -> ScoredRows:
    files = ArtifactFiles.of(artifact)
    with engine.session(files) as session:
        if image_size is not None and session.metadata.image_size != image_size:   # as measure_artifact checks
            raise ConfigError(f"{artifact}: takes {session.metadata.image_size} px images but the bundle "
                              f"preprocesses to {image_size} px")
        return ScoredRows.concat(session.score(list(locations)))


def _scored_sets(records: dict, rows: ScoredRows) -> list[ScoredSet]:
    from rali_edge.errors import DataError
    from rali_edge.evaluation.evalset import ground_truth

    error = dict(zip(rows.paths, rows.errors))
    sets = []
    for dataset, recs in records.items():
        kept = [r for r in recs if not error[str(r.path)]]
        if not kept:
            raise DataError(f"{dataset}: none of its {len(recs)} images could be read")
        bad = [{"path": str(r.path), "reason": error[str(r.path)]} for r in recs if error[str(r.path)]]
        sets.append(ScoredSet(dataset, [str(r.path) for r in kept], [r.image for r in kept], ground_truth(kept), bad))
    return sets


def _outputs(rows: ScoredRows, sets: Sequence[ScoredSet]) -> dict[str, dict[str, np.ndarray]]:
    score = rows.score_of()
    return {s.dataset: {"score": np.asarray([score[p] for p in s.paths], np.float32)} for s in sets}


@dataclass
class RayMeasurer:
    """`validate_artifacts`' measurer for the Ray engine (the local one reads pixels: evaluation/)."""

    engine: RayEngine
    image_size: int | None = None    # the bundle's, set by load(); artifacts must take the same
    embedding_note = "not measured by the ray engine (its rows carry scores only)"

    def load(self, bundle_dir: Path, metas, image_root, preprocess):
        """(sets, the float bundle's Measurement): every image of the metas scored by the bundle."""
        from rali_edge.data.meta import read_metas
        from rali_edge.evaluation.measure import Measurement
        from rali_edge.report.drift import REFERENCE

        self.image_size = preprocess.image_size
        records = read_metas(metas, image_root)
        locations = sorted({str(r.path) for recs in records.values() for r in recs})
        rows = _score_all(self.engine, bundle_dir, locations)
        sets = _scored_sets(records, rows)
        return sets, Measurement(bundle_dir, REFERENCE, _outputs(rows, sets))

    def artifact(self, path: Path, bundle_dir: Path, sets: Sequence[ScoredSet]):
        """The artifact on the images the float model read: ok, failed or not runnable here."""
        from rali_edge.evaluation.measure import Measurement
        from rali_edge.report.drift import FAILED, NOT_RUNNABLE, OK
        from rali_edge.runtime import runner_class

        path = Path(path)
        try:
            ok, why = runner_class(path).available()
            if not ok:
                return Measurement(path, NOT_RUNNABLE, reason=f"{why} (the ray engine simulates nothing)")
            rows = _score_all(self.engine, path, sorted({p for s in sets for p in s.paths}), self.image_size)
        except NotRunnableHere as exc:
            return Measurement(path, NOT_RUNNABLE, reason=str(exc))
        except RaliEdgeError as exc:
            return Measurement(path, FAILED, reason=str(exc))
        failed = rows.failures()
        if failed:
            return Measurement(path, FAILED, reason=f"{len(failed)} images the float model scored failed here, "
                                                    f"e.g. {failed[0][0]}: {failed[0][1]}")
        return Measurement(path, OK, _outputs(rows, sets))


def validate_on_ray(artifacts, bundle, metas, image_root, ray_options: dict | None = None,
                    batch_size: int = 32, threads: int | None = None, device_preprocess=None, **options):
    """`validate_artifacts` with every image scored on Ray (`ray_options`: RayEngine's fields);
    `options` as validate_artifacts takes them."""
    from rali_edge.validate import validate_artifacts

    if device_preprocess:
        raise UnsupportedOptionError("--device-preprocess needs the pixels in one process: use --engine local")
    if threads is not None:
        raise UnsupportedOptionError("--threads applies to --engine local; use --threads-per-actor")
    if not artifacts:
        raise ConfigError("no artifacts to validate")
    engine = RayEngine(batch_size=batch_size, **(ray_options or {}))
    with ray_connection(engine.address):   # one Ray session for the bundle and every artifact
        return validate_artifacts(artifacts, bundle, metas, image_root, batch_size=batch_size,
                                  measurer=RayMeasurer(engine), **options)
