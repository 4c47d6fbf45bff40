"""report.html as ONE self-contained file: tables, PNG plots and JPEG thumbnails inline (`data:`
URIs), no external URL, no script. Each part is a `<section id=...>` (SECTION_IDS), linked from a
table of contents at the top, so a reader (or a test) finds every part by its id.

Size bound (tested, tests/test_report_html.py): with up to MAX_ARTIFACTS_IN_BOUND artifacts and
DEFAULT_WORST thumbnails each, a page stays under HTML_MAX_BYTES. Thumbnails are capped by
report/gallery.py (THUMB_MAX_BYTES of JPEG each); plots are PNGs of a fixed resolution.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from rali_edge.report.analysis import Analysis
from rali_edge.report.detail_tables import TextTable, bootstrap_text, interval_table, ranking_table, slice_table
from rali_edge.report.gallery import Thumbnails
from rali_edge.report.slices import SMALL_SLICE

HTML_MAX_BYTES = 3_000_000
MAX_ARTIFACTS_IN_BOUND = 20   # more than the format table's variants (a test checks)
# Section ids every report has; `benchmark` adds "plots" and "machine".
DETAIL_SECTION_IDS = ("intervals", "ranking", "slices", "worst")
STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0}"
         "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:nth-child(-n+2){text-align:left}"
         "tr.ok{background:#eefbee}tr.validation_failed,tr.export_failed,tr.failed{background:#fdeaea}"
         "tr.not_runnable,tr.not_runnable_here,tr.simulated,tr.reference{background:#f4f4f4}"
         "tr.small{color:#777}.bad{color:#b00}"
         "img.plot{max-width:100%}figure.thumb{display:inline-block;width:150px;margin:4px;vertical-align:top;"
         "font-size:11px;overflow-wrap:anywhere}figure.thumb img{display:block;max-width:128px;max-height:128px}"
         "nav a{margin-right:1em}")

esc = html.escape


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: str      # HTML


def table_html(table: TextTable, row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def png_html(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _gallery(analysis: Analysis | None, thumbnails: Thumbnails) -> str:
    if analysis is None or not analysis.artifacts:
        return "<p>No artifact produced scores: no images to show.</p>"
    parts = ["<p>Per artifact, the images whose score changed most against the float model "
             "(thumbnails at most 128 px).</p>"]
    for a in analysis.artifacts:
        figures = []
        for w in a.worst:
            uri, why = thumbnails.uri(w.path)
            picture = (f'<img alt="{esc(w.image)}" src="{uri}">' if uri
                       else f'<span class="bad">no thumbnail: {esc(why or "")}</span>')
            gt = "—" if w.gt is None else f"{w.gt:.3f}"
            figures.append(f'<figure class="thumb">{picture}<figcaption>#{w.rank} {esc(w.image)} ({esc(w.dataset)})'
                           f"<br>float {w.float_score:.3f} → {w.score:.3f} ({w.change:+.3f})<br>ground truth {gt}"
                           "</figcaption></figure>")
        parts.append(f"<h3>{esc(a.artifact)}</h3><div>{''.join(figures)}</div>")
    return "".join(parts)


def _slices(analysis: Analysis | None, plot: bytes | None) -> str:
    if analysis is None or not analysis.artifacts:
        return "<p>No artifact produced scores: nothing to break down.</p>"
    parts = [f"<p>Slice fields: {esc(', '.join(analysis.fields) or 'none')}. Grey rows: small slices "
             f"(fewer than {SMALL_SLICE} images).</p>"]
    if plot is not None:
        parts.append(png_html(plot, "drift per slice"))
    for a in analysis.artifacts:
        classes = ["small" if s.small else "" for s in a.slices]
        parts.append(f"<h3>{esc(a.artifact)} ({esc(a.status)})</h3>" + table_html(slice_table(a), classes))
    return "".join(parts)


def detail_sections(drift: Sequence[dict], analysis: Analysis | None, gate_text: str,
                    slice_plot: bytes | None) -> list[Section]:
    """The intervals, ranking, slices and worst-images sections, for `validate` and `benchmark` alike."""
    status = [d.get("status", "").replace(" ", "_") for d in drift]
    ranked = [d for d in drift if d.get("status") != "reference"]
    return [
        Section("intervals", "Accuracy with 95% intervals",
                f"<p>{esc(bootstrap_text())} Budget: {esc(gate_text)}.</p>"
                + table_html(interval_table(drift), status)),
        Section("ranking", "Ranking",
                "<p>Float vs artifact order: Kendall tau-b; the share of the float model's top / bottom k "
                "images the artifact keeps there; image pairs whose order flips (counted exactly).</p>"
                + table_html(ranking_table(ranked))),
        Section("slices", "Drift per slice", _slices(analysis, slice_plot)),
        Section("worst", "Worst images", _gallery(analysis, Thumbnails())),
    ]


def page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole document: title, intro (HTML), a table of contents, then every section."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1>{intro}<nav>{nav}</nav>{body}</body></html>\n")
