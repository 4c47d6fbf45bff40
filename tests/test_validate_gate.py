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
