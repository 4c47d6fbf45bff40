"""`validate --out`: report.json, report.md and a self-contained report.html, written atomically.

The same drift-explaining sections as the benchmark's reports (report/detail_tables.py, report/html.py):
intervals, ranking, drift per slice (table and plot), worst images. report.json is the validation
document (schema: docs/report_schema.md) with `schema_version`, the analysis and the bootstrap settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_write_json, atomic_write_text
from rali_edge.report.analysis import Analysis, AnalysisSettings, analyse
from rali_edge.report.detail_tables import markdown_sections
from rali_edge.report.html import Section, detail_sections, esc, page
from rali_edge.report.results import SCHEMA_VERSION

if TYPE_CHECKING:
    from rali_edge.evaluation.evalset import EvalSet
    from rali_edge.validate import ValidationReport

VALIDATION_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}


def validation_analysis(report: ValidationReport, reference: str, sets: Sequence[EvalSet], metas, image_root,
                        settings: AnalysisSettings) -> Analysis:
    """Slices and worst images of every artifact that produced scores, on the training preprocessing's
    images (the sets, pooled in order), against the float model `reference` (its key in report.scores)."""
    from rali_edge.report.images import image_table

    def pooled(name: str) -> np.ndarray:
        return np.concatenate([report.scores[name][s.dataset] for s in sets])

    status = {r.artifact: r.status for r in report.rows if r.dataset == sets[0].dataset}
    measured = [(name, status[name], pooled(name)) for name in report.scores if name != reference]
    return analyse(pooled(reference), measured, image_table(sets, metas, image_root), settings)


def _gate_text(budget: dict) -> str:
    from rali_edge.evaluation.budget import DriftBudget

    return DriftBudget(**budget).describe()


def _summary_md(report: ValidationReport) -> str:
    verdict = "**Passed**" if report.passed else "**Failed**:\n\n" + "\n".join(f"- {f}" for f in report.failures)
    return f"{verdict}\n\nGate: {_gate_text(report.budget)}.\n"


def validation_markdown(report: ValidationReport, drift: list[dict]) -> str:
    return "\n".join(["# rali-edge validate\n", _summary_md(report),
                      markdown_sections(drift, report.analysis, _gate_text(report.budget))])


def validation_html(report: ValidationReport, drift: list[dict], slice_plot: bytes | None) -> str:
    verdict = ("<p>Passed.</p>" if report.passed else '<p class="bad">Failed:</p><ul class="bad">'
               + "".join(f"<li>{esc(f)}</li>" for f in report.failures) + "</ul>")
    summary = Section("summary", "Summary", f"{verdict}<p>Gate: {esc(_gate_text(report.budget))}.</p>")
    return page("rali-edge validate", "", [summary, *detail_sections(drift, report.analysis,
                                                                     _gate_text(report.budget), slice_plot)])


def write_validation_reports(report: ValidationReport, doc: dict, out_dir: Path) -> Path:
    """Write report.json (`doc` + schema version, bootstrap settings, analysis), report.md and
    report.html into `out_dir`; returns the report.json path."""
    from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP
    from rali_edge.report.plots import slices_png

    drift = [r.to_dict() for r in report.rows]
    doc = {"schema_version": SCHEMA_VERSION, "kind": "validate", **doc, "bootstrap": DEFAULT_BOOTSTRAP.to_dict(),
           "analysis": None if report.analysis is None else report.analysis.to_dict()}
    paths = {k: Path(out_dir) / name for k, name in VALIDATION_FILES.items()}
    atomic_write_json(paths["json"], doc)
    atomic_write_text(paths["md"], validation_markdown(report, drift))
    atomic_write_text(paths["html"], validation_html(report, drift, slices_png(report.analysis)))
    return paths["json"]
