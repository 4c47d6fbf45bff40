"""LiteRT (.tflite) round trips: export a tiny scorer, run it in LiteRT's own interpreter, compare with
PyTorch; INT8 of the encoder only; metadata inside the flatbuffer; the CLI; a clear missing-extra error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="LiteRT tests need the [litert] extra: pip install 'rali-edge[litert]'")
pytest.importorskip("litert_torch", reason="LiteRT tests need the [litert] extra: pip install 'rali-edge[litert]'")

from rali_edge.errors import ConfigError, ExportError, NotRunnableHere, UnsupportedOptionError  # noqa: E402
from rali_edge.export.api import export_bundle  # noqa: E402
from rali_edge.export.samples import sample_crops  # noqa: E402
from rali_edge.runtime.litert_runner import LiteRTRunner  # noqa: E402


@pytest.fixture(scope="module")
def tiny(photo_case):
    """(bundle, meta, image folder): conftest's random-weight scorer and 12 labelled photo crops."""
    return photo_case


@pytest.fixture(scope="module")
def calibration():
    from rali_edge.calibration import from_pixels

    pixels = np.stack([a.transpose(2, 0, 1) for a in sample_crops(24, 32, seed=2)])
    return from_pixels(np.ascontiguousarray(pixels), "scikit-image photo crops")


@pytest.fixture(scope="module")
def exported(tiny, calibration, tmp_path_factory):
    """precision -> ExportResult, exported once for the module (fp16 at batch 2, the others at batch 1)."""
    bundle = tiny[0]
    out = tmp_path_factory.mktemp("exports")
    return {
        "fp32": export_bundle(bundle, "litert", "fp32", batch=1, out_dir=out),
        "fp16": export_bundle(bundle, "litert", "fp16", batch=2, out_dir=out),
        "int8": export_bundle(bundle, "litert", "int8", batch=1, out_dir=out, calibration=calibration),
    }


def _pytorch_scores(bundle: Path, pixels: np.ndarray) -> np.ndarray:
    from rali_edge.runtime import open_runner

    return open_runner(bundle).run(pixels)["score"]


def _eval_pixels(n: int = 5) -> np.ndarray:
    return np.ascontiguousarray(np.stack([a.transpose(2, 0, 1) for a in sample_crops(n, 32, seed=3)]))


def test_fp32_matches_pytorch_in_litert(tiny, exported):
    res = exported["fp32"]
    assert res.path.suffix == ".tflite" and res.validation["runtime"] == "ai-edge-litert"
    assert res.validation["max_abs_diff_score"] <= 1e-4
    pixels = _eval_pixels(5)   # 5 images through a batch-1 graph: the runner feeds them one by one
    got = LiteRTRunner(res.path, threads=1).run(pixels)
    assert got["score"].dtype == np.float32 and got["score"].shape == (5,)
    np.testing.assert_allclose(got["score"], _pytorch_scores(tiny[0], pixels), atol=1e-4)


def test_input_is_uint8_nhwc_and_metadata_reads_back(tiny, exported):
    from rali_edge.bundle import load_bundle

    runner = LiteRTRunner(exported["fp32"].path)
    inputs, outputs = runner.signature_details()
    assert list(inputs) == ["pixels"] and list(outputs) == ["score"]
    assert inputs["pixels"]["dtype"] == np.uint8 and inputs["pixels"]["shape"].tolist() == [1, 32, 32, 3]
    m = runner.metadata
    assert (m.input_layout, m.input_kind, m.input_dtype) == ("NHWC RGB", "uint8_nhwc", "uint8")
    assert (m.format, m.precision, m.batch, m.image_size) == ("litert", "fp32", 1, 32)
    assert m.bundle_checksum == load_bundle(tiny[0]).checksum


def test_fp16_weights_run_within_tolerance(tiny, exported):
    res = exported["fp16"]
    assert res.validation["max_abs_diff_score"] <= 2e-2
    assert res.path.stat().st_size < exported["fp32"].path.stat().st_size   # float16 weights
    runner = LiteRTRunner(res.path)
    assert runner.metadata.precision == "fp16" and runner.fixed_batch == 2
    pixels = _eval_pixels(3)   # an odd count: the last batch of 2 is padded, the padding dropped
    np.testing.assert_allclose(runner.run(pixels)["score"], _pytorch_scores(tiny[0], pixels), atol=2e-2)


def test_int8_quantizes_the_encoder_keeps_uint8_in_float_out(tiny, exported):
    res = exported["int8"]
    runner = LiteRTRunner(res.path)
    inputs, outputs = runner.signature_details()
    assert inputs["pixels"]["dtype"] == np.uint8 and outputs["score"]["dtype"] == np.float32
    int8_tensors = [t for t in runner.interpreter.get_tensor_details() if t["dtype"] == np.int8]
    assert len(int8_tensors) > 20   # the encoder's weights and activations
    pixels = _eval_pixels(6)
    drift = np.abs(runner.run(pixels)["score"] - _pytorch_scores(tiny[0], pixels)).max()
    assert drift <= 0.1 and res.validation["max_abs_diff_score"] <= 0.1
    quant = json.loads(res.path.with_name(res.path.name + ".quant.json").read_text())
    assert quant["config"]["kind"] == "litert_int8" and quant["config"]["keep_head_float"] is True
    assert quant["calibration"]["count"] == 24 and quant["details"]["quantize_nodes"] > 0


def test_validate_gives_ok_rows_measured_in_litert(tiny, exported):
    from rali_edge.validate import validate_artifacts

    bundle, meta, img_dir = tiny
    report = validate_artifacts([exported["fp32"].path, exported["int8"].path], bundle, [meta], img_dir)
    ref, fp32, int8 = report.rows
    assert ref.status == "reference"
    assert fp32.status == "ok" and int8.status == "ok"   # run in LiteRT, not simulated
    assert fp32.max_abs_change <= 1e-4 and int8.max_abs_change <= 0.1


def test_cli_exports_int8_with_a_calibration_meta(tiny, tmp_path):
    from typer.testing import CliRunner

    from rali_edge.cli.app import app

    bundle, meta, img_dir = tiny
    args = ["export", str(bundle), "--format", "litert", "--precision", "int8", "--calibration", str(meta),
            "--image-root", str(img_dir), "--out", str(tmp_path)]
    res = CliRunner().invoke(app, [*args, "--batch", "1"])
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.glob("*.tflite"))) == 1 and len(list(tmp_path.glob("*.tflite.quant.json"))) == 1
    res = CliRunner().invoke(app, args)   # no --batch: LiteRT has no dynamic batch, said up front
    assert res.exit_code == 2 and "fixed batch" in res.output


def test_hf_clip_tower_exports_too(tmp_path):
    """The HF CLIP tower (what `import-official` bundles hold) converts and matches PyTorch."""
    from rali_edge.model.tiny import make_random_bundle

    bundle = make_random_bundle(tmp_path / "hf", library="hf")
    res = export_bundle(bundle, "litert", "fp32", batch=1, out_dir=tmp_path / "out", input_kind="uint8")
    assert res.validation["max_abs_diff_score"] <= 1e-4
    assert LiteRTRunner(res.path).metadata.input_layout == "NCHW RGB"


def test_a_dynamic_batch_is_rejected_before_any_work(tmp_path):
    with pytest.raises(UnsupportedOptionError, match="fixed batch"):
        export_bundle(tmp_path / "missing", "litert", "fp32")


def test_missing_extra_names_it(tiny, exported, hide_packages, tmp_path):
    from rali_edge.runtime import open_runner

    hide_packages("ai_edge_litert", "litert_torch")
    ok, why = LiteRTRunner.available()
    assert not ok and "rali-edge[litert]" in why
    with pytest.raises(NotRunnableHere, match=r"rali-edge\[litert\]"):
        open_runner(exported["fp32"].path)
    with pytest.raises(NotRunnableHere, match=r"litert-torch, ai-edge-litert: pip install 'rali-edge\[litert\]'"):
        export_bundle(tiny[0], "litert", "fp32", batch=1, out_dir=tmp_path)


def test_files_without_our_metadata_are_refused(tmp_path, exported):
    from rali_edge.export.litert_metadata import embed_props, read_props

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(embed_props(exported["fp32"].path.read_bytes(), {}))   # our entries dropped
    assert read_props(bare) == {}
    with pytest.raises(ExportError, match="not a rali-edge artifact"):
        LiteRTRunner(bare)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ExportError, match="not a LiteRT"):
        LiteRTRunner(junk)


def test_int8_config_validates_and_round_trips():
    from rali_edge.quantize.config import LiteRTInt8Config, config_from_dict, config_to_dict

    cfg = LiteRTInt8Config(per_channel=False, calibration_batch=4)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="SOFTMAX"):
        LiteRTInt8Config(keep_head_float=False)
    with pytest.raises(ConfigError, match="calibration_batch"):
        LiteRTInt8Config(calibration_batch=0)
