"""`run_benchmark` / `rali-edge benchmark` end to end on a tiny random bundle and a tiny synthetic meta."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rali_edge.errors import UnsupportedOptionError
from rali_edge.report.benchmark import parse_formats, run_benchmark
from rali_edge.report.table import COLUMNS, Status, row_cells


def _dataset(root: Path, n: int = 8) -> tuple[Path, Path]:
    """n small RGB images of rising brightness and a meta JSON with gt_score_norm."""
    img_dir = root / "img"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        arr = (rng.random((40, 48, 3)) * (i + 1) * 30).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(img_dir / f"{i}.png")
        items.append({"image": f"{i}.png", "gt_score_norm": 1.0 + 4.0 * i / (n - 1)})
    meta = root / "tiny.json"
    meta.write_text(json.dumps(items))
    return meta, img_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rali_edge.model.tiny import make_random_bundle

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bench")
    bundle = make_random_bundle(root / "bundle")
    meta, img_dir = _dataset(root)
    return bundle, meta, img_dir


def test_parse_formats():
    assert parse_formats(None)[0] == "pytorch-fp32" and len(parse_formats("all")) == 10
    assert parse_formats("onnx-int8-cpu, pytorch-fp32") == ["pytorch-fp32", "onnx-int8-cpu"]  # table order
    with pytest.raises(UnsupportedOptionError, match="onnx-int9"):
        parse_formats("onnx-int9")


def test_failed_exports_and_unrunnable_rows_carry_reasons(tiny, tmp_path):
    # opset 17 is below what the ONNX exporter can write: the ONNX export fails up front (a real
    # failure, no mock), its INT8 child fails with it, and TensorRT cannot run on this machine.
    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "pytorch-fp32,onnx-fp32,onnx-int8-cpu,tensorrt-int8",
                           tmp_path / "out", opset=17, repeats=1, progress=False)
    by = {(r.format, r.precision): r for r in report.rows}
    assert by["pytorch", "fp32"].status is Status.OK
    assert by["pytorch", "fp32"].ms_per_img > 0 and by["pytorch", "fp32"].dplcc == 0.0
    onnx = by["onnx", "fp32"]
    assert onnx.status is Status.EXPORT_FAILED and "17" in onnx.detail
    assert by["onnx", "int8 (cpu)"].status is Status.EXPORT_FAILED
    assert "onnx fp32" in by["onnx", "int8 (cpu)"].detail
    trt = by["tensorrt", "int8"]
    if trt.status is Status.NOT_RUNNABLE:   # every machine without CUDA + TensorRT
        cells = row_cells(trt)
        assert "TensorRT" in cells[COLUMNS.index("ms/img")] and "TensorRT" in cells[COLUMNS.index("img/s")]
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["status"] for r in data["rows"]][:3] == ["ok", "export_failed", "export_failed"]


@pytest.mark.slow
def test_benchmark_end_to_end(tiny, tmp_path):
    bundle, meta, img_dir = tiny
    from rali_edge.cli.app import app

    result = CliRunner().invoke(app, [
        "benchmark", str(bundle), "--meta", str(meta), "--image-root", str(img_dir), "--out", str(tmp_path / "o"),
        "--formats", "pytorch-fp32,onnx-fp32,onnx-int8-cpu,coreml-fp16", "--repeats", "2", "--batch", "4",
        "--calib-size", "8", "--max-plcc-drop", "0.5",
    ])
    assert result.exit_code == 0, result.output
    for col in COLUMNS:
        assert col in result.output
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    rows = {(r["format"], r["precision"]): r for r in data["rows"]}
    for key in (("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8 (cpu)")):
        row = rows[key]
        assert row["status"] == "ok", row
        assert row["ms_per_img"] > 0 and row["img_per_s"] > 0 and row["size_mb"] > 0
        assert row["timing"]["batch_n"]["batch"] == 4 and row["timing"]["batch1"]["repeats"] == 2
        assert len(row["scores"]) == 8
    # ONNX FP32 matches the float model; INT8 moved the scores but stays correlated with them
    assert abs(rows["onnx", "fp32"]["dplcc"]) < 1e-3
    int8 = np.array(rows["onnx", "int8 (cpu)"]["scores"])
    assert np.corrcoef(int8, data["float_scores"])[0, 1] > 0.9
    assert rows["onnx", "int8 (cpu)"]["size_mb"] < rows["onnx", "fp32"]["size_mb"]
    coreml = rows["coreml", "fp16"]
    import sys

    if sys.platform != "darwin":
        assert coreml["status"] == "simulated" and coreml["ms_per_img"] is None
        assert "macOS" in coreml["timing_reason"] and coreml["plcc"] is not None
    assert (tmp_path / "o" / "report.html").stat().st_size > 10_000


def test_cli_exits_nonzero_when_plcc_drop_exceeded(tiny, tmp_path, monkeypatch):
    from rali_edge.cli.app import app
    from rali_edge.report import benchmark as bench

    real = bench.run_benchmark
    seen = {}

    def fake_drop(*args, **kwargs):
        report = real(*args, **kwargs)
        seen["limit"] = kwargs["max_plcc_drop"]
        report.rows[0].dplcc = -0.2   # pretend the float row dropped: the gate must fire
        return report

    monkeypatch.setattr(bench, "run_benchmark", fake_drop)
    bundle, meta, img_dir = tiny
    result = CliRunner().invoke(app, ["benchmark", str(bundle), "--meta", str(meta), "--image-root", str(img_dir),
                                      "--out", str(tmp_path / "o"), "--formats", "pytorch-fp32",
                                      "--repeats", "1", "--max-plcc-drop", "0.1"])
    assert seen["limit"] == 0.1
    assert result.exit_code == 1, result.output


def test_cli_rejects_unknown_format(tiny, tmp_path):
    from rali_edge.cli.app import app

    bundle, meta, img_dir = tiny
    result = CliRunner().invoke(app, ["benchmark", str(bundle), "--meta", str(meta), "--image-root", str(img_dir),
                                      "--out", str(tmp_path / "o"), "--formats", "onnx-fp33"])
    assert result.exit_code == 2
    assert "onnx-fp33" in result.output
