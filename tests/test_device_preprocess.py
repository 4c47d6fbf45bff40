"""Device-side preprocessing drift: the named pixel pipelines, and `validate --device-preprocess` rows,
report and gate (each variant compared with the float model on the training preprocessing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rali_edge.bundle import PreprocessConfig
from rali_edge.cli.app import app
from rali_edge.errors import ConfigError
from rali_edge.evaluation.device_preprocess import (
    DEVICE_PREPROCESS,
    device_preprocess,
    parse_device_preprocess,
    training_pixels,
)

CFG = PreprocessConfig(image_size=32, resize=32)
KERNELS = ("bilinear", "bilinear-noaa", "nearest")


def _photo(width: int = 80, height: int = 100, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus noise; 80 x 100 -> 32 px is a non-integer (2.5x) downscale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / width
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy], -1)
    arr = (base - base.min()) / np.ptp(base) * 200 + rng.normal(0, 20, base.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def _write_meta(root, pixels: np.ndarray, scores: np.ndarray, name: str):
    (root / name).mkdir(parents=True)
    items = []
    for i, (img, s) in enumerate(zip(pixels, scores)):
        Image.fromarray(img.transpose(1, 2, 0)).save(root / name / f"{i}.png")
        items.append({"image": f"{name}/{i}.png", "gt_score_norm": float(s)})
    meta = root / f"{name}.json"
    meta.write_text(json.dumps(items))
    return meta


# ---------------------------------------------------------------- pixel pipelines


@pytest.mark.parametrize("name", [*KERNELS, "jpeg90"])
def test_each_variant_changes_the_pixels_but_not_their_shape(name):
    img = _photo()
    train = training_pixels(img, CFG)
    got = device_preprocess(name).prepare(img, CFG)
    assert got.shape == train.shape == (3, 32, 32) and got.dtype == train.dtype == np.uint8
    assert not np.array_equal(got, train)


def test_the_kernels_differ_from_each_other():
    img = _photo()
    out = {n: device_preprocess(n).prepare(img, CFG) for n in KERNELS}
    assert not np.array_equal(out["bilinear"], out["bilinear-noaa"])
    assert not np.array_equal(out["bilinear-noaa"], out["nearest"])
    # PIL bilinear is antialiased like the bicubic training kernel: it stays closest to training.
    train = training_pixels(img, CFG)
    assert _mean_abs(out["bilinear"], train) < _mean_abs(out["bilinear-noaa"], train) < _mean_abs(out["nearest"], train)


def test_only_the_antialiased_kernels_average_a_fine_checkerboard_away():
    board = (np.indices((100, 80)).sum(0) % 2 * 255).astype(np.uint8)
    img = Image.fromarray(np.repeat(board[..., None], 3, -1))
    assert training_pixels(img, CFG).std() < 2
    assert device_preprocess("bilinear").prepare(img, CFG).std() < 2
    assert device_preprocess("bilinear-noaa").prepare(img, CFG).std() > 20   # samples skip pixels: aliasing
    assert device_preprocess("nearest").prepare(img, CFG).std() > 100


def test_images_at_the_crop_size_are_changed_only_by_jpeg():
    img = _photo(32, 32)
    train = training_pixels(img, CFG)
    for name in KERNELS:
        np.testing.assert_array_equal(device_preprocess(name).prepare(img, CFG), train)
    assert not np.array_equal(device_preprocess("jpeg90").prepare(img, CFG), train)


def test_jpeg_quality_100_is_close_and_low_quality_far():
    img = _photo()
    train = training_pixels(img, CFG)
    d = {q: _mean_abs(device_preprocess(f"jpeg{q}").prepare(img, CFG), train) for q in (100, 50, 5)}
    assert 0 < d[100] < 3.0           # 4:2:0 chroma subsampling keeps even quality 100 off by a little
    assert d[100] < d[50] < d[5] and d[5] > 3 * d[100]


def test_names_are_parsed_from_the_table_and_the_jpeg_pattern():
    assert [d.name for d in parse_device_preprocess("bilinear, nearest,jpeg90")] == ["bilinear", "nearest", "jpeg90"]
    assert [d.name for d in parse_device_preprocess(("jpeg1", "jpeg100", "bilinear-noaa"))] == [
        "jpeg1", "jpeg100", "bilinear-noaa"]
    assert parse_device_preprocess(None) == []
    assert set(DEVICE_PREPROCESS) == set(KERNELS)
    for bad in ("bicubic", "jpeg0", "jpeg101", "jpeg090", "jpeg", "JPEG90", "bilinear,", "nearest,nearest"):
        with pytest.raises(ConfigError):
            parse_device_preprocess(bad)


def test_load_eval_sets_takes_another_pipeline(tmp_path, synthetic_pixels):
    from rali_edge.evaluation.device_preprocess import load_device_sets
    from rali_edge.evaluation.evalset import load_eval_sets

    pixels, scores = synthetic_pixels(6, image_size=80, seed=3)
    meta = _write_meta(tmp_path, pixels, scores, "small")
    default = load_eval_sets([meta], tmp_path, CFG)[0]
    same = load_eval_sets([meta], tmp_path, CFG, prepare=training_pixels)[0]
    np.testing.assert_array_equal(same.pixels, default.pixels)   # the default pipeline is the training one
    (noaa,) = load_device_sets([default], [meta], tmp_path, CFG, device_preprocess("bilinear-noaa"))
    assert noaa.dataset == "small@bilinear-noaa" and noaa.paths == default.paths
    assert noaa.pixels.shape == default.pixels.shape and not np.array_equal(noaa.pixels, default.pixels)
    np.testing.assert_array_equal(noaa.gt, default.gt)


# ---------------------------------------------------------------- validate: rows, report, gate


def _cli_args(case, *artifacts, meta=None, extra=()):
    return ["validate", *map(str, artifacts), "--bundle", str(case["bundle"]), "--meta", str(meta or case["test"]),
            "--image-root", str(case["root"]), *extra]


@pytest.mark.slow
def test_float_and_artifact_get_a_row_per_variant_against_training_float(scorer_case, synthetic_pixels, tmp_path):
    from rali_edge.validate import validate_artifacts

    # 80 px images (the scorer takes 32 px): the resize kernel matters.
    pixels, scores = synthetic_pixels(60, image_size=80, seed=2)
    meta = _write_meta(tmp_path, pixels, scores, "big")
    names = ("bilinear", "bilinear-noaa", "nearest", "jpeg90")
    report = validate_artifacts([scorer_case["onnx"]], scorer_case["bundle"], [meta], tmp_path,
                                out_dir=tmp_path / "rep", device_preprocess=names)
    bundle, onnx = scorer_case["bundle"].name, scorer_case["onnx"].name
    rows = {(r.artifact, r.dataset): r for r in report.rows}
    assert len(rows) == len(report.rows) == 2 * (1 + len(names))
    ref = rows[bundle, "big"]
    assert ref.status == "reference" and ref.device_preprocess is None
    float_scores = report.scores[bundle]["big"]
    for name in names:
        label = f"big@{name}"
        f, a = rows[bundle, label], rows[onnx, label]
        assert f.status == a.status == "ok" and f.device_preprocess == a.device_preprocess == name
        # The float model's own row: what the device's preprocessing alone costs, vs float on training pixels.
        assert f.dplcc == pytest.approx(f.plcc - ref.plcc, abs=1e-12) and f.score_mae > 0
        moved = np.abs(report.scores[bundle][label] - float_scores)
        assert f.score_mae == pytest.approx(moved.mean())
        # The FP32 ONNX on the same pixels is the same model: its rows equal the float model's.
        for key in ("plcc", "srcc", "dplcc", "dsrcc", "score_mae", "max_abs_change"):
            assert getattr(a, key) == pytest.approx(getattr(f, key), abs=1e-4), (name, key)
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [d["name"] for d in doc["device_preprocess"]] == list(names)
    assert {r["device_preprocess"] for r in doc["rows"]} == {None, *names}


@pytest.mark.slow
def test_a_variant_that_drops_plcc_fails_the_gate(scorer_case, tmp_path):
    budget = ["--max-plcc-drop", "0.05"]
    res = CliRunner().invoke(app, _cli_args(scorer_case, scorer_case["onnx"], extra=budget))
    assert res.exit_code == 0, res.output                      # training preprocessing: within budget
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, _cli_args(scorer_case, scorer_case["onnx"],
                                            extra=[*budget, "--device-preprocess", "jpeg90,jpeg5", "--out", str(out)]))
    assert res.exit_code == 1, res.output
    assert "test@jpeg5" in res.output and "@jpeg5: re-encoded as JPEG at quality 5" in res.output
    doc = json.loads((out / "report.json").read_text())
    rows = {(r["artifact"], r["dataset"]): r for r in doc["rows"]}
    bundle, onnx = scorer_case["bundle"].name, scorer_case["onnx"].name
    # Measured on scorer_case: quality 5 costs the float model itself about 0.24 PLCC, quality 90 about 0.025.
    for name in (bundle, onnx):
        assert rows[name, "test@jpeg5"]["dplcc"] < -0.15
        assert -0.05 < rows[name, "test@jpeg90"]["dplcc"] < 0
    assert doc["passed"] is False
    assert sorted(f.split(":")[0] for f in doc["failures"]) == sorted(
        [f"{bundle} on test@jpeg5", f"{onnx} on test@jpeg5"])


@pytest.mark.slow
def test_coreml_variant_rows_are_simulated_off_macos(scorer_case, tmp_path):
    pytest.importorskip("coremltools")
    from rali_edge.export.api import export_bundle
    from rali_edge.runtime.coreml_runner import CoreMLRunner
    from rali_edge.validate import validate_artifacts

    fp16 = export_bundle(scorer_case["bundle"], "coreml", out_dir=tmp_path).path
    report = validate_artifacts([fp16], scorer_case["bundle"], [scorer_case["test"]], scorer_case["root"],
                                device_preprocess="jpeg50")
    row = next(r for r in report.rows if r.artifact == fp16.name and r.dataset == "test@jpeg50")
    assert row.status == ("ok" if CoreMLRunner.available()[0] else "simulated")
    float_row = next(r for r in report.rows if r.artifact == scorer_case["bundle"].name and r.dataset == "test@jpeg50")
    assert row.dplcc == pytest.approx(float_row.dplcc, abs=0.01)   # float16 on the same pixels


def test_unknown_names_are_rejected_before_any_work(tmp_path):
    # The files exist but are never read: the name is rejected first (exit 2).
    (tmp_path / "t.json").write_text("[]")
    (tmp_path / "x.onnx").write_bytes(b"")
    case = {"bundle": tmp_path, "test": tmp_path / "t.json", "root": tmp_path}
    for bad in ("bicubic", "jpeg0", "nearest,nearest"):
        res = CliRunner().invoke(app, _cli_args(case, tmp_path / "x.onnx", extra=["--device-preprocess", bad]))
        assert res.exit_code == 2, res.output
        assert "device preprocessing" in res.output
