"""benchmarks/bench_train.py runs its variants (layout x precision) on a tiny model and reports ratios."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_train")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("native", [True, False])
def test_align_throughput_adds_a_bf16_variant_only_on_a_native_bf16_cpu(bench, monkeypatch, native):
    from rali_edge.train import align

    if native and not align.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    monkeypatch.setattr(align, "cpu_has_native_bf16", lambda: native)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = bench.align_throughput("tiny", "cpu", batch=2, steps=1)
    finally:
        torch.set_num_threads(threads)
    want = {"contiguous": "fp32", "channels_last": "fp32"} | ({"channels_last+bf16": "bf16"} if native else {})
    assert {r["variant"]: r["precision"] for r in rows} == want
    assert all(r["step_s"] > 0 and r["speedup"] > 0 for r in rows)
    assert next(r for r in rows if r["variant"] == "contiguous")["speedup"] == 1.0
