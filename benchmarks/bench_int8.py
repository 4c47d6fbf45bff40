"""ORT INT8 vs FP32 latency of a ViT-B/16-size RALI scorer (224 px, RANDOM weights, real size).

Not a test: run it by hand,
    PYTHONPATH=. .venv/bin/python benchmarks/bench_int8.py [--workdir /tmp/rali-bench-int8] [--reps 7]

Builds (once, cached in --workdir) an open_clip ViT-B-16 (QuickGELU, like CLIP) scorer bundle with random
weights and a 512-d PCA / 250-basis head, exports it with rali_edge.export (ONNX, dynamic batch), and
quantizes it with rali_edge.quantize: `int8` = the default OnnxInt8Config (cpu profile: MatMul/Gemm/Conv
in INT8 with float outputs, head/LayerNorm/Softmax/QuickGELU float, bias Adds fused into
MatMulIntegerToFloat), `int8-nobias` = the same without the bias fusion, `int8-noattn` = the default with
the attention q@k / attn@v MatMuls left in float, `int8-plain` = ORT's plain static QDQ (every supported
op quantized, outputs quantized, head quantized too). `fp32-mha` / `int8-mha` are the same export and
default quantization WITHOUT the batch-first attention rewrite (rali_edge/export/attention.py; the export
before 2026-11-23), to measure what the rewrite gives in the same run; their ratios are against `fp32-mha`.
Latencies are medians of interleaved runs (each rep runs every model once at each batch size) so load
drifts hit all models alike. Because the machine is shared, the process CPU time of each run is reported
too (ORT thread spinning is disabled, so it counts work, not waiting): its ratios are the steadier
estimate of what an idle machine would show.
Results and the analysis of the remaining gap: benchmarks/RESULTS_int8.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

IMAGE_SIZE = 224


def build_bundle(workdir: Path) -> Path:
    import open_clip
    import torch

    from rali_edge.bundle import CLIP_MEAN, CLIP_STD, Provenance
    from rali_edge.model.backbone import build_backbone, open_clip_backbone_config
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.model.tiny import random_head

    out = workdir / "vitb16-random-bundle"
    if (out / "config.json").is_file():
        return out
    model_cfg = dict(open_clip.get_model_config("ViT-B-16"), quick_gelu=True)
    pcfg = {"size": IMAGE_SIZE, "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
            "resize_mode": "shortest"}
    cfg = open_clip_backbone_config("ViT-B-16", None, model_cfg, pcfg)
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    head = random_head(cfg.embed_dim, 512, 250, torch.Generator().manual_seed(0))
    scorer = RaliScorer(backbone, head).eval()
    prov = Provenance.now(seeds=[0], notes={"random_weights": True, "made_by": "benchmarks/bench_int8.py"})
    return scorer.save(out, backbone.default_preprocess(), prov)


def export_fp32(bundle: Path, workdir: Path) -> Path:
    """The default export (batch-first attention), as `rali-edge export` writes it."""
    from rali_edge.export.api import export_bundle

    target = workdir / "vitb16-fp32-bfattn.onnx"  # named by variant: an older export is never served from cache
    if not target.is_file():
        export_bundle(bundle, "onnx", precision="fp32", out_dir=workdir, name=target.stem)
    return target


def export_fp32_mha(bundle: Path, workdir: Path) -> Path:
    """The same export with the tower's own nn.MultiheadAttention (no attention rewrite), for comparison."""
    from rali_edge.bundle import load_bundle
    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.onnx import export_onnx
    from rali_edge.export.spec import ExportSpec
    from rali_edge.model.scorer import RaliScorer

    target = workdir / "vitb16-fp32-mha.onnx"
    if not target.is_file():
        loaded = load_bundle(bundle)
        pre = loaded.config.preprocess
        folded = fold_scorer(RaliScorer.from_bundle(loaded).eval(), pre, ExportSpec(image_size=pre.image_size),
                             attention_rewrite=False)
        export_onnx(folded, ExportSpec(image_size=pre.image_size), target, 18, {})
    return target


def quantize_variants(fp32: Path, workdir: Path, calib: int, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    import hashlib
    import json

    from rali_edge.calibration import from_pixels
    from rali_edge.quantize import OnnxInt8Config, config_to_dict, quantize

    # Random pixels are enough to time the graph; accuracy is measured by tests and `rali-edge validate`.
    pixels = np.random.default_rng(0).integers(0, 256, (calib, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    cal = from_pixels(pixels, "random uint8 pixels (benchmark only)", seed=0)
    variants = {
        "int8": OnnxInt8Config(),
        "int8-nobias": OnnxInt8Config(fuse_bias=False),
        "int8-noattn": OnnxInt8Config(quantize_attention_matmuls=False),
        "int8-plain": OnnxInt8Config(op_types=("Conv", "MatMul", "Gemm", "Add", "Mul", "Softmax", "Sigmoid",
                                               "LayerNormalization"), float_output_ops=(), keep_head_float=False,
                                     exclude_layernorm=False, exclude_softmax=False, exclude_gelu=False),
    }
    out = {}
    for name, config in variants.items():
        if names is not None and name not in names:
            continue
        # the file name carries the source and a hash of the config, so nothing stale is served from cache
        digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()[:8]
        path = workdir / f"{fp32.stem}-{name}-{digest}.onnx"
        if not path.is_file():
            quantize(config, fp32, path, cal)
        out[name] = path
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting: process CPU time then measures work, which sharing the cores distorts less
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """pixels -> scores with `session(path, threads)`."""
    s = session(path, threads)
    return lambda pixels: s.run(None, {"pixels": pixels})[0]


def bench_inputs(batches: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The uint8 pixels every model is timed on, one batch per size."""
    rng = np.random.default_rng(1)
    return {b: rng.integers(0, 256, (b, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8) for b in batches}


def time_interleaved(runners: dict[str, Callable[[np.ndarray], object]], inputs: dict[int, np.ndarray],
                     reps: int) -> tuple[dict, dict]:
    """Medians of (wall ms, process CPU ms) per (runner, batch); each rep runs every runner once at each
    batch size, so load drifts hit all of them alike. Warm the runners up first."""
    wall: dict[tuple[str, int], list[float]] = {(n, b): [] for n in runners for b in inputs}
    cpu: dict[tuple[str, int], list[float]] = {(n, b): [] for n in runners for b in inputs}
    for _ in range(reps):
        for b, pixels in inputs.items():
            for name, run in runners.items():
                c, t = time.process_time(), time.perf_counter()
                run(pixels)
                wall[(name, b)].append((time.perf_counter() - t) * 1000)
                cpu[(name, b)].append((time.process_time() - c) * 1000)
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    return med(wall), med(cpu)


def measure(models: dict[str, Path], batches: tuple[int, ...], reps: int, threads: int) -> tuple[dict, dict]:
    """Medians of (wall ms, process CPU ms) per (model, batch)."""
    runners = {name: ort_runner(p, threads) for name, p in models.items()}
    inputs = bench_inputs(batches)
    for run in runners.values():  # warm-up
        for pixels in inputs.values():
            run(pixels)
    return time_interleaved(runners, inputs, reps)


def add_common_arguments(ap: argparse.ArgumentParser, reps: int) -> None:
    """Options shared with bench_int8_openvino.py, which reuses this script's cached exports in --workdir."""
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rali-bench-int8"))
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib", type=int, default=16, help="random calibration images (speed only)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(ap, reps=7)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(args.workdir)
    fp32, fp32_mha = export_fp32(bundle, args.workdir), export_fp32_mha(bundle, args.workdir)
    int8_mha = quantize_variants(fp32_mha, args.workdir, args.calib, ("int8",))["int8"]
    models = {"fp32": fp32, **quantize_variants(fp32, args.workdir, args.calib), "fp32-mha": fp32_mha,
              "int8-mha": int8_mha}
    check_same_scores(fp32, fp32_mha)
    batches = (1, 8)
    load_before = os.getloadavg()
    wall, cpu = measure(models, batches, args.reps, args.threads)
    load_after = os.getloadavg()
    print(f"ViT-B/16 RALI scorer, {IMAGE_SIZE} px, random weights; ORT CPU, {args.threads} threads, "
          f"median of {args.reps} interleaved reps")
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} (other processes share the cores)")
    print(f"{'model':<13}{'MB':>7}{'b1 ms':>9}{'b8 ms':>9}{'x b1':>7}{'x b8':>7}  |{'cpu b1':>9}{'cpu b8':>9}"
          f"{'x b1':>7}{'x b8':>7}")
    for name, path in models.items():
        mb = path.stat().st_size / 2**20
        base = "fp32-mha" if name.endswith("-mha") else "fp32"
        wr = [wall[(base, b)] / wall[(name, b)] for b in batches]
        cr = [cpu[(base, b)] / cpu[(name, b)] for b in batches]
        print(f"{name:<13}{mb:>7.1f}{wall[(name, 1)]:>9.1f}{wall[(name, 8)]:>9.1f}{wr[0]:>7.2f}{wr[1]:>7.2f}  |"
              f"{cpu[(name, 1)]:>9.1f}{cpu[(name, 8)]:>9.1f}{cr[0]:>7.2f}{cr[1]:>7.2f}")
    print("attention rewrite speed-up (time without / time with), wall b1 b8 | cpu b1 b8:")
    for new, old in (("fp32", "fp32-mha"), ("int8", "int8-mha")):
        print(f"  {new:<6}" + "".join(f"{wall[(old, b)] / wall[(new, b)]:>7.2f}" for b in batches) + "  |"
              + "".join(f"{cpu[(old, b)] / cpu[(new, b)]:>7.2f}" for b in batches))
    return 0


def check_same_scores(a: Path, b: Path) -> None:
    """The two float exports compute the same function (the rewrite is exact): fail loudly if not."""
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (4, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    sa, sb = (session(p, 1).run(None, {"pixels": pixels})[0] for p in (a, b))
    diff = float(np.max(np.abs(sa - sb)))
    print(f"fp32 vs fp32-mha max |score difference| on 4 images: {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit(f"the two float exports disagree by {diff:.3g}: the attention rewrite is not exact")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
