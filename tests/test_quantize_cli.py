"""`rali-edge quantize` (module cli/quantize_cmd.py), run through a Typer app of its own."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from rali_edge.cli import quantize_cmd

app = typer.Typer()
app.command()(quantize_cmd.quantize)


@pytest.mark.slow
def test_quantize_cli_int8_with_drift_budget(int8_case, tmp_path):
    out = tmp_path / "q.onnx"
    res = CliRunner().invoke(app, [str(int8_case["onnx"]), "--out", str(out), "--bundle", str(int8_case["bundle"]),
                                   "--calib", str(int8_case["train"]), "--image-root", str(int8_case["root"]),
                                   "--calib-size", "60", "--drift-budget", "0.05"])
    assert res.exit_code == 0, res.output
    assert "kept in float" in res.output and "recommended" in res.output
    doc = json.loads((tmp_path / "q.onnx.quant.json").read_text())
    assert doc["calibration"]["count"] == 60 and doc["calibration"]["method"] == "stratified"
    assert "drift_budget" in doc["details"]


def test_quantize_cli_rejects_bad_options(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"x")
    res = CliRunner().invoke(app, [str(src), "--out", str(tmp_path / "q.onnx"), "--kind", "int4"])
    assert res.exit_code == 2 and "--kind" in res.output
    res = CliRunner().invoke(app, [str(src), "--out", str(tmp_path / "q.onnx"), "--calib", str(tmp_path)])
    assert res.exit_code == 2 and "--bundle" in res.output
