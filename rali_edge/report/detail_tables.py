"""The drift-explaining tables, as plain data (a header and rows of text) shared by report.md and
report.html: intervals per drift row, ranking agreement, drift per slice, the worst images.

Drift rows come as dicts (DriftRow.to_dict(), as report.json holds them), so `validate` and
`benchmark` render the same tables from the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rali_edge.report.analysis import Analysis, ArtifactAnalysis
from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from rali_edge.report.slices import SMALL_SLICE
from rali_edge.report.table import markdown_grid


@dataclass(frozen=True)
class TextTable:
    header: tuple[str, ...]
    rows: list[list[str]]


def num(value: float | None, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def interval(ci: Sequence[float] | None, fmt: str = "+.4f") -> str:
    return "—" if ci is None else f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def bootstrap_text(config: Bootstrap = DEFAULT_BOOTSTRAP) -> str:
    return (f"Intervals: paired percentile bootstrap over images ({config.resamples} resamples, seed "
            f"{config.seed}, {config.level:.0%}).")


def interval_table(drift: Sequence[dict]) -> TextTable:
    """Every drift row: PLCC, SRCC and their changes, each with its 95 % interval."""
    header = ("Artifact", "Dataset", "n", "PLCC", "95% CI", "SRCC", "95% CI", "dPLCC", "95% CI", "dSRCC",
              "95% CI", "Status")
    rows = []
    for d in drift:
        status = d.get("status", "")
        note = d.get("interval_reason") if d.get("plcc") is not None else d.get("reason")
        rows.append([d["artifact"], d["dataset"], str(d["n"]), num(d.get("plcc")), interval(d.get("plcc_ci"), ".4f"),
                     num(d.get("srcc")), interval(d.get("srcc_ci"), ".4f"), num(d.get("dplcc"), "+.4f"),
                     interval(d.get("dplcc_ci")), num(d.get("dsrcc"), "+.4f"), interval(d.get("dsrcc_ci")),
                     status + (f" ({note})" if note else "")])
    return TextTable(header, rows)


def ranking_table(drift: Sequence[dict]) -> TextTable:
    """Every artifact drift row: does the artifact keep the float model's order of the images?"""
    header = ("Artifact", "Dataset", "n", "Kendall tau", "k", "top-k kept", "bottom-k kept", "pairs flipped",
              "share flipped")
    rows = []
    for d in drift:
        r = d.get("ranking")
        if r is None:
            if d.get("status") != "reference":
                rows.append([d["artifact"], d["dataset"], str(d["n"]), d.get("ranking_reason") or d.get("reason")
                             or "—", "", "", "", "", ""])
            continue
        rows.append([d["artifact"], d["dataset"], str(r["n"]), f"{r['kendall_tau']:.4f}", str(r["k"]),
                     f"{r['top_k_overlap']:.0%}", f"{r['bottom_k_overlap']:.0%}",
                     f"{r['flipped_pairs']} of {r['pairs']}", f"{r['flip_share']:.2%}"])
    return TextTable(header, rows)


def slice_table(a: ArtifactAnalysis) -> TextTable:
    header = ("Field", "Value", "n", "float PLCC", "PLCC", "dPLCC", "95% CI", "dSRCC", "95% CI", "mean change",
              "mean |change|", "Note")
    rows = []
    for s in a.slices:
        note = "; ".join(x for x in (f"small (< {SMALL_SLICE})" if s.small else "", s.reason or "") if x)
        rows.append([s.field, s.value, str(s.n), num(s.float_plcc), num(s.plcc), num(s.dplcc, "+.4f"),
                     interval(s.dplcc_ci), num(s.dsrcc, "+.4f"), interval(s.dsrcc_ci), num(s.mean_change, "+.4f"),
                     num(s.mean_abs_change), note])
    return TextTable(header, rows)


def worst_table(a: ArtifactAnalysis) -> TextTable:
    header = ("#", "Image", "Dataset", "float score", "artifact score", "change", "ground truth")
    rows = [[str(w.rank), w.image, w.dataset, f"{w.float_score:.4f}", f"{w.score:.4f}", f"{w.change:+.4f}",
             num(w.gt)] for w in a.worst]
    return TextTable(header, rows)


def markdown(table: TextTable) -> str:
    return markdown_grid(table.header, table.rows)


def markdown_sections(drift: Sequence[dict], analysis: Analysis | None, gate_text: str) -> str:
    """The drift-explaining part of report.md: intervals, ranking, slices, worst images."""
    parts = ["## Accuracy with 95% intervals\n", f"{bootstrap_text()} Budget: {gate_text}.\n",
             markdown(interval_table(drift)), "\n## Ranking\n",
             "Float vs artifact order: Kendall tau-b; share of the float model's top / bottom k images the "
             "artifact keeps there; image pairs whose order flips (counted exactly).\n",
             markdown(ranking_table(drift)), "\n## Drift per slice\n"]
    if analysis is None or not analysis.artifacts:
        parts.append("No artifact produced scores: nothing to break down.\n")
        return "\n".join(parts)
    parts.append(f"Slice fields: {', '.join(analysis.fields) or 'none'}; small = fewer than {SMALL_SLICE} images.\n")
    for a in analysis.artifacts:
        parts += [f"\n### {a.artifact} ({a.status})\n", markdown(slice_table(a))]
    parts.append("\n## Worst images\n")
    for a in analysis.artifacts:
        parts += [f"\n### {a.artifact}\n", markdown(worst_table(a))]
    return "\n".join(parts)
