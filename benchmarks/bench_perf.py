#!/usr/bin/env python
"""Speed of RALI scorers on this CPU, measured against the machine's own GEMM peak.

One run measures, for ViT-B/16 @224 and ViT-L/14 @336 scorers (open_clip architectures built from
their configs with RANDOM weights and a random RALI head: real sizes, no real accuracy):
PyTorch eager FP32, ONNX Runtime FP32 and ONNX Runtime INT8 (cpu profile: u8 activations, s8
per-channel weights) at batch 1 and batch 8; the measured GEMM peak (FP32 torch matmul and ORT
MatMul, INT8 ORT MatMulInteger); each model's FLOPs; the achieved fraction of peak, the ratios
between variants, the head's share of the time and the INT8/FP32 file size ratio.

The ONNX and INT8 files come from the shipped code (rali_edge.export.export_bundle and
rali_edge.quantize.quantize) when those are present; `--pipeline standalone` (or their absence)
uses torch.onnx.export + onnxruntime quantize_static directly. The printed `pipeline` says which.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_perf.py --models b16 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root: rali_edge
sys.path.insert(0, str(Path(__file__).resolve().parent))       # this folder: _perf_graphs

import _perf_graphs as graphs  # noqa: E402
from rali_edge.report.environment import collect_environment  # noqa: E402


@dataclass(frozen=True)
class ModelSpec:
    open_clip_name: str
    image_size: int
    repeats: int          # timed runs per measurement (ViT-L/14@336 on 2 cores: keep small)
    quick_repeats: int
    calib_batch: int      # INT8 calibration batch (memory: ORT keeps every intermediate tensor of a batch)


MODELS = {
    "b16": ModelSpec("ViT-B-16", 224, repeats=5, quick_repeats=3, calib_batch=8),
    "l14": ModelSpec("ViT-L-14-336", 336, repeats=2, quick_repeats=1, calib_batch=1),
}
PCA_DIM, NUM_BASIS = 512, 250        # the paper's head (REFERENCE section 2)
BATCHES = (1, 8)
VARIANT_FILES = ("fp32", "int8", "fp32_fused")   # ORT variants timed, when their file exists
TARGETS = {
    "ort_fp32_vs_eager": 1.3,        # ORT FP32 >= 1.3x PyTorch eager
    "int8_vs_fp32_b8": 3.0,          # ORT INT8 >= 3x ORT FP32 at batch 8
    "fp32_frac_peak": 0.80,          # end-to-end FP32 >= 80% of the FP32 GEMM peak
    "int8_frac_peak": 0.55,          # end-to-end INT8 >= 55% of the INT8 GEMM peak
    "head_share": 0.005,             # head <= 0.5% of the time
    "int8_size_ratio": 0.27,         # INT8 file <= 27% of FP32
}


def load1() -> float | None:
    """1-minute load average: on a shared 2-core machine every timing is only as good as this."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------- models


def build_scorer(spec: ModelSpec, seed: int = 0):
    """(RaliScorer, PreprocessConfig, flops dict): the real open_clip architecture, random weights."""
    import open_clip
    import torch

    from rali_edge.model.backbone import open_clip_backbone_config, open_clip_model_from_cfg, OpenClipBackbone
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.model.tiny import random_head

    torch.manual_seed(seed)
    model_cfg = open_clip.get_model_config(spec.open_clip_name)
    model = open_clip_model_from_cfg(model_cfg).eval()
    pre_cfg = {"size": spec.image_size, "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD,
               "interpolation": "bicubic", "resize_mode": "shortest"}
    backbone = OpenClipBackbone(model, open_clip_backbone_config(spec.open_clip_name, None, model_cfg, pre_cfg))
    dim = int(model_cfg["embed_dim"])
    head = random_head(dim, min(PCA_DIM, dim), NUM_BASIS, torch.Generator().manual_seed(seed))
    scorer = RaliScorer(backbone, head).eval()
    return scorer, backbone.default_preprocess(), model_cfg


def analytic_flops(model_cfg: dict, pca_dim: int, num_basis: int) -> dict:
    """FLOPs (2 per multiply-add) of one image: patch embed + per-layer attention/MLP + head."""
    v = model_cfg["vision_cfg"]
    size, patch, width, layers = v["image_size"], v["patch_size"], v["width"], v["layers"]
    mlp = int(v.get("mlp_ratio", 4.0) * width)
    n = (size // patch) ** 2
    seq = n + 1
    patch_embed = 2 * n * 3 * patch * patch * width
    attention_core = 2 * 2 * seq * seq * width          # q @ k.T and attn @ v
    per_layer = 2 * seq * width * 3 * width + attention_core + 2 * seq * width * width + 2 * 2 * seq * width * mlp
    proj = 2 * width * model_cfg["embed_dim"]
    head = 2 * model_cfg["embed_dim"] * pca_dim + 2 * pca_dim * num_basis + 2 * num_basis
    backbone = patch_embed + layers * per_layer + proj
    return {"patch_embed": patch_embed, "per_layer": per_layer, "attention_core": attention_core, "layers": layers,
            "backbone": backbone,
            "head": head, "total": backbone + head}


def counted_flops(scorer, image_size: int) -> int:
    """torch.utils.flop_counter's count for one image (matmuls, convs, attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, image_size, image_size)
    # Grad mode on purpose: under no_grad nn.MultiheadAttention takes its fused fast path, whose
    # projections FlopCounterMode does not count (it then reports only the MLP + patch embed).
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        scorer(x)
    return int(counter.get_total_flops())


# ---------------------------------------------------------------- measurements


def interleaved(calls: dict, repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Time every callable round-robin: each repeat runs all of them once, so on a shared machine
    every variant (and the GEMM peak) sees the same load and their ratios stay meaningful."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        log(f"  repeat {r + 1}/{repeats} done (load {load1():.1f})")
    return {n: {"median": statistics.median(t), "min": min(t), "all": t} for n, t in times.items()}


def measure_model(key: str, spec: ModelSpec, args, workdir: Path) -> dict:
    import torch

    from rali_edge.model.preprocess import normalize

    repeats = spec.quick_repeats if args.quick else spec.repeats
    log(f"[{key}] building {spec.open_clip_name} @{spec.image_size} (random weights)")
    scorer, preprocess, model_cfg = build_scorer(spec)
    flops = analytic_flops(model_cfg, scorer.head.pca_dim, scorer.head.num_basis)
    flops["counted"] = counted_flops(scorer, spec.image_size)
    rng = np.random.default_rng(0)
    pixels = {b: rng.integers(0, 256, (b, 3, spec.image_size, spec.image_size), dtype=np.uint8) for b in BATCHES}
    res: dict = {"model": spec.open_clip_name, "image_size": spec.image_size, "flops": flops, "repeats": repeats,
                 "params_m": sum(p.numel() for m in (scorer.backbone.image_encoder(), scorer.head)
                                 for p in m.parameters()) / 1e6}
    paths = graphs.make_artifacts(scorer, preprocess, spec.image_size, workdir / key, args.pipeline,
                                  calib_images=args.calib_images, log=log, calib_batch=spec.calib_batch,
                                  reuse=args.reuse)
    res["pipeline"] = paths["pipeline"]
    res["fp32_mb"] = paths["fp32"].stat().st_size / 1e6
    res["int8_mb"] = paths["int8"].stat().st_size / 1e6
    if args.fuse:
        v = model_cfg["vision_cfg"]
        paths["fp32_fused"] = paths["fp32"].with_name("fp32_fused.onnx")
        res["fusions"] = graphs.fuse_for_cpu(paths["fp32"], paths["fp32_fused"],
                                             v["width"] // v.get("head_width", 64), v["width"])
        log(f"[{key}] fused: {res['fusions']}")
    sessions = {v: graphs.ort_session(paths[v], args.threads) for v in VARIANT_FILES if v in paths}
    gemms = graphs.gemm_calls(args.threads, size=1024 if args.quick else 2048)
    with torch.inference_mode():
        feats = scorer.backbone.encode_image(normalize(torch.from_numpy(pixels[8]), preprocess))
        calls = {}
        for b in BATCHES:
            x = torch.from_numpy(pixels[b])
            calls[f"eager_b{b}"] = lambda x=x: scorer(normalize(x, preprocess))
            for v, sess in sessions.items():
                feed = {sess.get_inputs()[0].name: pixels[b]}
                calls[f"ort_{v}_b{b}"] = lambda sess=sess, feed=feed: sess.run(None, feed)
        calls["head_b8"] = lambda: scorer.head(feats)
        calls.update({f"gemm_{name}": fn for name, (fn, _ops) in gemms.items()})
        res["load_before"] = load1()
        log(f"[{key}] timing {len(calls)} callables round-robin, {repeats} repeats")
        res["times"] = interleaved(calls, repeats)
        res["load_after"] = load1()
    t = res["times"]
    for variant in ("eager", *(f"ort_{v}" for v in sessions)):
        res[variant] = {b: t[f"{variant}_b{b}"]["median"] for b in BATCHES}
        log(f"[{key}] {variant}: " + fmt_times(res[variant]))
    res["head_s_b8"] = t["head_b8"]["median"]
    res["peaks"] = {name: ops / t[f"gemm_{name}"]["median"] for name, (_fn, ops) in gemms.items()}
    res["peaks"]["gemm_size"] = 1024 if args.quick else 2048
    if args.profile:
        for v in ("fp32", "int8"):
            res[f"profile_{v}_b8_ms"] = graphs.profile_ops(paths[v], args.threads, pixels[8], runs=1)
    return res


def derive(res: dict) -> dict:
    f = res["flops"]["total"]
    peaks = res["peaks"]
    fp32_peak = max(peaks["torch_fp32"], peaks["ort_fp32"])
    out = {"fp32_peak": fp32_peak, "int8_peak": peaks["ort_int8"], "int8_peak_vs_fp32": peaks["ort_int8"] / fp32_peak}
    for variant in ("eager", "ort_fp32", "ort_int8"):
        for b in BATCHES:
            rate = f * b / res[variant][b]
            out[f"{variant}_gflops_b{b}"] = rate / 1e9
            # FP32 variants against the better FP32 GEMM (torch or ORT); INT8 against MatMulInteger.
            out[f"{variant}_frac_peak_b{b}"] = rate / (out["int8_peak"] if variant == "ort_int8" else fp32_peak)
    for b in BATCHES:
        out[f"ort_fp32_vs_eager_b{b}"] = res["eager"][b] / res["ort_fp32"][b]
        out[f"int8_vs_fp32_b{b}"] = res["ort_fp32"][b] / res["ort_int8"][b]
    out["head_share_b8"] = res["head_s_b8"] / res["eager"][8]
    if "ort_fp32_fused" in res:
        for b in BATCHES:
            out[f"fused_vs_fp32_b{b}"] = res["ort_fp32"][b] / res["ort_fp32_fused"][b]
    out["int8_size_ratio"] = res["int8_mb"] / res["fp32_mb"]
    return out


def check_targets(d: dict) -> list[tuple[str, float, float, bool]]:
    """(name, measured, target, met) per target; batch 8 where a batch must be chosen."""
    rows = [
        ("ORT FP32 / eager (b1)", d["ort_fp32_vs_eager_b1"], TARGETS["ort_fp32_vs_eager"], True),
        ("ORT FP32 / eager (b8)", d["ort_fp32_vs_eager_b8"], TARGETS["ort_fp32_vs_eager"], True),
        ("INT8 / FP32 speed (b8)", d["int8_vs_fp32_b8"], TARGETS["int8_vs_fp32_b8"], True),
        ("ORT FP32 fraction of FP32 peak (b8)", d["ort_fp32_frac_peak_b8"], TARGETS["fp32_frac_peak"], True),
        ("ORT INT8 fraction of INT8 peak (b8)", d["ort_int8_frac_peak_b8"], TARGETS["int8_frac_peak"], True),
        ("head share of eager time (b8)", d["head_share_b8"], TARGETS["head_share"], False),
        ("INT8 / FP32 file size", d["int8_size_ratio"], TARGETS["int8_size_ratio"], False),
    ]
    return [(n, m, t, (m >= t) if higher else (m <= t)) for n, m, t, higher in rows]


# ---------------------------------------------------------------- printing


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def fmt_times(t: dict) -> str:
    return ", ".join(f"b{b} {1000 * s:.1f} ms ({1000 * s / b:.1f} ms/img)" for b, s in t.items())


def print_report(env: dict, results: dict) -> None:
    print(f"\nMachine: {env['cpu_model']}; flags {', '.join(env['cpu_flags'])}; threads {env['threads']}; "
          f"load(1m) {env['load_average_1m']}; onnxruntime {env['versions']['onnxruntime']}, "
          f"torch {env['versions']['torch']}; {env['date']}")
    for key, res in results.items():
        d = res["derived"]
        f = res["flops"]
        print(f"\n== {res['model']} @{res['image_size']} ({res['params_m']:.0f} M params, random weights; "
              f"pipeline: {res['pipeline']}; median of {res['repeats']}; load(1m) {res['load_before']:.1f} "
              f"before, {res['load_after']:.1f} after)")
        core = f["layers"] * f["attention_core"]
        p = res["peaks"]
        print(f"GEMM {p['gemm_size']}^3 (timed in the same rounds): torch FP32 {p['torch_fp32'] / 1e9:.0f} GFLOP/s, "
              f"ORT MatMul FP32 {p['ort_fp32'] / 1e9:.0f} GFLOP/s, ORT MatMulInteger u8s8 {p['ort_int8'] / 1e9:.0f} "
              f"GOP/s (INT8/FP32 {d['int8_peak_vs_fp32']:.2f}x)")
        print(f"FLOPs/img: analytic {f['total'] / 1e9:.2f} G (head {f['head'] / 1e6:.2f} M; attention core "
              f"{core / 1e9:.2f} G); FlopCounterMode {f['counted'] / 1e9:.2f} G (it does not count the CPU "
              f"SDPA kernel: + core = {(f['counted'] + core) / 1e9:.2f} G)")
        print(f"{'variant':<15}{'b1 ms/img':>11}{'b8 ms/img':>11}{'b8 img/s':>10}{'GFLOP/s b8':>12}{'% peak b8':>11}")
        for variant in ("eager", "ort_fp32", "ort_int8", "ort_fp32_fused"):
            if variant not in res:
                continue
            t = res[variant]
            rate = res["flops"]["total"] * 8 / t[8]
            peak = d["int8_peak"] if variant == "ort_int8" else d["fp32_peak"]
            print(f"{variant:<15}{1000 * t[1]:>11.1f}{1000 * t[8] / 8:>11.1f}{8 / t[8]:>10.2f}"
                  f"{rate / 1e9:>12.0f}{100 * rate / peak:>10.0f}%")
        if "fusions" in res:
            print(f"ORT transformers fusions {res['fusions']}: fused FP32 / shipped FP32 speed "
                  f"b1 {d['fused_vs_fp32_b1']:.2f}x, b8 {d['fused_vs_fp32_b8']:.2f}x")
        print(f"files: FP32 {res['fp32_mb']:.1f} MB, INT8 {res['int8_mb']:.1f} MB")
        for variant in ("fp32", "int8"):
            prof = res.get(f"profile_{variant}_b8_ms")
            if prof:
                total = sum(prof.values())
                top = ", ".join(f"{op} {100 * ms / total:.0f}%" for op, ms in list(prof.items())[:8])
                print(f"ORT {variant} b8 op time ({total:.0f} ms in kernels): {top}")
        print(f"{'target':<40}{'measured':>10}{'target':>9}  result")
        for name, measured, target, met in res["targets"]:
            print(f"{name:<40}{measured:>10.3f}{target:>9.3f}  {'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="b16,l14", help="comma list of: " + ", ".join(MODELS))
    p.add_argument("--quick", action="store_true", help="fewer repeats and a smaller GEMM")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pipeline", choices=("auto", "shipped", "standalone"), default="auto")
    p.add_argument("--calib-images", type=int, default=16, help="random calibration images for INT8")
    p.add_argument("--fuse", action="store_true",
                   help="also time the FP32 graph after onnxruntime.transformers' ViT fusions (an experiment)")
    p.add_argument("--profile", action="store_true", help="also break ORT batch-8 time down by op type")
    p.add_argument("--reuse", action="store_true", help="reuse the FP32 export already in --workdir")
    p.add_argument("--workdir", type=Path, default=None, help="keep the ONNX files here (default: a temp dir)")
    p.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")

    import torch

    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rali-perf-") as tmp:
        workdir = args.workdir or Path(tmp)
        for key in keys:
            res = measure_model(key, MODELS[key], args, workdir)
            res["derived"] = derive(res)
            res["targets"] = check_targets(res["derived"])
            results[key] = res
    env = collect_environment(threads=args.threads)
    print_report(env, results)
    if args.out:
        from rali_edge._atomic import atomic_write_json

        atomic_write_json(args.out, {"environment": env, "targets": TARGETS,
                                     "results": {k: {**v, "targets": [list(t) for t in v["targets"]]}
                                                 for k, v in results.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
