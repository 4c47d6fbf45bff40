"""report.json / report.md / report.html: atomic writes, embedded PNG plots, machine record."""

from __future__ import annotations

import base64
import html
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from rali_edge.report import render
from rali_edge.report.environment import collect_environment
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import COLUMNS, Status


@pytest.fixture
def make_report(sample_rows):
    """make_report(failures=()): a BenchmarkReport over the shared sample rows."""

    def make(failures=()) -> BenchmarkReport:
        rows = sample_rows()
        ref = rows[0].scores
        return BenchmarkReport(
            rows=rows, bundle="/tmp/bundle", datasets={"tiny": len(ref)}, float_scores=ref,
            gt_scores=np.linspace(1, 5, len(ref)), environment=collect_environment(threads=2),
            settings={"batch": 8, "repeats": 3}, budget={"max_plcc_drop": 0.02, "max_srcc_drop": None},
            failures=list(failures),
        )

    return make


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def test_html_is_self_contained_with_png_images(tmp_path, make_report):
    paths = render.write_reports(make_report(), tmp_path)
    parser = _Imgs()
    parser.feed(paths["html"].read_text())
    assert len(parser.srcs) == len(render.PLOTS)  # scatter, change histogram, latency, size
    for src in parser.srcs:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        png = base64.b64decode(src[len(prefix):], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 1000
    for col in COLUMNS:
        assert col in parser.cells
    assert "Core ML prediction needs macOS" in parser.cells


def test_json_has_every_figure_and_machine(tmp_path, make_report):
    paths = render.write_reports(make_report(), tmp_path)
    data = json.loads(paths["json"].read_text())
    env = data["environment"]
    assert {"versions", "cpu_model", "threads", "date"} <= set(env)
    assert {"torch", "onnxruntime", "coremltools"} <= set(env["versions"])
    assert len(data["rows"]) == 5
    assert data["status_counts"] == {s.value: 1 for s in Status}
    assert data["rows"][1]["dplcc"] == pytest.approx(-0.06)
    assert len(data["float_scores"]) == 12


def test_markdown_and_html_name_the_gate_failures(tmp_path, make_report):
    failure = "onnx int8-cpu on tiny: PLCC dropped 0.0600 > 0.02"
    paths = render.write_reports(make_report(failures=[failure]), tmp_path)
    md = paths["md"].read_text()
    assert "| Format | Precision | Status | Size (MB) | PLCC | SRCC | dPLCC | dSRCC | ms/img | img/s |" in md
    assert "Gate failed" in md and "max PLCC drop 0.02; gate 'point'" in md and failure in md
    assert html.escape(failure) in paths["html"].read_text()
    data = json.loads(paths["json"].read_text())
    assert data["passed"] is False and data["failures"] == [failure]


def test_a_report_without_failures_passes(tmp_path, make_report):
    report = make_report()
    assert report.ok and [r.status for r in report.not_runnable] == [Status.NOT_RUNNABLE]
    paths = render.write_reports(report, tmp_path)
    assert "Gate failed" not in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["passed"] is True


def test_writes_are_atomic(tmp_path, monkeypatch, make_report):
    # An old report stays whole when rendering the new one fails half-way.
    paths = render.write_reports(make_report(), tmp_path)
    old = {k: p.read_bytes() for k, p in paths.items()}

    def boom(report, plots):
        raise RuntimeError("crash while rendering html")

    monkeypatch.setattr(render, "html_report", boom)
    with pytest.raises(RuntimeError):
        render.write_reports(make_report(), tmp_path)
    assert paths["html"].read_bytes() == old["html"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in render.REPORT_FILES.values()]
    assert leftovers == []


def test_writes_go_through_atomic_helpers(tmp_path, monkeypatch, make_report):
    used = []
    real_text, real_json = render.atomic_write_text, render.atomic_write_json
    monkeypatch.setattr(render, "atomic_write_text", lambda p, t: used.append(p.name) or real_text(p, t))
    monkeypatch.setattr(render, "atomic_write_json", lambda p, o: used.append(p.name) or real_json(p, o))
    render.write_reports(make_report(), tmp_path)
    assert sorted(used) == sorted(render.REPORT_FILES.values())
