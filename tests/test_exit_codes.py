"""The exit-code contract of export, quantize, validate, eval and score (benchmark: test_report_benchmark):
0 everything asked ran and held, 1 something ran and failed, 2 bad usage rejected before any work."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.export import formats


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def corrupt_images(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


# ---------------------------------------------------------------- export


def test_export_0_when_written_and_validated(scorer_case, tmp_path):
    res = _run("export", scorer_case["bundle"], "--format", "onnx", "--out", tmp_path, "--name", "m")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize("args, says", [
    (["--format", "onnx", "--opset", "17"], "17"),
    (["--format", "onnx", "--precision", "int8"], "calibration"),
    (["--format", "coreml", "--precision", "int8", "--drift-budget", "0.01"], "--drift-budget"),
    (["--format", "onnx", "--precision", "fp16", "--method", "entropy"], "--method"),
    (["--format", "onnx", "--batch", "2", "--dynamic"], "--dynamic"),
    (["--format", "webgpu"], "webgpu"),
])
def test_export_2_for_bad_options(scorer_case, tmp_path, args, says):
    res = _run("export", scorer_case["bundle"], *args, "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert says in res.output
    assert not any(tmp_path.iterdir())   # rejected before any work: nothing written


def test_export_2_for_a_missing_bundle(tmp_path):
    res = _run("export", tmp_path / "nope", "--format", "onnx")
    assert res.exit_code == 2 and "nope" in res.output


def test_export_int8_1_when_its_value_check_fails_says_what_to_do(scorer_case, tmp_path, monkeypatch):
    # A tolerance no INT8 model can meet: the real value check fails, nothing is left under the name.
    strict = dataclasses.replace(formats.FORMATS["onnx"], tolerance={"fp32": 1e-4, "fp16": 2e-2, "int8": 1e-9})
    monkeypatch.setitem(formats.FORMATS, "onnx", strict)
    res = _run("export", scorer_case["bundle"], "--format", "onnx", "--precision", "int8", "--calibration",
               scorer_case["train"], "--image-root", scorer_case["root"], "--calibration-size", "64",
               "--out", tmp_path, "--name", "q")
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "max |difference|" in text and "tolerance 1e-09" in text
    assert "--drift-budget" in text and "--method entropy" in text and "rali-edge quantize" in text
    assert "rali-edge validate" in text
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_accepts_method_and_the_old_calib_spelling(scorer_case, tmp_path):
    res = _run("quantize", scorer_case["onnx"], "--kind", "int8", "--bundle", scorer_case["bundle"], "--calib",
               scorer_case["train"], "--image-root", scorer_case["root"], "--calib-size", "64",
               "--method", "percentile", "--out", tmp_path / "q.onnx")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "q.onnx.quant.json").read_text())
    assert doc["config"]["method"] == "percentile" and doc["calibration"]["count"] == 64


@pytest.mark.slow
def test_export_int8_with_a_drift_budget_gates_on_the_budget(scorer_case, tmp_path):
    res = _run("export", scorer_case["bundle"], "--format", "onnx", "--precision", "int8", "--calibration",
               scorer_case["train"], "--image-root", scorer_case["root"], "--calibration-size", "120",
               "--drift-budget", "0.02", "--method", "percentile", "--out", tmp_path, "--name", "q")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "q.onnx.quant.json").read_text())
    assert doc["config"]["method"] == "percentile"
    budget = doc["details"]["drift_budget"]
    assert budget["max_plcc_drop"] == 0.02 and -budget["steps"][-1]["dplcc"] <= 0.02
    assert "drift_budget" in res.output


# ---------------------------------------------------------------- quantize


def test_quantize_2_for_a_corrupt_or_wrong_source(scorer_case, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    res = _run("quantize", bad, "--kind", "fp16", "--out", tmp_path / "q.onnx")
    assert res.exit_code == 2 and "not a readable ONNX model" in res.output
    res = _run("quantize", scorer_case["onnx"], "--kind", "coreml-int8-weights", "--out", tmp_path / "q.mlpackage")
    assert res.exit_code == 2 and ".mlpackage" in res.output
    res = _run("quantize", scorer_case["onnx"], "--kind", "fp16", "--method", "entropy", "--out", tmp_path / "q.onnx")
    assert res.exit_code == 2 and "--method" in res.output
    # LiteRT / ExecuTorch INT8 quantize the PyTorch graph: `export` makes them, and the error says so
    res = _run("quantize", scorer_case["onnx"], "--kind", "litert-int8", "--out", tmp_path / "q.tflite")
    assert res.exit_code == 2 and "--format litert --precision int8" in " ".join(res.output.split())


def test_quantize_1_when_no_calibration_image_can_be_read(scorer_case, corrupt_images, tmp_path):
    res = _run("quantize", scorer_case["onnx"], "--kind", "int8", "--bundle", scorer_case["bundle"],
               "--calibration", corrupt_images, "--out", tmp_path / "q.onnx")
    assert res.exit_code == 1, res.output
    assert "corrupt" in res.output and not (tmp_path / "q.onnx").exists()


# ---------------------------------------------------------------- validate


def test_validate_1_when_an_image_cannot_be_read(scorer_case, tmp_path):
    items = json.loads(scorer_case["test"].read_text())
    items = items["results"] if isinstance(items, dict) else items
    items.append({**items[0], "image": "missing/nope.png"})
    meta = tmp_path / "with_missing.json"
    meta.write_text(json.dumps(items))
    res = _run("validate", scorer_case["onnx"], "--bundle", scorer_case["bundle"], "--meta", meta,
               "--image-root", scorer_case["root"])
    assert res.exit_code == 1, res.output
    assert "nope.png" in res.output and "could not be read" in res.output


def test_validate_0_and_2(scorer_case, tmp_path):
    args = ["--bundle", scorer_case["bundle"], "--meta", scorer_case["test"], "--image-root", scorer_case["root"]]
    res = _run("validate", scorer_case["onnx"], *args, "--max-plcc-drop", "0.001")
    assert res.exit_code == 0, res.output
    res = _run("validate", scorer_case["onnx"], *args, "--max-srcc-drop", "nan")
    assert res.exit_code == 2 and "drop budget" in res.output


# ---------------------------------------------------------------- eval and score


def test_eval_runs_an_exported_artifact_like_its_bundle(scorer_case, tmp_path):
    args = ["--meta", scorer_case["test"], "--image-root", scorer_case["root"]]
    res_b = _run("eval", scorer_case["bundle"], *args, "--json", tmp_path / "b.json")
    res_a = _run("eval", scorer_case["onnx"], *args, "--json", tmp_path / "a.json")
    assert res_b.exit_code == 0 and res_a.exit_code == 0, res_b.output + res_a.output
    b, a = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ba")
    assert a["bundle_checksum"] == b["bundle_checksum"]
    assert a["average"]["plcc"] == pytest.approx(b["average"]["plcc"], abs=1e-4)
    res = _run("eval", scorer_case["onnx"], *args, "--device", "cuda")
    assert res.exit_code == 2 and "--device" in res.output


def test_score_0_1_2(scorer_case, corrupt_images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (40, 30), (120, 30, 200)).save(folder / "ok.png")
    assert _run("score", scorer_case["bundle"], folder).exit_code == 0
    res = _run("score", scorer_case["bundle"], folder, corrupt_images)
    assert res.exit_code == 1 and "could not be scored" in res.output
    res = _run("score", scorer_case["bundle"], folder, "--out", tmp_path / "s.xlsx")
    assert res.exit_code == 2 and "unsupported extension" in res.output


def test_eval_of_an_artifact_that_cannot_run_here(scorer_case, tmp_path):
    from rali_edge.export.api import export_bundle

    package = export_bundle(scorer_case["bundle"], "coreml", out_dir=tmp_path, name="m").path
    res = _run("eval", package, "--meta", scorer_case["test"], "--image-root", scorer_case["root"])
    if formats.caps("coreml").runnable_here()[0]:   # macOS: Core ML predicts
        assert res.exit_code == 0, res.output
    else:   # rejected before any image is read: the host cannot do what was asked
        assert res.exit_code == 2 and "macOS" in res.output


def test_score_runs_an_exported_artifact_like_its_bundle(scorer_case, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, color in enumerate([(120, 30, 200), (10, 200, 90), (250, 250, 250)]):
        Image.new("RGB", (40, 30), color).save(folder / f"{i}.png")
    for name, artifact in (("b", scorer_case["bundle"]), ("a", scorer_case["onnx"])):
        res = _run("score", artifact, folder, "--out", tmp_path / f"{name}.json")
        assert res.exit_code == 0, res.output
    b, a = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ba")
    ma, mb = a["metadata"], b["metadata"]
    assert ma["rali_edge.format"] == "onnx" and mb["rali_edge.format"] == "bundle"
    assert ma["rali_edge.bundle_checksum"] == mb["rali_edge.bundle_checksum"]
    assert [s["path"] for s in a["rows"]] == [s["path"] for s in b["rows"]] and len(a["rows"]) == 3
    for sa, sb in zip(a["rows"], b["rows"]):
        assert sa["score"] == pytest.approx(sb["score"], abs=1e-4)
