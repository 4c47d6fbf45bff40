"""Per artifact, from scores already measured (no model is run again): the drift per slice of the
images (report/slices.py) and the images whose score moved most (report/gallery.py).

Both `validate` and `benchmark` call `analyse` on the images scored with the training preprocessing,
pooled over every meta file in order (device-preprocessing rows have intervals and ranking figures in
their drift rows, but no slices or gallery). The float model itself is not analysed: its change is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rali_edge.errors import ConfigError
from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from rali_edge.report.gallery import DEFAULT_WORST, WorstImage, worst_images
from rali_edge.report.images import ImageTable
from rali_edge.report.slices import SMALL_SLICE, SliceRow, choose_fields, field_values, slice_rows


@dataclass(frozen=True)
class AnalysisSettings:
    slice_by: tuple[str, ...] | None = None     # None: every field (slices.default_fields)
    worst: int = DEFAULT_WORST                  # images in each artifact's gallery
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP

    def __post_init__(self) -> None:
        if isinstance(self.worst, bool) or not isinstance(self.worst, int) or self.worst < 0:
            raise ConfigError(f"worst images: expected an integer >= 0, got {self.worst!r}")


@dataclass
class ArtifactAnalysis:
    artifact: str
    status: str                                  # the drift rows' status: ok or simulated
    n: int
    slices: list[SliceRow] = field(default_factory=list)
    worst: list[WorstImage] = field(default_factory=list)
    reason: str | None = None                    # why there are no slices or worst images, when there are none

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "status": self.status, "n": self.n, "reason": self.reason,
                "slices": [s.to_dict() for s in self.slices], "worst": [w.to_dict() for w in self.worst]}


@dataclass
class Analysis:
    fields: list[str]                            # the slice fields used
    settings: AnalysisSettings
    artifacts: list[ArtifactAnalysis] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"slice_fields": self.fields, "small_slice": SMALL_SLICE, "worst_per_artifact": self.settings.worst,
                "bootstrap": self.settings.bootstrap.to_dict(),
                "artifacts": [a.to_dict() for a in self.artifacts]}


def analyse(float_scores, measured: Sequence[tuple[str, str, np.ndarray]], table: ImageTable,
            settings: AnalysisSettings = AnalysisSettings()) -> Analysis:
    """`measured`: (artifact name, status, scores aligned with `float_scores` and `table`) per artifact."""
    ref = np.asarray(float_scores, np.float64)
    if ref.size != len(table):
        raise ConfigError(f"{ref.size} float scores for {len(table)} images")
    fields = choose_fields(settings.slice_by, field_values(table))
    out = Analysis(fields=fields, settings=settings)
    finite = [(name, status, np.asarray(s, np.float64)) for name, status, s in measured]
    finite = [m for m in finite if np.all(np.isfinite(m[2]))]   # others: drift rows say "failed"
    slices = iter(slice_rows(ref, [s for _, _, s in finite], table, fields, settings.bootstrap))
    for name, status, scores in measured:
        got = np.asarray(scores, np.float64)
        if not np.all(np.isfinite(got)):
            out.artifacts.append(ArtifactAnalysis(name, status, int(got.size), reason="non-finite scores"))
            continue
        out.artifacts.append(ArtifactAnalysis(artifact=name, status=status, n=int(got.size), slices=next(slices),
                                              worst=worst_images(ref, got, table, settings.worst)))
    return out
