"""TensorRT: without TensorRT the ONNX + trtexec script are written; the engine build needs TensorRT."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from rali_edge.errors import NotRunnableHere
from rali_edge.export.api import export_bundle
from rali_edge.export.spec import ExportSpec
from rali_edge.export.tensorrt import build_engine, read_engine_file, tensorrt_available
from rali_edge.model.tiny import make_random_bundle
from rali_edge.runtime import open_runner


@pytest.mark.slow
@pytest.mark.skipif(tensorrt_available()[0], reason="checks the behaviour without TensorRT")
def test_without_tensorrt_writes_onnx_and_trtexec_script(tmp_path):
    bundle = make_random_bundle(tmp_path / "oc", library="open_clip", seed=10)
    res = export_bundle(bundle, "tensorrt", precision="fp16", batch=None, out_dir=tmp_path / "out", name="m")
    assert res.path.name == "m.onnx" and res.validation["onnx"]["max_abs_diff_score"] <= 1e-4
    assert not (tmp_path / "out" / "m.engine").exists()
    assert any("must" in n or "NOT built" in n for n in res.notes)
    script = (tmp_path / "out" / "m.trtexec.sh").read_text()
    assert "trtexec --onnx=m.onnx --saveEngine=m.plain.engine --fp16 --timingCacheFile=m.timing.cache" in script
    assert "--minShapes=pixels:1x3x32x32" in script and "--maxShapes=pixels:32x3x32x32" in script
    meta = json.loads((tmp_path / "out" / "m.engine.json").read_text())
    assert meta["rali_edge.format"] == "tensorrt" and meta["rali_edge.precision"] == "fp16"
    props = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert props == meta  # the engine header carries exactly the ONNX's metadata

    # The script's header step turns a trtexec output into our engine layout (trtexec faked here).
    (tmp_path / "out" / "m.plain.engine").write_bytes(b"fake-engine")
    lines = script.splitlines()
    header_step = "\n".join(lines[lines.index("python3 - <<'PY'") + 1 : lines.index("PY")])
    subprocess.run([sys.executable, "-c", header_step], cwd=tmp_path / "out", check=True)
    assert read_engine_file(tmp_path / "out" / "m.engine") == (meta, b"fake-engine")
    runner = open_runner(tmp_path / "out" / "m.engine")
    assert runner.metadata.precision == "fp16" and not runner.available()[0]
    with pytest.raises(NotRunnableHere):
        runner.run(np.zeros((1, 3, 32, 32), dtype=np.uint8))


@pytest.mark.skipif(tensorrt_available()[0], reason="checks the behaviour without TensorRT")
def test_build_engine_without_tensorrt_says_why(tmp_path):
    with pytest.raises(NotRunnableHere, match="trtexec"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", ExportSpec(image_size=32), "fp32", {})
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_engine_build_and_run(tmp_path, precision, tol):
    bundle = make_random_bundle(tmp_path / "oc", library="open_clip", seed=11)
    res = export_bundle(bundle, "tensorrt", precision=precision, out_dir=tmp_path / "out", name="m")
    assert res.path.suffix == ".engine" and (tmp_path / "out" / "m.timing.cache").is_file()
    px = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    got, want = open_runner(res.path).run(px), open_runner(bundle).run(px)
    assert np.max(np.abs(got["score"] - want["score"])) <= tol
