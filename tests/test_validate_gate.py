"""`rali-edge validate`: report.json, table, exit 0 within budget, 1 over it, 2 on bad options."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.export.tensorrt import tensorrt_available


def _args(case, *artifacts, extra=()):
    return ["validate", *map(str, artifacts), "--bundle", str(case["bundle"]), "--meta", str(case["test"]),
            "--image-root", str(case["root"]), *extra]


@pytest.mark.slow
def test_gate_passes_a_loose_budget_and_writes_the_report(int8_case, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real engine")  # without TensorRT: reported, not failed; with it: opened, and fails
    trt_here = tensorrt_available()[0]
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _args(int8_case, int8_case["int8"].path, engine,
                                        extra=["--max-plcc-drop", "0.05", "--max-srcc-drop", "0.05",
                                               "--out", str(out), "--batch-size", "32"]))
    assert res.exit_code == (1 if trt_here else 0), res.output
    assert ("FAIL" if trt_here else "within budget") in res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["passed"] is (not trt_here) and doc["budget"]["max_plcc_drop"] == 0.05
    rows = {r["artifact"]: r for r in doc["rows"]}
    q = rows["int8.onnx"]
    assert q["status"] == "ok" and q["dataset"] == "test" and q["n"] == 120
    for key in ("plcc", "srcc", "dplcc", "dsrcc", "score_mae", "max_abs_change", "embedding_cosine"):
        assert isinstance(q[key], float)
    expected = "failed" if trt_here else "not runnable here"
    assert rows["model.engine"]["status"] == expected and rows["model.engine"]["reason"]
    assert rows["model.engine"]["plcc"] is None


@pytest.mark.slow
def test_gate_fails_a_broken_artifact_at_zero_budget(int8_case, perturbed_copy, tmp_path):
    broken = perturbed_copy(int8_case["onnx"], tmp_path / "broken.onnx")
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _args(int8_case, broken, extra=["--max-plcc-drop", "0.0", "--out", str(out)]))
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "PLCC dropped" in res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["passed"] is False and doc["failures"]
    # Without a budget the same artifact is reported, not gated.
    res = CliRunner().invoke(app, _args(int8_case, broken))
    assert res.exit_code == 0, res.output


def test_gate_rejects_a_negative_budget(tmp_path):
    # The files exist but are never read: the budget is rejected before any work (exit 2).
    (tmp_path / "t.json").write_text("[]")
    (tmp_path / "x.onnx").write_bytes(b"")
    case = {"bundle": tmp_path, "test": tmp_path / "t.json", "root": tmp_path}
    res = CliRunner().invoke(app, _args(case, tmp_path / "x.onnx", extra=["--max-plcc-drop", "-1"]))
    assert res.exit_code == 2 and "drop budget" in res.output


def test_missing_artifact_is_a_usage_error(tmp_path):
    (tmp_path / "t.json").write_text("[]")
    case = {"bundle": tmp_path, "test": tmp_path / "t.json", "root": tmp_path}
    res = CliRunner().invoke(app, _args(case, tmp_path / "missing.onnx"))
    assert res.exit_code == 2 and "missing.onnx" in res.output


# ---------------------------------------------------------------- gate on the point or on the interval


@pytest.fixture(scope="module")
def synth_int8(tmp_path_factory):
    """A tiny random bundle, the synthetic data (distortion_class, severity, ... fields) and its INT8 ONNX."""
    import torch

    from rali_edge.data.synth import synthesize
    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("gate_modes")
    bundle = make_random_bundle(root / "bundle")
    data = root / "data"
    synthesize(data, seed=0, sources=4, size=48, progress=False)
    result = export_bundle(bundle, "onnx", "int8", out_dir=root / "exports", name="int8",
                           calibration=data / "metas" / "train.json", calibration_size=32, image_root=data)
    return {"bundle": bundle, "test": data / "metas" / "test.json", "root": data, "int8": result.path}


def _drift(out) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return next(r for r in doc["rows"] if r["artifact"] == "int8.onnx")


def test_a_budget_between_the_point_drop_and_the_bound_passes_point_and_fails_upper(synth_int8, tmp_path):
    res = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=["--out", str(tmp_path / "free")]))
    assert res.exit_code == 0, res.output
    row = _drift(tmp_path / "free")
    point, upper = -row["dplcc"], -row["dplcc_ci"][0]        # the measured drop, the pessimistic one
    assert upper > max(point, 0.0), f"the interval should reach below the point estimate: {row}"
    budget = (max(point, 0.0) + upper) / 2
    runs = {}
    for gate in ("point", "upper"):
        out = tmp_path / gate
        runs[gate] = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=[
            "--max-plcc-drop", f"{budget:.6f}", "--gate", gate, "--out", str(out)]))
    assert runs["point"].exit_code == 0, runs["point"].output
    assert runs["upper"].exit_code == 1, runs["upper"].output
    assert "upper bound of the 95% interval" in runs["upper"].output
    for gate in ("point", "upper"):
        doc = json.loads((tmp_path / gate / "report.json").read_text())
        assert doc["budget"]["gate"] == gate and doc["passed"] is (gate == "point")
        assert f"gate '{gate}'" in (tmp_path / gate / "report.md").read_text()
        assert f"gate &#x27;{gate}&#x27;" in (tmp_path / gate / "report.html").read_text()


def test_validate_reports_explain_the_drift(synth_int8, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=["--out", str(out)]))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema_version"] == 2 and doc["kind"] == "validate" and doc["bootstrap"]["resamples"] == 1000
    row = _drift(out)
    assert row["dplcc_ci"][0] <= row["dplcc"] <= row["dplcc_ci"][1]
    assert row["ranking"]["n"] == 56 and 0 <= row["ranking"]["flip_share"] <= 1
    analysis = doc["analysis"]
    assert "distortion_class" in analysis["slice_fields"] and "gt_quintile" in analysis["slice_fields"]
    (art,) = analysis["artifacts"]
    classes = {s["value"]: s for s in art["slices"] if s["field"] == "distortion_class"}
    assert set(classes) == {"blur", "compression", "darken", "noise", "null"}
    assert sum(s["n"] for s in classes.values()) == 56 and classes["null"]["small"]
    assert len(art["worst"]) == 8 and abs(art["worst"][0]["change"]) >= abs(art["worst"][-1]["change"])
    page = (out / "report.html").read_text()
    for section in ("summary", "intervals", "ranking", "slices", "worst"):
        assert f'<section id="{section}">' in page
    assert page.count("data:image/jpeg;base64,") == 8


def test_unknown_slice_field_is_rejected_before_any_work(synth_int8, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=[
        "--slice-by", "severity,distortion", "--slice-by", "distortoin_class", "--out", str(out)]))
    assert res.exit_code == 2, res.output
    assert "distortoin_class" in res.output and "fields that exist:" in res.output and "severity" in res.output
    assert not out.exists()
    res = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=["--gate", "lower"]))
    assert res.exit_code == 2 and "--gate 'lower'" in res.output


def test_slice_by_picks_the_fields(synth_int8, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _args(synth_int8, synth_int8["int8"], extra=[
        "--slice-by", "severity", "--slice-by", "gt_quintile", "--out", str(out)]))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["analysis"]["slice_fields"] == ["severity", "gt_quintile"]
    assert {s["field"] for s in doc["analysis"]["artifacts"][0]["slices"]} == {"severity", "gt_quintile"}
