"""`rali-edge demo --quick` runs the whole chain, and an interrupted or repeated run resumes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.demo import STAGES
from rali_edge.export.tensorrt import tensorrt_available
from rali_edge.runtime.coreml_runner import CoreMLRunner


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    for stage in STAGES:
        assert (out / "stages" / f"{stage}.json").is_file(), stage
    ev = json.loads((out / "stages" / "evaluate.json").read_text())
    assert ev["n"] > 0 and -1.0 <= ev["plcc"] <= 1.0
    bench = json.loads((out / "stages" / "benchmark.json").read_text())
    statuses = {(r["format"], r["precision"]): r["status"] for r in bench["rows"]}
    assert statuses[("onnx", "fp32")] == "ok" and statuses[("onnx", "int8 (cpu)")] == "ok"
    # measured where the runtime is here (Core ML on macOS, TensorRT with a CUDA GPU), else simulated / not runnable
    assert statuses[("coreml", "fp16")] == ("ok" if CoreMLRunner.available()[0] else "simulated")
    assert statuses[("tensorrt", "int8")] == ("ok" if tensorrt_available()[0] else "not_runnable")
    # LiteRT and ExecuTorch INT8 run in their own runtimes (CI installs both extras)
    assert statuses[("litert", "int8")] == "ok" and statuses[("executorch", "int8")] == "ok"
    assert statuses[("openvino", "int8")] == "ok"   # CI installs the openvino extra too (NNCF INT8)
    # the INT8 drift per distortion class, each with its bootstrap interval
    by_class = bench["drift_by_distortion"]
    int8 = [name for name in by_class if "int8" in name]
    assert len(int8) >= 5 and all(len(row["dplcc_ci"]) == 2 for name in int8 for row in by_class[name].values()
                                  if row["dplcc"] is not None)
    device = bench["device_preprocess"]
    assert set(device["pytorch fp32"]) == {"bilinear-noaa", "jpeg90"} and "litert int8" in device
    assert "Device-side preprocessing" in result.output and not bench["failures"]
    for name in ("report.html", "report.md", "report.json"):
        assert (out / "report" / name).is_file()
    html = (out / "report" / "report.html").read_text()
    assert all(f'<section id="{part}">' in html for part in ("intervals", "ranking", "slices", "worst"))
    assert "not used for training" in result.output.replace("\n", " ").lower()
    assert "Format" in result.output and "PLCC" in result.output
    assert "aligned in " in result.output  # which precision trained the scorer is said

    # Interrupted after training: the next run redoes only what is missing.
    (out / "stages" / "benchmark.json").unlink()
    (out / "stages" / "evaluate.json").unlink()
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "data: already done" in again.output and "train: already done" in again.output
    assert "evaluate: already done" not in again.output


def test_demo_refuses_a_folder_made_with_other_settings(tmp_path):
    from rali_edge.demo import DemoSettings, _check_settings
    from rali_edge.errors import ConfigError

    _check_settings(tmp_path, DemoSettings.quick())
    _check_settings(tmp_path, DemoSettings.quick())  # same settings: fine
    with pytest.raises(ConfigError, match="other settings"):
        _check_settings(tmp_path, DemoSettings.full())


def test_demo_training_config_carries_the_demo_settings(tmp_path):
    from rali_edge.demo import DemoSettings, train_config

    s = DemoSettings.full()
    done = {"data": {"train_meta": str(tmp_path / "train.json"), "root": str(tmp_path)},
            "texts": {"triplets": str(tmp_path / "triplets.jsonl")}}
    cfg = train_config(tmp_path, s, done)
    assert (cfg.align.max_steps, cfg.align.batch_size, cfg.align.lr, cfg.align.temperature) == (
        s.align_steps, s.align_batch, s.align_lr, s.align_temperature)
    assert (cfg.align.random_crop, cfg.align.full_input_fraction) == (s.align_crop, s.align_full_fraction)
    assert (cfg.compress.pca_dim, cfg.compress.num_buckets, cfg.compress.num_basis) == (
        s.pca_dim, s.num_buckets, s.num_basis)
    backbone = json.loads((tmp_path / "train" / "backbone_config.json").read_text())
    vision = backbone["model_config"]["model_cfg"]["vision_cfg"]
    assert (vision["image_size"], vision["timm_model_name"]) == (s.clip_image_size, s.clip_tower)


@pytest.mark.parametrize("native", [True, False])
def test_demo_aligns_in_bf16_only_where_the_cpu_runs_it_natively(tmp_path, monkeypatch, native):
    import dataclasses

    from rali_edge.demo import DemoSettings, train_config
    from rali_edge.train import align

    monkeypatch.setattr(align, "cpu_has_native_bf16", lambda: native)
    done = {"data": {"train_meta": str(tmp_path / "train.json"), "root": str(tmp_path)},
            "texts": {"triplets": str(tmp_path / "triplets.jsonl")}}
    assert train_config(tmp_path, DemoSettings.full(), done).align.mixed_precision == ("bf16" if native else "no")
    off = dataclasses.replace(DemoSettings.full(), align_bf16=False)
    assert train_config(tmp_path, off, done).align.mixed_precision == "no"
