"""Pure parts of benchmarks/bench_perf.py: FLOP count, GEMM-peak graphs, target checks (tiny sizes)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def perf():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_perf"), importlib.import_module("_perf_graphs")
    finally:
        sys.path.remove(str(BENCH))


def tiny_cfg():
    return {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


def test_analytic_flops_match_flop_counter(perf):
    import torch

    from rali_edge.model.backbone import OpenClipBackbone, open_clip_backbone_config, open_clip_model_from_cfg
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.model.tiny import random_head

    bench, _ = perf
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = open_clip_model_from_cfg(cfg).eval()
    pre = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic",
           "resize_mode": "shortest"}
    backbone = OpenClipBackbone(model, open_clip_backbone_config("tiny", None, cfg, pre))
    scorer = RaliScorer(backbone, random_head(16, 8, 5, torch.Generator().manual_seed(0))).eval()
    flops = bench.analytic_flops(cfg, pca_dim=8, num_basis=5)
    counted = bench.counted_flops(scorer, 32)
    # FlopCounterMode counts the projections, MLP, patch conv and head, but not the CPU SDPA kernel
    # (q @ k.T, attn @ v): with that term added the two counts agree.
    core = flops["layers"] * flops["attention_core"]
    assert core > 0
    assert counted + core == pytest.approx(flops["total"], rel=0.01)
    seq = (32 // 8) ** 2 + 1
    assert flops["per_layer"] == 24 * seq * 32 * 32 + 4 * seq * seq * 32


def test_vit_b16_flops_are_the_known_figure(perf):
    import open_clip

    bench, _ = perf
    flops = bench.analytic_flops(open_clip.get_model_config("ViT-B-16"), 512, 250)
    assert flops["total"] / 1e9 == pytest.approx(35.1, abs=0.3)   # ~17.6 GMACs, the published figure


def test_gemm_graphs_compute_the_product(perf):
    import onnxruntime as ort
    from onnx import numpy_helper

    _, graphs = perf
    n = 32
    for int8 in (False, True):
        model = graphs._gemm_model(n, int8)
        b = numpy_helper.to_array(model.graph.initializer[0])
        sess = ort.InferenceSession(model.SerializeToString(), graphs.session_options(1),
                                    providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (n, n), dtype=np.uint8) if int8 else rng.standard_normal((n, n), dtype=np.float32)
        (y,) = sess.run(None, {"A": a})
        want = (a.astype(np.int64) - 128) @ b.astype(np.int64) if int8 else a @ b
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)


def test_target_checks_direction(perf):
    bench, _ = perf
    d = {"ort_fp32_vs_eager_b1": 1.5, "ort_fp32_vs_eager_b8": 1.2, "int8_vs_fp32_b8": 3.1,
         "ort_fp32_frac_peak_b8": 0.7, "ort_int8_frac_peak_b8": 0.6, "head_share_b8": 0.001, "int8_size_ratio": 0.3}
    met = {name: ok for name, _, _, ok in bench.check_targets(d)}
    assert met == {"ORT FP32 / eager (b1)": True, "ORT FP32 / eager (b8)": False, "INT8 / FP32 speed (b8)": True,
                   "ORT FP32 fraction of FP32 peak (b8)": False, "ORT INT8 fraction of INT8 peak (b8)": True,
                   "head share of eager time (b8)": True, "INT8 / FP32 file size": False}
