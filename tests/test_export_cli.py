"""`rali-edge export` on the command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app


@pytest.mark.parametrize(
    "args, words",
    [
        (["--format", "onnx", "--opset", "17"], "below 18"),
        (["--format", "tflite"], "unknown export format"),
        (["--format", "onnx", "--precision", "int8"], "needs calibration images"),
        (["--format", "onnx", "--batch", "2", "--dynamic"], "exclude each other"),
    ],
)
def test_rejections_are_one_clear_line(tmp_path, args, words):
    result = CliRunner().invoke(app, ["export", str(tmp_path), *args])
    assert result.exit_code == 2
    assert words in " ".join(result.output.split())  # rich may wrap long lines


@pytest.mark.slow
def test_cli_export_onnx(tmp_path):
    from rali_edge.model.tiny import make_random_bundle

    bundle = make_random_bundle(tmp_path / "oc", library="open_clip", seed=13)
    result = CliRunner().invoke(app, ["export", str(bundle), "--format", "onnx", "--batch", "1",
                                      "--out", str(tmp_path / "out"), "--name", "m"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "m.onnx").is_file()
    assert "wrote" in result.output and "max_abs_diff_score" in result.output
