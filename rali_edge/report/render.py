"""Write a BenchmarkReport as report.json, report.md and a self-contained report.html.

report.json is `BenchmarkReport.to_dict()` (schema: docs/report_schema.md). report.md and report.html
hold the same figures: the benchmark table, the gate, the intervals, ranking, per-slice and
worst-image sections (report/detail_tables.py, report/html.py), the plots (report/plots.py) and the
machine. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from rali_edge._atomic import atomic_write_json, atomic_write_text
from rali_edge.evaluation.budget import DriftBudget
from rali_edge.report.detail_tables import TextTable, markdown_sections
from rali_edge.report.html import Section, detail_sections, esc, page, png_html, table_html
from rali_edge.report.plots import PLOTS, render_plots, slices_png
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import COLUMNS, markdown_table, notes, row_cells

REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}
__all__ = ["PLOTS", "REPORT_FILES", "html_report", "markdown_report", "render_plots", "write_reports"]


def _env_lines(env: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    return [
        f"date: {env.get('date')}",
        f"CPU: {env.get('cpu_model')} ({', '.join(env.get('cpu_flags', []))})",
        f"threads: {env.get('threads')} of {env.get('usable_cpus')} usable CPUs; 1-min load {env.get('load_average_1m')}",
        f"platform: {env.get('platform')}, Python {env.get('python')}",
        f"versions: {versions}",
    ]


def _drift_md(report: BenchmarkReport) -> str:
    lines = ["| Format | Precision | Dataset | n | PLCC | SRCC | dPLCC | dSRCC | MAE vs float | max abs change |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report.rows:
        for d in row.drift:
            vals = [d.get(k) for k in ("plcc", "srcc", "dplcc", "dsrcc", "score_mae", "max_abs_change")]
            cells = ["—" if v is None else f"{v:.4f}" for v in vals]
            lines.append(f"| {row.format} | {row.precision} | {d.get('dataset')} | {d.get('n')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def gate_text(budget: dict) -> str:
    """The budget and how drops were read, from `DriftBudget.to_dict()`."""
    return DriftBudget(**budget).describe() if budget else DriftBudget().describe()


def _drift(report: BenchmarkReport) -> list[dict]:
    return [d for row in report.rows for d in row.drift]


def markdown_report(report: BenchmarkReport) -> str:
    parts = [f"# rali-edge benchmark\n\nBundle: `{report.bundle}`; datasets: "
             + ", ".join(f"{k} ({v} images)" for k, v in report.datasets.items()) + "\n",
             "PLCC/SRCC: mean over datasets; dPLCC/dSRCC: artifact minus PyTorch float (negative = worse). "
             f"ms/img at batch 1, img/s at batch {report.settings.get('batch')}, medians of "
             f"{report.settings.get('repeats')} runs after warm-up.\n",
             markdown_table(report.rows), f"\nGate: {gate_text(report.budget)}.\n"]
    if report.failures:
        parts.append("\n**Gate failed**:\n\n" + "\n".join(f"- {f}" for f in report.failures) + "\n")
    if notes(report.rows):
        parts.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes(report.rows)) + "\n")
    parts.append("\n## Per-dataset drift\n\n" + _drift_md(report))
    parts.append("\n" + markdown_sections(_drift(report), report.analysis, gate_text(report.budget)))
    parts.append("\n## Machine\n\n" + "\n".join(f"- {line}" for line in _env_lines(report.environment)) + "\n")
    return "\n".join(parts)


def _summary(report: BenchmarkReport) -> str:
    table = table_html(TextTable(COLUMNS, [row_cells(r) for r in report.rows]), [r.status.value for r in report.rows])
    gate = f"<p>Gate: {esc(gate_text(report.budget))}.</p>"
    if report.failures:
        gate += '<p class="bad">Gate failed:</p><ul class="bad">' + "".join(
            f"<li>{esc(f)}</li>" for f in report.failures) + "</ul>"
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes(report.rows))
    return table + gate + (f"<h3>Notes</h3><ul>{note_items}</ul>" if note_items else "")


def html_report(report: BenchmarkReport, plots: dict[str, bytes]) -> str:
    """The page: summary table and gate, the detail sections, the plots, the machine."""
    figures = "".join(f"<h3>{esc(PLOTS[k][0])}</h3>{png_html(png, k)}" for k, png in plots.items() if k in PLOTS)
    env = "".join(f"<li>{esc(line)}</li>" for line in _env_lines(report.environment))
    sections = [Section("summary", "Summary", _summary(report)),
                *detail_sections(_drift(report), report.analysis, gate_text(report.budget), plots.get("slices")),
                Section("plots", "Plots", figures or "<p>No plot: nothing was measured.</p>"),
                Section("machine", "Machine", f"<ul>{env}</ul>")]
    return page("rali-edge benchmark", f"<p>Bundle: <code>{esc(report.bundle)}</code></p>", sections)


def write_reports(report: BenchmarkReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the three report files atomically (a crash never leaves a half-written one)."""
    out_dir = Path(out_dir)
    plots = render_plots(report)
    slices = slices_png(report.analysis)
    if slices is not None:
        plots["slices"] = slices
    paths = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    report.paths = {k: str(p) for k, p in paths.items()}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["md"], markdown_report(report))
    atomic_write_text(paths["html"], html_report(report, plots))
    return paths
