"""report.html: one self-contained file with every section, a stated size bound, and a real headless
browser that loads it without console errors (skipped, saying why, where no Chromium is installed)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rali_edge.export.formats import all_variants
from rali_edge.report import render
from rali_edge.report.analysis import AnalysisSettings, analyse
from rali_edge.report.environment import collect_environment
from rali_edge.report.gallery import DEFAULT_WORST
from rali_edge.report.html import DETAIL_SECTION_IDS, HTML_MAX_BYTES, MAX_ARTIFACTS_IN_BOUND
from rali_edge.report.images import ImageTable
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import BenchmarkRow, Status

BENCHMARK_SECTIONS = ("summary", *DETAIL_SECTION_IDS, "plots", "machine")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _images(folder: Path, n: int, size: tuple[int, int] = (48, 40), seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


def _report(folder: Path, n: int = 40, artifacts: int = 2, size=(48, 40), failures=()) -> BenchmarkReport:
    """A benchmark report over `n` real images on disk, with `artifacts` measured artifacts."""
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 5, n)
    ref = gt + rng.normal(0, 0.5, n)
    paths = _images(folder, n, size)
    table = ImageTable(image=[Path(p).name for p in paths], path=paths, dataset=["tiny"] * n, gt=gt,
                       fields={"distortion_class": [("blur", "noise", "null")[i % 3] for i in range(n)]})
    rows = [BenchmarkRow("pytorch", "fp32", Status.OK, size_mb=1.0, plcc=0.9, srcc=0.9, dplcc=0.0, dsrcc=0.0,
                         ms_per_img=2.0, img_per_s=500.0, scores=ref)]
    for a in range(artifacts):
        scores = ref + rng.normal(0, 0.05, n)
        scores[a * DEFAULT_WORST:(a + 1) * DEFAULT_WORST] += 1.0   # each artifact's own worst images
        rows.append(BenchmarkRow("onnx", f"int8-{a}", Status.OK, size_mb=0.3, plcc=0.89, srcc=0.9, dplcc=-0.01,
                                 dsrcc=0.0, ms_per_img=1.0, img_per_s=900.0, scores=scores))
    report = BenchmarkReport(rows=rows, bundle="/tmp/bundle", datasets={"tiny": n}, float_scores=ref, gt_scores=gt,
                             environment=collect_environment(threads=2), settings={"batch": 8, "repeats": 3},
                             budget={"max_plcc_drop": 0.02, "max_srcc_drop": None, "gate": "upper"},
                             failures=list(failures), images=table)
    measured = [(f"{r.format} {r.precision}", "ok", r.scores) for r in rows[1:]]
    report.analysis = analyse(ref, measured, table, AnalysisSettings())
    return report


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.ids.append(attrs.get("id", ""))
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if "href" in attrs:
            self.links.append(attrs["href"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _decode(src: str) -> Image.Image:
    kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,(.+)", src).groups()
    img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    img.load()
    assert img.format == kind.upper()
    return img


def test_every_section_and_only_embedded_content(tmp_path):
    paths = render.write_reports(_report(tmp_path / "img"), tmp_path / "out")
    page = _parse(paths["html"])
    assert page.ids == list(BENCHMARK_SECTIONS)
    assert "script" not in page.tags
    assert all(link.startswith("#") for link in page.links)      # table of contents only, no external URL
    images = [_decode(src) for src in page.srcs]                  # every image is inline and decodes
    jpegs = [img for img in images if img.format == "JPEG"]
    assert len(jpegs) == 2 * DEFAULT_WORST                        # two artifacts' galleries
    assert len(images) - len(jpegs) == len(render.PLOTS) + 1      # the plots + the slice plot
    assert "http://" not in paths["html"].read_text() and "https://" not in paths["html"].read_text()


def test_the_three_files_hold_the_same_figures(tmp_path):
    report = _report(tmp_path / "img")
    paths = render.write_reports(report, tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert doc["schema_version"] == 2 and doc["budget"]["gate"] == "upper"
    art = doc["analysis"]["artifacts"][0]
    blur = next(s for s in art["slices"] if s["field"] == "distortion_class" and s["value"] == "blur")
    cell = f"[{blur['dplcc_ci'][0]:+.4f}, {blur['dplcc_ci'][1]:+.4f}]"
    assert cell in md and cell in page
    worst = art["worst"][0]
    assert f"{worst['change']:+.4f}" in md and worst["image"] in page
    for text in ("gate 'upper'", "Drift per slice", "Worst images", "Ranking", "95% CI"):
        assert text in md and html.escape(text) in page


def test_the_page_stays_within_its_stated_bound(tmp_path):
    # The worst case: the most artifacts the bound covers, each with its own worst images, all of them
    # noise pictures (JPEG cannot compress noise).
    assert MAX_ARTIFACTS_IN_BOUND > len(all_variants())              # `--formats all` is covered
    n = MAX_ARTIFACTS_IN_BOUND * DEFAULT_WORST
    report = _report(tmp_path / "img", n=n, artifacts=MAX_ARTIFACTS_IN_BOUND, size=(320, 240))
    shown = {w.path for a in report.analysis.artifacts for w in a.worst}
    assert len(shown) == n                                           # every thumbnail a different picture
    paths = render.write_reports(report, tmp_path / "out")
    size = paths["html"].stat().st_size
    print(f"report.html: {size} bytes for {len(shown)} thumbnails")
    assert size <= HTML_MAX_BYTES, f"report.html is {size} bytes, over its bound {HTML_MAX_BYTES}"


# ---------------------------------------------------------------- a real browser


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


needs_browser = pytest.mark.skipif(_browser() is None, reason="no Chromium/Chrome binary on PATH "
                                   "(Debian: apt-get install chromium)")

# Injected into a copy of the page by the test only (the report itself has no script): after load,
# every image must have decoded.
_IMAGE_CHECK = ("<script>window.addEventListener('load',()=>{for(const i of document.images){"
                "if(!i.complete||i.naturalWidth===0)console.error('broken image: '+i.alt)}"
                "document.body.setAttribute('data-loaded','yes')});</script>")


def browser_load(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(DOM after load, console messages) of `page` in headless Chromium, with the image check added."""
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", _IMAGE_CHECK + "</body>"),
                       encoding="utf-8")
    run = subprocess.run([_browser(), "--headless=new", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return run.stdout, console


@needs_browser
def test_the_report_loads_in_a_browser_without_console_errors(tmp_path):
    paths = render.write_reports(_report(tmp_path / "img"), tmp_path / "out")
    dom, console = browser_load(paths["html"], tmp_path)
    assert console == []
    assert 'data-loaded="yes"' in dom                                   # the load event ran
    for section in BENCHMARK_SECTIONS:
        assert f'<section id="{section}">' in dom


@needs_browser
def test_the_browser_check_catches_errors(tmp_path):
    # The check itself must be able to fail: a script error and a broken image are both reported.
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><section id="summary"></section>'
                    '<img alt="bad" src="data:image/png;base64,AAAA"><script>notDefined();</script></body></html>')
    dom, console = browser_load(page, tmp_path)
    assert any("Uncaught ReferenceError: notDefined" in line for line in console), console
    assert any("broken image: bad" in line for line in console), console
