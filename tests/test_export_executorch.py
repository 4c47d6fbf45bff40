"""ExecuTorch (.pte) round trips: export a tiny scorer, run it in ExecuTorch's own runtime, compare
with PyTorch; FP16; INT8 of the encoder only; metadata in the program and the sidecar; fixed and
dynamic batches; validate; the CLI; a clear missing-extra error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("executorch", reason="ExecuTorch tests need the [executorch] extra: "
                                         "pip install 'rali-edge[executorch]'")

from rali_edge.errors import ConfigError, ExportError, NotRunnableHere  # noqa: E402
from rali_edge.export.api import export_bundle  # noqa: E402
from rali_edge.export.samples import sample_crops  # noqa: E402
from rali_edge.export.executorch_program import DYNAMIC_MAX_BATCH, METADATA_METHOD, sidecar_path  # noqa: E402
from rali_edge.runtime.executorch_runner import ExecuTorchRunner  # noqa: E402

pytestmark = pytest.mark.slow   # every test lowers a program (10-30 s each on 2 cores)


@pytest.fixture(scope="module")
def tiny(photo_case):
    """(bundle, meta, image folder): conftest's random-weight scorer and 12 labelled photo crops."""
    return photo_case


@pytest.fixture(scope="module")
def fp32(tiny, tmp_path_factory):
    return export_bundle(tiny[0], "executorch", out_dir=tmp_path_factory.mktemp("fp32"))


def _pixels(bundle: Path, n: int, seed: int = 2) -> np.ndarray:
    """n photo crops preprocessed as the bundle says (uint8 NCHW)."""
    from PIL import Image

    from rali_edge.bundle import load_bundle
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    pre = load_bundle(bundle).config.preprocess
    crops = sample_crops(n, 48, seed)
    return np.stack([to_uint8_tensor(resize_and_crop(Image.fromarray(a), pre)).numpy() for a in crops])


def _pytorch_scores(bundle: Path, pixels: np.ndarray) -> np.ndarray:
    from rali_edge.bundle import load_bundle
    from rali_edge.export.onnx import reference_outputs
    from rali_edge.model.scorer import RaliScorer

    b = load_bundle(bundle)
    return reference_outputs(RaliScorer.from_bundle(b).eval(), b.config.preprocess, pixels)["score"]


def test_fp32_matches_pytorch_in_executorch_runtime(tiny, fp32):
    import torch
    from executorch.runtime import Runtime

    assert fp32.path.suffix == ".pte" and fp32.validation["max_abs_diff_score"] <= 1e-4
    assert fp32.validation["runtime"] == "executorch" and fp32.validation["xnnpack_partitions"] >= 1
    # delegable_shapes: the dynamic batch's views and no-op expands are inside XNNPACK, not portable copies
    outside = fp32.validation["outside_delegate"]
    assert outside.get("view_copy", 0) <= 1 and outside.get("expand_copy", 0) <= 2, outside
    # Independently of our runner: ExecuTorch's own API, a batch of 1 and a full dynamic batch.
    pixels = _pixels(tiny[0], DYNAMIC_MAX_BATCH)
    method = Runtime.get().load_program(fp32.path).load_method("forward")
    for n in (1, DYNAMIC_MAX_BATCH):
        (score,) = method.execute([torch.from_numpy(pixels[:n])])
        assert score.dtype == torch.float32 and tuple(score.shape) == (n,)
        assert np.max(np.abs(score.numpy() - _pytorch_scores(tiny[0], pixels[:n]))) <= 1e-4


def test_runner_chunks_batches_beyond_the_dynamic_bound(tiny, fp32):
    pixels = _pixels(tiny[0], DYNAMIC_MAX_BATCH + 3)
    runner = ExecuTorchRunner(fp32.path)
    assert runner.fixed_batch is None and runner.max_batch == DYNAMIC_MAX_BATCH
    out = runner.run(pixels)
    assert out["score"].shape == (len(pixels),)
    assert np.max(np.abs(out["score"] - _pytorch_scores(tiny[0], pixels))) <= 1e-4


def test_metadata_in_the_program_and_the_sidecar(fp32, tmp_path):
    import shutil

    from executorch.runtime import Runtime

    (text,) = Runtime.get().load_program(fp32.path).load_method(METADATA_METHOD).execute([])
    assert json.loads(text) == fp32.metadata
    assert json.loads(sidecar_path(fp32.path).read_text()) == fp32.metadata
    assert sidecar_path(fp32.path) in fp32.extra_files
    m = ExecuTorchRunner(fp32.path).metadata
    assert (m.format, m.precision, m.input_kind, m.batch, m.score_range) == ("executorch", "fp32", "uint8", None, [1.0, 5.0])
    assert m.bundle_checksum and "resize" in m.preprocess
    # The program's copy is enough: a copy without its sidecar still opens.
    alone = shutil.copy(fp32.path, tmp_path / "alone.pte")
    assert ExecuTorchRunner(alone).metadata == m


def test_fp16_keeps_float_io_and_stays_close(tiny, tmp_path):
    result = export_bundle(tiny[0], "executorch", precision="fp16", out_dir=tmp_path)
    assert result.validation["max_abs_diff_score"] <= 2e-2
    runner = ExecuTorchRunner(result.path)
    assert runner.metadata.precision == "fp16"
    out = runner.run(_pixels(tiny[0], 3))
    assert out["score"].dtype == np.float32 and np.all(np.isfinite(out["score"]))


def test_fp16_keeps_layer_norms_float32():
    """ExecuTorch's float16 LayerNorm (portable kernels, outside XNNPACK) is wrong at ViT-B width."""
    import torch
    from torch import nn

    from rali_edge.export.executorch_fp16 import half_encoder
    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.spec import ExportSpec
    from rali_edge.model.tiny import make_random_scorer

    scorer, pre = make_random_scorer()
    folded = fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size))
    norms = sum(isinstance(m, nn.LayerNorm) for m in folded.trunk.modules())
    half = half_encoder(folded)
    kept = [m for m in half.trunk.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and len(kept) == norms and all(m.weight.dtype == torch.float32 for m in kept)
    assert half.trunk[1].conv1.weight.dtype == torch.float16 and half.affine.weight.dtype == torch.float32
    pixels = torch.randint(0, 256, (2, 3, pre.image_size, pre.image_size), dtype=torch.uint8)
    assert half(pixels).dtype == torch.float32


def test_fixed_batch_is_padded_and_chunked(tiny, tmp_path):
    result = export_bundle(tiny[0], "executorch", batch=3, out_dir=tmp_path, with_embedding=True)
    runner = ExecuTorchRunner(result.path)
    assert runner.fixed_batch == 3 and runner.output_names == ["score", "embedding"]
    pixels = _pixels(tiny[0], 5)
    out = runner.run(pixels)   # 3 + 2 (padded to 3)
    assert out["score"].shape == (5,) and out["embedding"].shape[0] == 5
    assert np.max(np.abs(out["score"] - _pytorch_scores(tiny[0], pixels))) <= 1e-4


@pytest.fixture(scope="module")
def int8(tiny, tmp_path_factory):
    """The INT8 program made by the CLI (as a user would), calibrated on the labelled photo crops."""
    from typer.testing import CliRunner

    from rali_edge.cli.app import app

    bundle, meta, img_dir = tiny
    out = tmp_path_factory.mktemp("int8")
    res = CliRunner().invoke(app, ["export", str(bundle), "--format", "executorch", "--precision", "int8",
                                   "--calibration", str(meta), "--image-root", str(img_dir), "--out", str(out),
                                   "--name", "q"])
    return res, out / "q.pte"


def test_int8_cli_exits_0_and_writes_provenance(int8):
    res, path = int8
    assert res.exit_code == 0, res.output
    assert path.is_file() and sidecar_path(path).is_file()
    q = json.loads(path.with_name(path.name + ".quant.json").read_text())
    assert q["config"]["kind"] == "executorch_int8" and q["config"]["keep_head_float"] is True
    assert q["calibration"]["count"] == 12 and q["precision"] == "int8"
    assert "head" in " ".join(q["details"]["float"]) and q["details"]["xnnpack_partitions"] >= 1
    assert q["config"]["keep_stem_float"] is True and "conv2d" in q["details"]["float_stem"]   # the patch conv
    assert q["config"]["activations"] == "static" and q["details"]["quantize_ops"] > 0


def test_int8_output_is_float_with_bounded_drift(tiny, fp32, int8):
    path = int8[1]
    pixels = _pixels(tiny[0], 6)
    runner = ExecuTorchRunner(path)
    assert runner.metadata.precision == "int8" and runner.metadata.input_dtype == "uint8"
    score = runner.run(pixels)["score"]
    assert score.dtype == np.float32
    drift = np.max(np.abs(score - _pytorch_scores(tiny[0], pixels)))
    assert 0 < drift <= 0.1   # quantized (not bit-equal to float), within the int8 tolerance
    assert path.stat().st_size < fp32.path.stat().st_size


def test_int8_with_a_calibration_set_object(tiny, tmp_path):
    from rali_edge.calibration import from_pixels

    cal = from_pixels(_pixels(tiny[0], 10, seed=5), "photo crops")
    result = export_bundle(tiny[0], "executorch", precision="int8", batch=2, calibration=cal, out_dir=tmp_path)
    assert result.validation["max_abs_diff_score"] <= 0.1
    assert result.path.with_name(result.path.name + ".quant.json") in result.extra_files
    assert ExecuTorchRunner(result.path).fixed_batch == 2


def test_int8_dynamic_activations_need_no_calibration(tiny, tmp_path):
    from rali_edge.errors import UnsupportedOptionError

    result = export_bundle(tiny[0], "executorch", precision="int8", quant_kind="executorch-int8-dynamic",
                           out_dir=tmp_path)
    assert 0 < result.validation["max_abs_diff_score"] <= 0.1
    q = json.loads(result.path.with_name(result.path.name + ".quant.json").read_text())
    assert q["config"]["activations"] == "dynamic" and q["calibration"] is None
    with pytest.raises(UnsupportedOptionError, match="calibration"):
        export_bundle(tiny[0], "executorch", precision="int8", quant_kind="executorch-int8-dynamic",
                      calibration=tiny[1], out_dir=tmp_path)


def test_stem_is_the_full_resolution_convolutions():
    """As quantize.patterns.find_stem on ONNX: input ops, the first conv, stride-1 convs up to the pool."""
    import torch
    from torch import nn

    from rali_edge.export.executorch_int8 import stem_nodes

    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1)).eval()

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.to(torch.float32) * 0.5 - 1.0)

    graph = torch.export.export(Scaled(), (torch.zeros(1, 3, 16, 16, dtype=torch.uint8),)).module()
    stem = stem_nodes(graph)
    convs = [n.name for n in graph.graph.nodes if "conv2d" in str(n.target)]
    assert set(convs[:2]) <= stem and convs[2] not in stem
    assert {"to", "mul", "sub"} <= stem and not any("max_pool" in n for n in stem)


def test_validate_gives_an_ok_row(tiny, fp32, tmp_path):
    from rali_edge.validate import OK, validate_artifacts

    bundle, meta, img_dir = tiny
    report = validate_artifacts([fp32.path], bundle, [meta], img_dir, out_dir=tmp_path, threads=1)
    rows = [r for r in report.rows if r.artifact == fp32.path.name]
    assert rows and all(r.status == OK for r in rows), [r.to_dict() for r in report.rows]
    assert report.passed


def test_thread_count_changes_reload_earlier_runners(tiny, fp32):
    pixels = _pixels(tiny[0], 4)
    one = ExecuTorchRunner(fp32.path, threads=1)
    two = ExecuTorchRunner(fp32.path, threads=2)   # replaces the process-wide pool
    np.testing.assert_allclose(one.run(pixels)["score"], two.run(pixels)["score"], atol=1e-6)
    with pytest.raises(ConfigError, match="threads"):
        ExecuTorchRunner(fp32.path, threads=0)


def test_hf_backbone_exports(tmp_path):
    """The HF CLIP tower (what official checkpoints import into) through the same path."""
    import torch

    from rali_edge.model.tiny import make_random_bundle

    torch.manual_seed(0)
    bundle = make_random_bundle(tmp_path / "hf", library="hf")
    result = export_bundle(bundle, "executorch", out_dir=tmp_path)
    assert result.validation["max_abs_diff_score"] <= 1e-4


def test_missing_extra_is_named(tiny, hide_packages, tmp_path):
    from rali_edge.export.formats import caps

    hide_packages("executorch")
    ok, why = ExecuTorchRunner.available()
    assert not ok and "rali-edge[executorch]" in why
    assert caps("executorch").runnable_here() == (False, why)
    with pytest.raises(ExportError, match=r"rali-edge\[executorch\]"):
        export_bundle(tiny[0], "executorch", out_dir=tmp_path)
    (tmp_path / "x.pte").write_bytes(b"")
    with pytest.raises(NotRunnableHere, match=r"rali-edge\[executorch\]"):
        ExecuTorchRunner(tmp_path / "x.pte")


def test_config_round_trip_and_validation():
    from rali_edge.quantize.config import ExecuTorchInt8Config, config_from_dict, config_to_dict

    cfg = ExecuTorchInt8Config(per_channel=False, calibration_batch=4)
    d = config_to_dict(cfg)
    assert d["kind"] == "executorch_int8" and config_from_dict(d) == cfg
    with pytest.raises(ConfigError, match="calibration_batch"):
        ExecuTorchInt8Config(calibration_batch=0)
    with pytest.raises(ConfigError, match="activations"):
        ExecuTorchInt8Config(activations="weights-only")
    with pytest.raises(ConfigError, match="static"):
        ExecuTorchInt8Config(activations="dynamic", quantize_elementwise=True)
    assert not ExecuTorchInt8Config(activations="dynamic").needs_calibration
    with pytest.raises(ConfigError, match="version"):
        config_from_dict({**d, "version": 99})
