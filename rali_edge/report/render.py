"""Write a BenchmarkReport as report.json, report.md and a self-contained report.html (plots inline)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from rali_edge._atomic import atomic_write_json, atomic_write_text
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import COLUMNS, BenchmarkRow, markdown_table, notes, row_cells

REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}


def _label(row: BenchmarkRow) -> str:
    return f"{row.format} {row.precision}"


def _figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _scored(report: BenchmarkReport) -> list[BenchmarkRow]:
    n = len(report.float_scores)
    return [r for r in report.rows if r.scores is not None and len(r.scores) == n]


def scatter_png(report: BenchmarkReport) -> bytes | None:
    rows = _scored(report)
    if not rows:
        return None
    cols = min(3, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig = _figure(4 * cols, 3.6 * nrows)
    ref = np.asarray(report.float_scores, dtype=float)
    lo, hi = float(ref.min()), float(ref.max())
    for i, row in enumerate(rows):
        ax = fig.add_subplot(nrows, cols, i + 1)
        ax.scatter(ref, row.scores, s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.set_title(f"{_label(row)} ({row.status.value})", fontsize=9)
        ax.set_xlabel("PyTorch float score")
        ax.set_ylabel("artifact score")
    fig.suptitle("Scores of each artifact vs float scores")
    fig.tight_layout()
    return _png(fig)


def change_hist_png(report: BenchmarkReport) -> bytes | None:
    rows = [r for r in _scored(report) if not (r.format == "pytorch" and r.precision == "fp32")]
    if not rows:
        return None
    fig = _figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    ref = np.asarray(report.float_scores, dtype=float)
    changes = [np.asarray(r.scores, dtype=float) - ref for r in rows]
    span = max(float(np.abs(c).max()) for c in changes) or 1e-6
    bins = np.linspace(-span, span, 31)
    for row, change in zip(rows, changes):
        ax.hist(change, bins=bins, alpha=0.5, label=_label(row))
    ax.set_xlabel("score change vs float")
    ax.set_ylabel("images")
    ax.set_title("Histogram of score changes")
    ax.legend(fontsize=8)
    return _png(fig)


def _bars_png(rows: list[BenchmarkRow], values: list[float], title: str, xlabel: str) -> bytes | None:
    if not rows:
        return None
    fig = _figure(7, 0.45 * len(rows) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([_label(r) for r in rows], values)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def latency_png(report: BenchmarkReport) -> bytes | None:
    rows = [r for r in report.rows if r.ms_per_img is not None]
    return _bars_png(rows, [r.ms_per_img for r in rows], "Latency, batch 1 (median)", "ms / image")


def size_png(report: BenchmarkReport) -> bytes | None:
    rows = [r for r in report.rows if r.size_mb is not None]
    return _bars_png(rows, [r.size_mb for r in rows], "Artifact size", "MB")


PLOTS = {
    "scatter": ("Scores vs float", scatter_png),
    "change_hist": ("Score changes", change_hist_png),
    "latency": ("Latency", latency_png),
    "size": ("Size", size_png),
}


def render_plots(report: BenchmarkReport) -> dict[str, bytes]:
    out = {}
    for key, (_title, make) in PLOTS.items():
        png = make(report)
        if png is not None:
            out[key] = png
    return out


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


def _budget_text(budget: dict) -> str:
    parts = [f"{k.replace('max_', 'max ').replace('_drop', ' drop')} {v}" for k, v in budget.items() if v is not None]
    return ", ".join(parts) or "none"


def markdown_report(report: BenchmarkReport) -> str:
    parts = [f"# rali-edge benchmark\n\nBundle: `{report.bundle}`; datasets: "
             + ", ".join(f"{k} ({v} images)" for k, v in report.datasets.items()) + "\n",
             "PLCC/SRCC: mean over datasets; dPLCC/dSRCC: artifact minus PyTorch float (negative = worse). "
             f"ms/img at batch 1, img/s at batch {report.settings.get('batch')}, medians of "
             f"{report.settings.get('repeats')} runs after warm-up.\n",
             markdown_table(report.rows)]
    if report.failures:
        parts.append("\n**Gate failed** (budget: " + _budget_text(report.budget) + "):\n\n"
                     + "\n".join(f"- {f}" for f in report.failures) + "\n")
    if notes(report.rows):
        parts.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes(report.rows)) + "\n")
    parts.append("\n## Per-dataset drift\n\n" + _drift_md(report))
    parts.append("\n## Machine\n\n" + "\n".join(f"- {line}" for line in _env_lines(report.environment)) + "\n")
    return "\n".join(parts)


def html_report(report: BenchmarkReport, plots: dict[str, bytes]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join(
        f'<tr class="{esc(r.status.value)}">' + "".join(f"<td>{esc(c)}</td>" for c in row_cells(r)) + "</tr>"
        for r in report.rows
    )
    figures = "".join(
        f"<h2>{esc(PLOTS[k][0])}</h2><img alt=\"{esc(k)}\" src=\"data:image/png;base64,"
        f"{base64.b64encode(png).decode('ascii')}\">"
        for k, png in plots.items()
    )
    env = "".join(f"<li>{esc(line)}</li>" for line in _env_lines(report.environment))
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes(report.rows))
    note_html = f"<h2>Notes</h2><ul>{note_items}</ul>" if note_items else ""
    exceeded = ""
    if report.failures:
        exceeded = (f"<p class=\"bad\">Gate failed (budget: {esc(_budget_text(report.budget))}):</p><ul class=\"bad\">"
                    + "".join(f"<li>{esc(f)}</li>" for f in report.failures) + "</ul>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:nth-child(-n+3){text-align:left}"
             "tr.ok{background:#eefbee}tr.validation_failed,tr.export_failed{background:#fdeaea}"
             "tr.not_runnable,tr.simulated{background:#f4f4f4}.bad{color:#b00}img{max-width:100%}")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>rali-edge benchmark</title>"
        f"<style>{style}</style></head><body>"
        f"<h1>rali-edge benchmark</h1><p>Bundle: <code>{esc(report.bundle)}</code></p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{exceeded}{note_html}"
        f"{figures}<h2>Machine</h2><ul>{env}</ul></body></html>\n"
    )


def write_reports(report: BenchmarkReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the three report files atomically (a crash never leaves a half-written one)."""
    out_dir = Path(out_dir)
    plots = render_plots(report)
    paths = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    report.paths = {k: str(p) for k, p in paths.items()}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["md"], markdown_report(report))
    atomic_write_text(paths["html"], html_report(report, plots))
    return paths
