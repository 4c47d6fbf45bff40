"""`run_benchmark` / `rali-edge benchmark` end to end on a tiny random bundle and a tiny synthetic meta:
its table, its exit codes (0 held, 1 failed, 2 rejected up front) and its agreement with `validate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rali_edge.errors import ExportError, UnsupportedOptionError
from rali_edge.export.formats import all_variants, caps
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


def _cli(tiny, out: Path, *args: str):
    from rali_edge.cli.app import app

    bundle, meta, img_dir = tiny
    return CliRunner().invoke(app, ["benchmark", str(bundle), "--meta", str(meta), "--image-root", str(img_dir),
                                    "--out", str(out), "--repeats", "1", *args])


def test_parse_formats():
    every = parse_formats("all")
    assert every[0] == "pytorch-fp32" and every[1:] == list(all_variants())   # the format table's variants
    assert parse_formats("onnx-int8-cpu, pytorch-fp32") == ["pytorch-fp32", "onnx-int8-cpu"]  # table order
    with pytest.raises(UnsupportedOptionError, match="onnx-int9"):
        parse_formats("onnx-int9")


def test_opset_17_is_rejected_before_any_work(tiny, tmp_path):
    # The dynamo exporter cannot write opset 17: every ONNX-based row would fail, so nothing starts.
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32,onnx-fp32,onnx-int8-cpu", "--opset", "17",
               "--max-plcc-drop", "0.01")
    assert res.exit_code == 2, res.output
    assert "17" in res.output and "onnx-fp32" in res.output
    assert not (tmp_path / "o").exists()


def test_opset_applies_only_to_formats_that_have_one(tiny, tmp_path):
    # Core ML has no opset: --opset 19 is fine for a run that includes it (used by the ONNX rows only).
    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "onnx-fp32,coreml-fp16", tmp_path / "o", opset=19, repeats=1,
                           progress=False)
    assert report.ok, report.failures


def test_a_failed_export_exits_1_and_names_the_row(tiny, tmp_path, monkeypatch):
    import rali_edge.export.backends.onnx as onnx_backend

    def broken(*args, **kwargs):
        raise ExportError("quantizer crashed (made to fail by the test)")

    monkeypatch.setattr(onnx_backend, "export_quantized", broken)
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32,onnx-fp32,onnx-int8-cpu,tensorrt-int8",
               "--calibration-size", "8")
    assert res.exit_code == 1, res.output
    assert "onnx int8 (cpu): export failed: quantizer crashed" in res.output
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    by = {(r["format"], r["precision"]): r for r in data["rows"]}
    assert by["pytorch", "fp32"]["status"] == "ok" and by["onnx", "fp32"]["status"] == "ok"
    assert by["onnx", "int8 (cpu)"]["status"] == "export_failed"
    assert data["passed"] is False and len(data["failures"]) == 1
    trt_here = caps("tensorrt").runnable_here()[0]
    if not trt_here:   # every machine without CUDA + TensorRT: listed, not a failure
        assert by["tensorrt", "int8"]["status"] == "not_runnable"
        assert "not runnable here: tensorrt int8" in res.output


def test_a_budget_breach_exits_1(tiny, tmp_path, monkeypatch, perturbed_copy):
    # The ONNX export really runs, then its basis scores are reversed: a broken artifact, measured for real.
    import rali_edge.export.backends.onnx as onnx_backend

    real = onnx_backend.export_float

    def export_then_break(job):
        result = real(job)
        perturbed_copy(result.path, result.path)
        return result

    monkeypatch.setattr(onnx_backend, "export_float", export_then_break)
    bundle, meta, img_dir = tiny
    # Labels in the order the random float model ranks the images (PLCC > 0), so reversing its basis
    # scores is a real drop.
    items = json.loads(meta.read_text())
    from rali_edge.runtime import open_runner
    from rali_edge.evaluation.evalset import load_eval_sets

    runner = open_runner(bundle)
    float_scores = runner.run(load_eval_sets([meta], img_dir, runner.preprocess_config())[0].pixels)["score"]
    for item, s in zip(items, float_scores):
        item["gt_score_norm"] = float(s)
    ranked = tmp_path / "ranked.json"
    ranked.write_text(json.dumps(items))
    tiny_ranked = (bundle, ranked, img_dir)
    res = _cli(tiny_ranked, tmp_path / "o", "--formats", "pytorch-fp32,onnx-fp32", "--max-plcc-drop", "0.05")
    assert res.exit_code == 1, res.output
    assert "PLCC dropped" in res.output and "onnx fp32" in res.output
    res = _cli(tiny_ranked, tmp_path / "o2", "--formats", "pytorch-fp32,onnx-fp32")   # no budget: exit 0
    assert res.exit_code == 0, res.output


def test_unrunnable_rows_carry_reasons(tiny, tmp_path):
    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "pytorch-fp32,tensorrt-fp16", tmp_path / "out", repeats=1,
                           progress=False)
    by = {(r.format, r.precision): r for r in report.rows}
    assert by["pytorch", "fp32"].status is Status.OK
    assert by["pytorch", "fp32"].ms_per_img > 0 and by["pytorch", "fp32"].dplcc == 0.0
    trt = by["tensorrt", "fp16"]
    if caps("tensorrt").runnable_here()[0]:   # CUDA + TensorRT: the engine is built and measured
        assert trt.status is Status.OK and trt.ms_per_img > 0
    else:
        assert trt.status is Status.NOT_RUNNABLE and report.ok and report.not_runnable == [trt]
        cells = row_cells(trt)
        assert "tensorrt" in cells[COLUMNS.index("ms/img")].lower()


def test_validate_and_benchmark_agree_exactly(tiny, tmp_path):
    """One evaluation core: the same artifacts through both commands give identical numbers."""
    from rali_edge.validate import validate_artifacts

    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "pytorch-fp32,onnx-fp32,onnx-int8-cpu,coreml-fp16",
                           tmp_path / "b", repeats=1, calibration_size=8, progress=False)
    rows = {r.artifact: r for r in report.rows if r.artifact}
    artifacts = [Path(r.artifact) for r in report.rows if r.format != "pytorch"]
    v = validate_artifacts(artifacts, bundle, [meta], img_dir)
    assert set(v.scores) == {bundle.name, *(a.name for a in artifacts)}
    np.testing.assert_array_equal(v.scores[bundle.name]["tiny"], report.float_scores)
    by_name = {r.artifact: r for r in v.rows}
    for path in artifacts:
        bench_row, val_row = rows[str(path)], by_name[path.name]
        np.testing.assert_array_equal(v.scores[path.name]["tiny"], bench_row.scores)
        assert (val_row.plcc, val_row.srcc, val_row.dplcc, val_row.dsrcc) == \
            (bench_row.plcc, bench_row.srcc, bench_row.dplcc, bench_row.dsrcc)
        assert val_row.status == bench_row.drift[0]["status"]


@pytest.mark.slow
def test_benchmark_end_to_end(tiny, tmp_path):
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32,onnx-fp32,onnx-int8-cpu,coreml-fp16",
               "--repeats", "2", "--batch", "4", "--calibration-size", "8", "--max-plcc-drop", "0.5")
    assert res.exit_code == 0, res.output
    for col in COLUMNS:
        assert col in res.output
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
    if caps("coreml").runnable_here()[0]:   # macOS: Core ML predicts, the package is measured
        assert coreml["status"] == "ok" and coreml["ms_per_img"] > 0
    else:
        assert coreml["status"] == "simulated" and coreml["ms_per_img"] is None
        assert "macOS" in coreml["timing_reason"] and coreml["plcc"] is not None
    assert (tmp_path / "o" / "report.html").stat().st_size > 10_000


def test_old_option_spelling_still_works(tiny, tmp_path):
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32", "--calib-size", "8")
    assert res.exit_code == 0, res.output
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32", "--calib-size", "8", "--calibration-size", "9")
    assert res.exit_code == 2 and "--calib-size" in res.output


def test_cli_rejects_unknown_format(tiny, tmp_path):
    res = _cli(tiny, tmp_path / "o", "--formats", "onnx-fp33")
    assert res.exit_code == 2
    assert "onnx-fp33" in res.output


def test_device_preprocessing_rows_in_the_benchmark(tiny, tmp_path):
    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "pytorch-fp32,onnx-fp32", tmp_path / "o", repeats=1,
                           device_preprocess="jpeg50,nearest", progress=False)
    assert report.ok, report.failures
    by = {(r.format, r.precision): r for r in report.rows}
    for key in (("pytorch", "fp32"), ("onnx", "fp32")):
        device = {d["device_preprocess"]: d for d in by[key].drift if d["device_preprocess"]}
        assert set(device) == {"jpeg50", "nearest"} and device["jpeg50"]["dataset"] == "tiny@jpeg50"
    torch_jpeg = next(d for d in by["pytorch", "fp32"].drift if d["device_preprocess"] == "jpeg50")
    onnx_jpeg = next(d for d in by["onnx", "fp32"].drift if d["device_preprocess"] == "jpeg50")
    assert torch_jpeg["score_mae"] > 0   # JPEG moved the float model's own scores
    assert onnx_jpeg["dplcc"] == pytest.approx(torch_jpeg["dplcc"], abs=1e-4)
    assert "tiny@jpeg50" in (tmp_path / "o" / "report.md").read_text()
    with pytest.raises(Exception, match="jpeg0"):
        run_benchmark(bundle, [meta], img_dir, "pytorch-fp32", tmp_path / "p", device_preprocess="jpeg0")
    assert not (tmp_path / "p").exists()


def test_the_demo_report_explains_the_int8_drift(tiny, tmp_path):
    """What the demo's benchmark stage writes, on its synthetic data (small): per-distortion drift of the
    INT8 artifact with intervals, ranking figures and a gallery of the worst images."""
    from rali_edge.cli.app import app
    from rali_edge.data.synth import synthesize

    bundle = tiny[0]
    data = tmp_path / "data"
    synthesize(data, seed=0, sources=4, size=48, progress=False)
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["benchmark", str(bundle), "--meta", str(data / "metas" / "test.json"),
                                   "--image-root", str(data), "--calibration", str(data / "metas" / "train.json"),
                                   "--calibration-size", "32", "--formats", "pytorch-fp32,onnx-int8-cpu",
                                   "--repeats", "1", "--gate", "upper", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "gate 'upper'" in res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema_version"] == 2 and doc["budget"]["gate"] == "upper"
    int8 = next(r for r in doc["rows"] if r["precision"] == "int8 (cpu)")
    (drift,) = int8["drift"]
    assert drift["dplcc_ci"][0] <= drift["dplcc"] <= drift["dplcc_ci"][1]
    assert drift["ranking"]["pairs"] == 56 * 55 // 2 and drift["ranking"]["k"] == 6
    (analysis,) = doc["analysis"]["artifacts"]
    assert analysis["artifact"] == "onnx int8 (cpu)"
    per_class = [s for s in analysis["slices"] if s["field"] == "distortion_class"]
    assert {s["value"] for s in per_class} == {"blur", "compression", "darken", "noise", "null"}
    for s in per_class:
        if s["n"] >= 3 and s["dplcc"] is not None:
            assert s["dplcc_ci"][0] <= s["dplcc"] <= s["dplcc_ci"][1], s
    assert len(analysis["worst"]) == 8
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "| distortion_class | blur |" in md and "## Worst images" in md and "## Ranking" in md
    for section in ("intervals", "ranking", "slices", "worst"):
        assert f'<section id="{section}">' in page
    assert page.count("data:image/jpeg;base64,") == 8


def test_bad_slice_field_is_rejected_before_any_export(tiny, tmp_path):
    res = _cli(tiny, tmp_path / "o", "--formats", "pytorch-fp32,onnx-fp32", "--slice-by", "severity")
    assert res.exit_code == 2, res.output
    assert "--slice-by severity" in res.output and "fields that exist: dataset, gt_quintile" in res.output
    assert not (tmp_path / "o").exists()
