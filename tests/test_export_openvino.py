"""OpenVINO IR (.openvino folder) round trips: export a tiny scorer, run it in OpenVINO (CPU plugin),
compare with PyTorch; FP32 forced to f32 inference, FP16 weights, bf16 inference, NNCF INT8 with the
head float and with a drift budget; metadata in rt_info; validate and benchmark rows; the CLI; bad
folders and a missing extra refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO tests need the [openvino] extra: pip install 'rali-edge[openvino]'")
pytest.importorskip("nncf", reason="OpenVINO tests need the [openvino] extra: pip install 'rali-edge[openvino]'")

import openvino as ov  # noqa: E402

from rali_edge.errors import ConfigError, ExportError, NotRunnableHere, ValidationFailed  # noqa: E402
from rali_edge.export.api import export_bundle  # noqa: E402
from rali_edge.export.samples import sample_crops  # noqa: E402
from rali_edge.runtime.openvino_runner import OpenVINORunner, bf16_supported  # noqa: E402

BF16_HERE, NO_BF16_WHY = bf16_supported()


@pytest.fixture(scope="module")
def tiny(photo_case):
    """(bundle, meta, image folder): conftest's random-weight scorer and 12 labelled photo crops."""
    return photo_case


@pytest.fixture(scope="module")
def calibration():
    from rali_edge.calibration import from_pixels

    return from_pixels(_pixels(24, seed=2), "scikit-image photo crops")


@pytest.fixture(scope="module")
def exported(tiny, calibration, tmp_path_factory):
    """precision -> ExportResult, exported once for the module (dynamic batch)."""
    out = tmp_path_factory.mktemp("exports")
    res = {"fp32": export_bundle(tiny[0], "openvino", "fp32", out_dir=out),
           # the other input kind ONNX offers, on the fp16 export (one export fewer)
           "fp16": export_bundle(tiny[0], "openvino", "fp16", out_dir=out, input_kind="normalized")}
    res["int8"] = export_bundle(tiny[0], "openvino", "int8", out_dir=out, calibration=calibration)
    if BF16_HERE:
        res["bf16"] = export_bundle(tiny[0], "openvino", "bf16", out_dir=out)
    return res


def _pixels(n: int, seed: int = 3) -> np.ndarray:
    return np.ascontiguousarray(np.stack([a.transpose(2, 0, 1) for a in sample_crops(n, 32, seed=seed)]))


def _pytorch_scores(bundle: Path, pixels: np.ndarray) -> np.ndarray:
    from rali_edge.runtime import open_runner

    return open_runner(bundle).run(pixels)["score"]


def _runtime_precisions(runner: OpenVINORunner) -> set[str]:
    """The precisions OpenVINO's CPU plugin actually runs the compute ops in."""
    ops = runner.compiled.get_runtime_model().get_ops()
    return {op.get_rt_info()["runtimePrecision"].astype(str) for op in ops
            if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "Convolution", "MatMul")}


def test_fp32_matches_pytorch_and_runs_in_f32(tiny, exported):
    res = exported["fp32"]
    assert res.path.suffix == ".openvino" and sorted(p.name for p in res.path.iterdir()) == ["model.bin", "model.xml"]
    assert res.validation["runtime"] == "openvino" and res.validation["max_abs_diff_score"] <= 1e-4
    pixels = _pixels(5)
    runner = OpenVINORunner(res.path, threads=1)
    got = runner.run(pixels)["score"]
    assert got.dtype == np.float32 and got.shape == (5,)
    np.testing.assert_allclose(got, _pytorch_scores(tiny[0], pixels), atol=1e-4)
    # f32 even on CPUs whose OpenVINO default is bf16 (checked on the compiled kernels, not only the hint)
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert runner.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert _runtime_precisions(runner) == {"f32"}
    # Independently of our runner: OpenVINO's own API, a batch of 1 and of 5 through the dynamic axis.
    compiled = ov.Core().compile_model(str(res.path / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for n in (1, 5):
        (score,) = compiled(pixels[:n]).values()
        assert score.shape == (n,) and np.max(np.abs(score - got[:n])) <= 1e-6


def test_interface_and_metadata_read_back(tiny, exported):
    from rali_edge.bundle import load_bundle

    runner = OpenVINORunner(exported["fp32"].path)
    (inp,) = runner.compiled.inputs
    assert inp.get_names() == {"pixels"} and inp.get_element_type() == ov.Type.u8
    assert str(inp.get_partial_shape()) == "[?,3,32,32]"
    assert [o.get_names() for o in runner.compiled.outputs] == [{"score"}]
    m = runner.metadata
    assert (m.format, m.precision, m.batch, m.image_size, m.input_kind) == ("openvino", "fp32", None, 32, "uint8")
    assert m.bundle_checksum == load_bundle(tiny[0]).checksum
    assert "<rali_edge>" in (exported["fp32"].path / "model.xml").read_text()   # in the IR's rt_info


def test_fp16_weights_halve_the_bin_and_normalized_input(tiny, exported):
    res = exported["fp16"]
    assert res.validation["max_abs_diff_score"] <= 2e-2
    bins = {p: (exported[p].path / "model.bin").stat().st_size for p in ("fp32", "fp16")}
    assert bins["fp16"] < 0.8 * bins["fp32"]
    runner = OpenVINORunner(res.path)
    assert runner.metadata.precision == "fp16" and runner.inference_precision == "f32"
    assert runner.compiled.inputs[0].get_element_type() == ov.Type.f32 and runner.input_kind == "normalized"
    pixels = _pixels(3)   # the runner normalises the uint8 pixels as the metadata says
    np.testing.assert_allclose(runner.run(pixels)["score"], _pytorch_scores(tiny[0], pixels), atol=2e-2)


@pytest.mark.skipif(not BF16_HERE, reason=f"bf16 inference needs a CPU with bf16: {NO_BF16_WHY}")
def test_bf16_runs_in_bf16_within_tolerance(tiny, exported):
    res = exported["bf16"]
    runner = OpenVINORunner(res.path)
    assert runner.metadata.precision == "bf16" and "bf16" in _runtime_precisions(runner)
    pixels = _pixels(6)
    drift = np.abs(runner.run(pixels)["score"] - _pytorch_scores(tiny[0], pixels)).max()
    assert 0 < drift <= 5e-2 and res.validation["max_abs_diff_score"] <= 5e-2


def test_bf16_without_cpu_support_is_not_runnable(tiny, exported, monkeypatch, tmp_path):
    from rali_edge.evaluation.measure import NOT_RUNNABLE, measure_artifact
    from rali_edge.runtime import openvino_runner

    monkeypatch.setattr(openvino_runner, "bf16_supported", lambda core=None: (False, "no bf16 on this CPU"))
    with pytest.raises(NotRunnableHere, match="no bf16 on this CPU"):
        export_bundle(tiny[0], "openvino", "bf16", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())   # refused before anything was written
    if "bf16" in exported:   # an artifact made on a bf16 CPU, opened where there is none
        with pytest.raises(NotRunnableHere, match="bf16 artifact cannot run here"):
            OpenVINORunner(exported["bf16"].path)
        assert measure_artifact(exported["bf16"].path, tiny[0], []).status == NOT_RUNNABLE


def test_int8_quantizes_the_encoder_keeps_head_and_stem_float(tiny, exported):
    res = exported["int8"]
    runner = OpenVINORunner(res.path)
    assert runner.metadata.precision == "int8" and runner.inference_precision == "f32"
    assert {"u8", "i8"} & _runtime_precisions(runner)   # the CPU runs INT8 kernels
    quant = json.loads(res.path.with_name(res.path.name + ".quant.json").read_text())
    assert quant["config"]["kind"] == "openvino_int8" and quant["config"]["keep_head_float"] is True
    assert quant["calibration"]["count"] == 24 and quant["details"]["model_type"] == "transformer"
    details = quant["details"]
    assert details["fake_quantize_ops"] > 0 and details["quantized_compute_ops"] >= 12   # 2 blocks x 6 linears
    assert any(n.startswith("__module.affine") for n in details["float_compute_ops"])   # head float
    assert details["ignored_scope"]["stem"] == [n for n in details["float_compute_ops"] if "conv1" in n]
    pixels = _pixels(6)
    drift = np.abs(runner.run(pixels)["score"] - _pytorch_scores(tiny[0], pixels)).max()
    assert drift <= 0.1 and res.validation["max_abs_diff_score"] <= 0.1


def test_validate_gives_ok_rows_measured_in_openvino(tiny, exported):
    from rali_edge.validate import validate_artifacts

    bundle, meta, img_dir = tiny
    report = validate_artifacts([exported["fp32"].path, exported["int8"].path], bundle, [meta], img_dir)
    ref, fp32, int8 = report.rows
    assert ref.status == "reference" and fp32.status == "ok" and int8.status == "ok"
    assert fp32.max_abs_change <= 1e-4 and int8.max_abs_change <= 0.1


def test_failed_validation_leaves_nothing(tiny, monkeypatch, tmp_path):
    from rali_edge.export import openvino_ir

    def broken(path, *a, **kw):
        raise ValidationFailed([f"{path}: broken on purpose"])

    monkeypatch.setattr(openvino_ir, "validate_ir", broken)
    with pytest.raises(ValidationFailed, match="broken on purpose"):
        export_bundle(tiny[0], "openvino", out_dir=tmp_path, name="m")
    assert list(tmp_path.iterdir()) == []   # no folder, no temporary


@pytest.mark.slow
def test_cli_int8_with_a_drift_budget(tiny, tmp_path):
    """A labelled meta calibrates and gates: NNCF's accuracy control, measured again, head still float."""
    from typer.testing import CliRunner

    from rali_edge.cli.app import app

    bundle, meta, img_dir = tiny
    res = CliRunner().invoke(app, ["export", str(bundle), "--format", "openvino", "--precision", "int8",
                                   "--calibration", str(meta), "--image-root", str(img_dir), "--out", str(tmp_path),
                                   "--name", "budget", "--drift-budget", "0.05"])
    assert res.exit_code == 0, res.output
    assert "Statistics collection" not in res.stdout   # NNCF's progress bars go to stderr
    quant = json.loads((tmp_path / "budget.openvino.quant.json").read_text())
    budget = quant["details"]["drift_budget"]
    assert budget["max_plcc_drop"] == 0.05 and budget["steps"][-1]["dplcc"] >= -0.05
    assert budget["method"] == "nncf accuracy control" and quant["calibration"]["count"] == 12
    assert any(n.startswith("__module.affine") for n in budget["float_units"])
    assert OpenVINORunner(tmp_path / "budget.openvino").metadata.precision == "int8"
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "budget.openvino"), "--kind", "openvino-int8",
                                   "--out", str(tmp_path / "q.openvino")])
    assert res.exit_code == 2 and "--format openvino --precision int8" in " ".join(res.output.split())


def test_a_drift_budget_needs_labelled_calibration(tiny, calibration, tmp_path):
    with pytest.raises(ConfigError, match="labelled calibration"):
        export_bundle(tiny[0], "openvino", "int8", out_dir=tmp_path, name="m", calibration=calibration,
                      drift_budget=0.01)
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.slow
def test_benchmark_rows_are_ok(tiny, tmp_path):
    from rali_edge.report.benchmark import run_benchmark

    bundle, meta, img_dir = tiny
    report = run_benchmark(bundle, [meta], img_dir, "pytorch-fp32,openvino-bf16,openvino-int8", tmp_path / "o",
                           repeats=1, progress=False)
    rows = {r.precision: r for r in report.rows if r.format == "openvino"}
    assert rows["int8"].status.value == "ok" and rows["int8"].ms_per_img > 0, rows["int8"].detail
    assert rows["int8"].size_mb > 0.1   # the folder: model.bin counted, not only the .xml
    want = "ok" if BF16_HERE else "not_runnable"
    assert rows["bf16 (inference)"].status.value == want, rows["bf16 (inference)"].detail
    assert report.ok, report.failures


def test_missing_extra_names_it(tiny, exported, hide_packages, tmp_path):
    from rali_edge.runtime import open_runner

    hide_packages("openvino", "nncf")
    ok, why = OpenVINORunner.available()
    assert not ok and "rali-edge[openvino]" in why
    with pytest.raises(NotRunnableHere, match=r"rali-edge\[openvino\]"):
        open_runner(exported["fp32"].path)
    with pytest.raises(NotRunnableHere, match=r"needs openvino: pip install 'rali-edge\[openvino\]'"):
        export_bundle(tiny[0], "openvino", "fp32", out_dir=tmp_path)


def test_folders_that_are_not_our_ir_are_refused(exported, tmp_path):
    import shutil

    partial = tmp_path / "partial.openvino"
    partial.mkdir()
    shutil.copy(exported["fp32"].path / "model.xml", partial / "model.xml")
    with pytest.raises(ExportError, match="expected model.xml and model.bin"):
        OpenVINORunner(partial)
    bare = tmp_path / "bare.openvino"   # a valid IR without our rt_info
    model = ov.Core().read_model(str(exported["fp32"].path / "model.xml"))
    bare.mkdir()
    ov.save_model(_without_metadata(model), str(bare / "model.xml"), compress_to_fp16=False)
    with pytest.raises(ExportError, match="not a rali-edge artifact"):
        OpenVINORunner(bare)
    junk = tmp_path / "junk.openvino"
    junk.mkdir()
    (junk / "model.xml").write_text("<not an ir/>")
    (junk / "model.bin").write_bytes(b"\0")
    with pytest.raises(ExportError, match="OpenVINO cannot read it"):
        OpenVINORunner(junk)


def _without_metadata(model):
    """A copy of the model's graph without any rt_info (rebuilt from its ops)."""
    return ov.Model(model.get_results(), model.get_parameters(), "bare")


def test_int8_config_validates():
    from rali_edge.export.formats import caps
    from rali_edge.quantize.config import OpenVINOInt8Config, config_from_dict, config_to_dict

    cfg = caps("openvino").quant_kind_for("int8").make_config()
    assert cfg == OpenVINOInt8Config() and config_to_dict(cfg)["kind"] == "openvino_int8"
    # what an artifact's .quant.json holds reads back as the same config
    assert config_from_dict(config_to_dict(OpenVINOInt8Config(smooth_quant=False))) == OpenVINOInt8Config(smooth_quant=False)
    with pytest.raises(ConfigError, match="preset"):
        OpenVINOInt8Config(preset="fast")
    with pytest.raises(ConfigError, match="version"):
        OpenVINOInt8Config(version=2)
    with pytest.raises(ConfigError, match="activation_ranges"):
        OpenVINOInt8Config(activation_ranges="percentile")


def _two_layer_model() -> ov.Model:
    """x [1, 64] -> MatMul -> Relu -> MatMul: two layers NNCF quantizes, with the activations between them."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 64], np.float32, name="x")
    h = ops.relu(ops.matmul(x, ops.constant(rng.standard_normal((64, 64)).astype(np.float32)), False, False))
    y = ops.matmul(h, ops.constant(rng.standard_normal((64, 8)).astype(np.float32)), False, False)
    return ov.Model([y], [x], "two_layers")


@pytest.mark.parametrize("ranges, covers_the_outlier", [("minmax", True), ("mean_minmax", False)])
def test_activation_ranges_reach_nncf(ranges, covers_the_outlier):
    """One calibration item in twenty is ten times larger (a heavily distorted image): "minmax" (our
    default) keeps its range, NNCF's own "mean_minmax" averages it away and clips that input."""
    import nncf

    from rali_edge.export.openvino_int8 import _advanced, nncf_output_on_stderr
    from rali_edge.quantize.config import OpenVINOInt8Config

    rng = np.random.default_rng(1)
    items = [rng.standard_normal((1, 64)).astype(np.float32) * (10.0 if i == 7 else 1.0) for i in range(20)]
    model = _two_layer_model()
    with nncf_output_on_stderr():
        quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), fast_bias_correction=False,
                                  advanced_parameters=_advanced(OpenVINOInt8Config(activation_ranges=ranges)))
    core = ov.Core()
    run_float, run_int8 = core.compile_model(model, "CPU"), core.compile_model(quantized, "CPU")
    want, got = run_float(items[7])[0], run_int8(items[7])[0]
    relative = float(np.abs(got - want).max() / np.abs(want).max())
    assert (relative < 0.05) == covers_the_outlier, relative
