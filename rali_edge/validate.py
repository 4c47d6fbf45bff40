"""Drift validation: run artifacts in their own runtimes on the same images as the float bundle.

Built on the evaluation core (rali_edge.evaluation): the eval sets are loaded once, the float
PyTorch bundle is the reference, every artifact is measured (run here, simulated where the format
has a simulator, or "not runnable here" with the reason) and gets a DriftRow per meta file. The
DriftBudget turns rows into gate failures: a measured or simulated drop over budget, or an artifact
that failed to run. Rows not runnable here are listed, never failures.

Device preprocessing (`device_preprocess`, rali_edge.evaluation.device_preprocess): the same images are
prepared again each named way (another resize kernel, a JPEG round trip), and the float model and every
artifact are run on them. Each such row (`<dataset>@<variant>`) is compared with the float model on the
TRAINING preprocessing, so the float model's own rows say what the device's preprocessing alone costs and
an artifact's rows what it costs together with the export. The same budget gates them.
"""

from __future__ import annotations

import dataclasses

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rali_edge.errors import ConfigError
from rali_edge.evaluation.budget import DriftBudget
from rali_edge.evaluation.measure import DEFAULT_BATCH_SIZE
from rali_edge.report.analysis import Analysis, AnalysisSettings
from rali_edge.report.drift import FAILED, NOT_RUNNABLE, OK, SIMULATED, DriftRow
from rali_edge.report.gallery import DEFAULT_WORST
from rali_edge.report.slices import check_slice_by
from rali_edge.report.validation_render import validation_analysis, write_validation_reports

REPORT_FILE = "report.json"


@dataclass
class ValidationReport:
    rows: list[DriftRow]
    failures: list[str]
    budget: dict
    report_path: Path | None = None
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # artifact -> dataset -> scores
    analysis: Analysis | None = None   # per artifact: drift per slice, worst images (report/analysis.py)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def not_runnable(self) -> list[DriftRow]:
        return [r for r in self.rows if r.status == NOT_RUNNABLE]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "budget": self.budget, "failures": self.failures,
                "rows": [r.to_dict() for r in self.rows]}


@dataclass
class LocalMeasurer:
    """Scores the eval sets in this process (every image's pixels in memory): the default engine."""

    embedding_note = None   # it measures the embedding cosine wherever both sides output one

    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None

    def load(self, bundle_dir: Path, metas, image_root, preprocess):
        """(the eval sets, the float bundle's Measurement on them)."""
        from rali_edge.evaluation.evalset import load_eval_sets
        from rali_edge.evaluation.measure import measure_reference

        sets = load_eval_sets(metas, image_root, preprocess)
        return sets, measure_reference(bundle_dir, sets, self.batch_size, self.threads)

    def artifact(self, path: Path, bundle_dir: Path, sets):
        from rali_edge.evaluation.measure import measure_artifact

        return measure_artifact(path, bundle_dir, sets, self.batch_size, self.threads)


def validate_artifacts(artifacts, bundle, metas, image_root, max_plcc_drop: float | None = None,
                       max_srcc_drop: float | None = None, out_dir: str | os.PathLike[str] | None = None,
                       batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None,
                       device_preprocess: str | Sequence[str] | None = None, gate: str = "point",
                       slice_by: str | Sequence[str] | None = None,
                       worst: int = DEFAULT_WORST, measurer=None) -> ValidationReport:
    """Measure every artifact's drift against the float bundle; write `<out_dir>/report.json`, `.md`, `.html`.

    `device_preprocess`: names (a sequence or a comma list) of device preprocessings to measure as well
    (`bilinear`, `bilinear-noaa`, `nearest`, `jpeg<Q>`); unknown names are a ConfigError before any work.
    `gate`: "point" (the measured drop) or "upper" (the upper bound of its 95% interval) against the
    budget. `slice_by`: meta fields to slice the drift by (None: every field; an unknown one is a
    ConfigError before any work); `worst`: images per artifact in the report's gallery. `measurer`: who
    scores the images (None: LocalMeasurer, pixels in this process; rali_edge.batch.drift.RayMeasurer: Ray)."""
    from rali_edge.bundle import load_bundle
    from rali_edge.evaluation.device_preprocess import (
        device_drift_rows,
        device_reference,
        load_device_sets,
        measure_reference_on,
        parse_device_preprocess,
    )
    from rali_edge.evaluation.evalset import unreadable
    from rali_edge.evaluation.measure import drift_rows, measure_artifact

    budget = DriftBudget(max_plcc_drop, max_srcc_drop, gate)
    devices = parse_device_preprocess(device_preprocess)
    analysis = AnalysisSettings(slice_by=check_slice_by(slice_by, metas, image_root), worst=worst)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    artifacts = [Path(a) for a in artifacts]
    if not artifacts:
        raise ConfigError("no artifacts to validate")
    bundle_dir = Path(bundle)
    pre = load_bundle(bundle_dir).config.preprocess
    measurer = measurer or LocalMeasurer(batch_size, threads)
    sets, reference = measurer.load(bundle_dir, metas, image_root, pre)
    rows = drift_rows(reference, sets, reference, bundle_dir.name)
    scores = {bundle_dir.name: {s.dataset: reference.scores(s.dataset) for s in sets}}
    for path in artifacts:
        m = measurer.artifact(path, bundle_dir, sets)
        rows.extend(_with_embedding_note(drift_rows(m, sets, reference), measurer.embedding_note))
        if m.outputs:
            scores[path.name] = {s.dataset: m.scores(s.dataset) for s in sets}
    for device in devices:
        dsets = load_device_sets(sets, metas, image_root, pre, device)
        dref = device_reference(reference, sets, dsets)
        on_device = measure_reference_on(bundle_dir, dsets, batch_size, threads)
        measured = itertools.chain([(bundle_dir.name, on_device)], (   # one artifact's runner open at a time
            (path.name, measure_artifact(path, bundle_dir, dsets, batch_size, threads)) for path in artifacts))
        for name, m in measured:
            rows += device_drift_rows(name, m, dsets, dref, device)
            if m.outputs:
                scores.setdefault(name, {}).update({d.dataset: m.scores(d.dataset) for d in dsets})
    report = ValidationReport(rows, unreadable(sets) + budget.failures(rows), budget.to_dict(), scores=scores)
    report.analysis = validation_analysis(report, bundle_dir.name, sets, metas, image_root, analysis)
    if out_dir is not None:
        report.report_path = _write_reports(report, bundle_dir, metas, image_root, sets, devices, Path(out_dir))
    return report


def _write_reports(report: ValidationReport, bundle_dir: Path, metas, image_root, sets, devices, out_dir: Path) -> Path:
    """report.json (the report and what it was measured on), report.md and report.html in out_dir."""
    doc = {**report.to_dict(), "bundle": str(bundle_dir), "metas": [str(m) for m in metas],
           "image_root": str(image_root), "bad_images": {s.dataset: s.bad_images for s in sets},
           "device_preprocess": [d.to_dict() for d in devices],
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_validation_reports(report, doc, out_dir)


__all__ = ["validate_artifacts", "ValidationReport", "DriftRow", "OK", "SIMULATED", "NOT_RUNNABLE", "FAILED"]


def _with_embedding_note(rows: list, note: str | None) -> list:
    """Rows whose embedding cosine was not measured say why in the measurer's words, when it has them."""
    if note is None:
        return rows
    return [dataclasses.replace(r, embedding_reason=note) if r.embedding_cosine is None else r for r in rows]
