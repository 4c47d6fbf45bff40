"""The report's plots as PNG bytes (matplotlib's Agg canvas, no pyplot state, no display needed):
scores vs float, score changes, latency and size per benchmark row, and the change per slice with
its interval (report/slices.py), for `benchmark` and `validate` alike."""

from __future__ import annotations

import io
import math

import numpy as np

from rali_edge.report.analysis import Analysis
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import BenchmarkRow


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


def _slice_panel(ax, name: str, analysis: Analysis) -> None:
    arts = analysis.artifacts
    values = [s for s in arts[0].slices if s.field == name]
    step = 0.8 / len(arts)
    for i, a in enumerate(arts):
        points = [(j, s) for j, s in enumerate(s for s in a.slices if s.field == name) if s.dplcc is not None]
        label = a.artifact
        for small in (False, True):   # one call per artifact and kind of marker (hollow: a small slice)
            chosen = [(j, s) for j, s in points if s.small is small]
            if not chosen:
                continue
            x = np.array([s.dplcc for _, s in chosen])
            lo = np.array([s.dplcc_ci[0] if s.dplcc_ci else s.dplcc for _, s in chosen])
            hi = np.array([s.dplcc_ci[1] if s.dplcc_ci else s.dplcc for _, s in chosen])
            y = np.array([j for j, _ in chosen]) + (i - (len(arts) - 1) / 2) * step
            # clipped at 0: a bound equal to the point can come out 1e-16 past it, which matplotlib refuses
            ax.errorbar(x, y, xerr=[np.maximum(x - lo, 0.0), np.maximum(hi - x, 0.0)], fmt="o", ms=4, capsize=2, color=f"C{i % 10}",
                        mfc="white" if small else f"C{i % 10}", label=label)
            label = None   # one legend entry per artifact
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(values)))
    ax.set_yticklabels([f"{s.value} (n={s.n}{', small' if s.small else ''})" for s in values], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("dPLCC vs float (95% interval)")


def slices_png(analysis: Analysis | None) -> bytes | None:
    """dPLCC per slice, one panel per slice field, one marker per artifact with its 95 % interval
    (hollow: a small slice). None when nothing has a dPLCC (no ground truth, or no artifact)."""
    if analysis is None or not analysis.artifacts or not any(
            s.dplcc is not None for a in analysis.artifacts for s in a.slices):
        return None
    counts = [sum(s.field == f for s in analysis.artifacts[0].slices) for f in analysis.fields]
    scale = max(1.0, len(analysis.artifacts) / 4)
    heights = [max(1.0, 0.3 * c * scale) + 0.6 for c in counts]
    fig = _figure(8, sum(heights) + 0.8)
    grid = fig.add_gridspec(len(counts), 1, height_ratios=heights)
    for k, name in enumerate(analysis.fields):
        _slice_panel(fig.add_subplot(grid[k]), name, analysis)
    fig.axes[0].legend(fontsize=7, loc="best")   # the section's heading names the plot: no suptitle
    fig.tight_layout()
    return _png(fig)


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
