"""benchmarks/bench_int8.py's JSON contract, on a tiny random scorer: keys, types, a consistent target.
No timing is asserted (speed targets are judged by the benchmark itself, on the machine it runs on)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_int8.py"


def _report_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _int8_report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return _int8_report


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_int8")
    out = tmp / "out.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--reps", "1", "--threads", "1",
                           "--runtimes", "ort", "--steps", "ort-int8-unsigned", "--workdir", str(tmp / "work"),
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_json_has_the_issue_keys_with_the_right_types(bench_json):
    doc, stdout = bench_json
    assert isinstance(doc["cpu_flags"], list) and all(isinstance(f, str) for f in doc["cpu_flags"])
    for key in ("gemm_int8_over_fp32", "speedup_b1", "speedup_b8", "max_score_change", "model_gemm_gop_per_image"):
        assert _number(doc[key]) and doc[key] >= 0, key
    assert doc["uncounted_gemm_nodes"] == []           # every MatMul/Gemm/Conv of the tiny export has shapes
    assert set(doc["gemm"]["gops"]) >= {"fp32", "int8", "int8_qdq"}
    assert all(_number(v) and v > 0 for v in doc["gemm"]["gops"].values())
    ort = doc["runtimes"]["ort"]
    assert ort["speedup_b8"] == doc["speedup_b8"] and ort["max_score_change"] == doc["max_score_change"]
    assert set(doc["variants"]) == {"ort-fp32", "ort-int8", "ort-int8-unsigned"}
    for name, row in doc["variants"].items():
        for key in ("ms_b1", "ms_b8", "ms_min_b8", "x_ort_fp32_b8", "gops_b8", "share_of_ort_peak_b8", "mb"):
            assert _number(row[key]) and row[key] > 0, (name, key)
    assert doc["variants"]["ort-fp32"]["x_ort_fp32_b8"] == 1.0
    assert doc["variants"]["ort-int8"]["x_ort_fp32_b8"] == doc["speedup_b8"]
    assert "openvino" not in doc["runtimes"]           # not asked for: neither run nor listed as not runnable
    assert isinstance(doc["busy"], bool)
    assert "GEMM peaks" in stdout and "target (" in stdout


@pytest.mark.slow
def test_target_block_states_the_rule_for_this_cpu_and_is_consistent(bench_json):
    doc, _ = bench_json
    t = doc["target"]
    assert t["achieved"] == doc["speedup_b8"]
    if "amx_int8" in doc["cpu_flags"]:
        assert t["cpu_class"] == "amx" and t["required"] == 6.0
    else:
        assert t["cpu_class"] in ("vnni", "no-vnni")
        assert t["required"] == pytest.approx(0.9 * doc["gemm_int8_over_fp32"])
    assert t["met"] is (t["achieved"] >= t["required"] and t.get("achieved_peak_share", 1.0) >= t.get(
        "required_peak_share", 0.0))


def test_target_rules_per_cpu_class():
    report = _report_module()
    row = {"x_ort_fp32_b8": 6.5, "x_ort_fp32_min_b8": 6.6, "share_of_ort_peak_b8": 0.4}
    amx = report.target(["avx512_vnni", "amx_int8"], 12.0, row)
    assert amx["cpu_class"] == "amx" and amx["required"] == 6.0 and amx["met"] is False   # 40% of peak < 50%
    assert report.target(["amx_int8"], 12.0, {**row, "share_of_ort_peak_b8": 0.55})["met"] is True
    vnni = report.target(["avx512_vnni"], 3.0, {**row, "x_ort_fp32_b8": 2.8})
    assert vnni["cpu_class"] == "vnni" and vnni["required"] == pytest.approx(2.7) and vnni["met"] is True
    assert report.target(["avx512_vnni"], 3.2, {**row, "x_ort_fp32_b8": 2.8})["met"] is False
    assert report.target(["avx2"], 2.0, None) == {**report.target(["avx2"], 2.0, None), "met": False,
                                                   "achieved": None, "cpu_class": "no-vnni"}


def test_runtimes_without_ort_are_refused_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--runtimes", "litert", "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "must include ort" in proc.stderr
    assert not (tmp_path / "w").exists()
