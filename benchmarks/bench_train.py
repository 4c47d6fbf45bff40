"""Training benchmark: alignment throughput and compress + fit time (random weights, synthetic data).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_train.py [--models tiny,demo,demo-crop,modified-resnet,b16]
                                                             [--devices cpu,cuda]
                                                             [--align-steps 3] [--batch 8] [--threads N] [--json out.json]

1. Alignment throughput (images/s): one optimiser step = image-tower forward + backward on a batch,
   the symmetric InfoNCE loss against fixed text embeddings, AdamW step (the align stage's step
   without data loading), bf16 autocast on CUDA. Models: the tiny open_clip ViT
   of rali_edge.model.tiny (32 px); the demo's timm ResNet tower (`DemoSettings.full()`) on whole
   128 px inputs (`demo`) and on the 64 px random crops it trains on for most steps (`demo-crop`);
   the earlier demo tower, open_clip's ModifiedResNet of width 8 at 128 px (`modified-resnet`); and an
   open_clip ViT-B-16 (224 px) built from its config with RANDOM weights (nothing downloaded; speed
   does not depend on the weights). Each model runs in both memory layouts, contiguous (NCHW) and
   channels-last (NHWC, `align.channels_last`, the default), and on a CPU with native bf16 (AVX512-BF16
   or AMX) also channels-last with bf16 autocast (`align.mixed_precision = "bf16"`, the demo's choice
   there); steps interleaved so load drifts hit all alike; `x` is the speed-up over contiguous float32.
2. compress + fit on 10,000 synthetic embeddings (D=768 -> M=512, N=240 buckets, K=250 basis
   vectors, default FitConfig with early stopping on a 10 % validation split). Target: < 30 s on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _tiny():
    from rali_edge.model.tiny import tiny_backbone_config

    return tiny_backbone_config("open_clip", 32)


def _vit_b16():
    import open_clip

    from rali_edge.model.backbone import open_clip_backbone_config

    cfg = open_clip.get_model_config("ViT-B-16")
    pcfg = {"size": 224, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest"}
    return open_clip_backbone_config("ViT-B-16", None, cfg, pcfg)


def _demo_tower(image_size: int | None = None):
    from rali_edge.demo import DemoSettings
    from rali_edge.model.tiny import tiny_timm_backbone_config

    s = DemoSettings.full()
    return tiny_timm_backbone_config(s.clip_tower, image_size or s.clip_image_size, embed_dim=s.clip_embed_dim,
                                     text_width=s.clip_text_width, text_layers=s.clip_text_layers)


def _demo_crop():
    from rali_edge.demo import DemoSettings

    return _demo_tower(DemoSettings.full().align_crop)  # same weights; timm's tower takes any input size


def _modified_resnet():
    from rali_edge.demo import DemoSettings
    from rali_edge.model.tiny import tiny_resnet_backbone_config

    s = DemoSettings.full()
    return tiny_resnet_backbone_config(s.clip_image_size, 8, embed_dim=s.clip_embed_dim,
                                       text_width=s.clip_text_width, text_layers=s.clip_text_layers)


MODELS = {"tiny": _tiny, "demo": _demo_tower, "demo-crop": _demo_crop, "modified-resnet": _modified_resnet,
          "b16": _vit_b16}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _variants(device: str) -> dict[str, tuple[torch.memory_format, torch.dtype | None]]:
    """Layout x precision: CUDA always autocasts bf16; the CPU runs float32, plus bf16 autocast on
    channels-last where the CPU has native bf16 (`align.mixed_precision = "bf16"`, as the demo uses)."""
    from rali_edge.train.align import cpu_has_native_bf16

    if device.startswith("cuda"):
        return {name: (fmt, torch.bfloat16) for name, fmt in LAYOUTS.items()}
    out = {name: (fmt, None) for name, fmt in LAYOUTS.items()}
    if cpu_has_native_bf16():
        out["channels_last+bf16"] = (torch.channels_last, torch.bfloat16)
    return out


def align_throughput(model: str, device: str, batch: int, steps: int, warmup: int = 1) -> list[dict]:
    """One row per variant (layout, precision); their steps alternate so load drifts hit all alike."""
    import copy

    from rali_edge.model.backbone import build_backbone
    from rali_edge.train.align import contrastive_loss

    cfg = MODELS[model]()
    torch.manual_seed(0)
    encoder = build_backbone(cfg).to(device).image_encoder().train()
    size = cfg.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    txt = torch.nn.functional.normalize(torch.randn(batch, cfg.embed_dim, device=device), dim=-1)
    ids = torch.arange(batch, device=device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    variants = _variants(device)
    runs = {}
    for name, (fmt, dtype) in variants.items():
        enc = copy.deepcopy(encoder).to(memory_format=fmt)
        runs[name] = (enc, torch.optim.AdamW(enc.parameters(), lr=1e-5), pixels.contiguous(memory_format=fmt), dtype)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + steps):
        for name, (enc, opt, x, dtype) in runs.items():
            if device_type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(device_type, dtype=dtype) if dtype else contextlib.nullcontext():
                loss = contrastive_loss(enc(x), txt, ids, 0.01)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device_type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    params = sum(p.numel() for p in encoder.parameters())
    base = statistics.median(times["contiguous"])
    rows = []
    for name, (_, dtype) in variants.items():
        step = statistics.median(times[name])
        rows.append({"model": model, "device": device, "variant": name, "image_size": size, "batch": batch,
                     "params_M": params / 1e6, "step_s": step, "images_per_s": batch / step,
                     "speedup": base / step, "precision": "bf16" if dtype else "fp32"})
    return rows


def compress_fit_time(n: int = 10_000, d: int = 768, seed: int = 0) -> dict:
    from rali_edge.train.compress import CompressConfig, compress
    from rali_edge.train.fit import FitConfig, fit_head, head_from_compress

    rng = np.random.default_rng(seed)
    scores = rng.uniform(1.0, 5.0, n)
    emb = (rng.normal(size=(n, d)) + np.outer(scores - 3.0, rng.normal(size=d)) * 0.3).astype(np.float32)
    val = rng.permutation(n)[: n // 10]
    train = np.setdiff1d(np.arange(n), val)
    t0 = time.perf_counter()
    res = compress(emb[train], scores[train], CompressConfig())
    t1 = time.perf_counter()
    out = fit_head(head_from_compress(*res), emb[train], scores[train], emb[val], scores[val], FitConfig(),
                   progress=False)
    t2 = time.perf_counter()
    return {"n": n, "D": d, "M": 512, "N": 240, "K": int(len(res.proto_scores)), "compress_s": t1 - t0,
            "fit_s": t2 - t1, "fit_epochs": len(out.history), "total_s": t2 - t0,
            "val_plcc": out.history[out.best_epoch - 1]["val_plcc"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,demo,demo-crop,modified-resnet,b16")
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8, help="CPU batch; CUDA uses --cuda-batch")
    ap.add_argument("--cuda-batch", type=int, default=64)
    ap.add_argument("--align-steps", type=int, default=3)
    ap.add_argument("--skip-compress", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.threads:  # torch and the BLAS numpy / scikit-learn use
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    rows = []
    for device in args.devices.split(","):
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"skipping {device}: no CUDA device here", file=sys.stderr)
            continue
        for model in args.models.split(","):
            batch = args.cuda_batch if device.startswith("cuda") else args.batch
            rows.extend(align_throughput(model, device, batch, args.align_steps))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'model':11s} {'device':6s} {'variant':18s} {'px':>4s} {'batch':>5s} {'params':>8s} {'prec':>5s} "
          f"{'step s':>8s} {'img/s':>9s} {'x':>5s}")
    for r in rows:
        print(f"{r['model']:11s} {r['device']:6s} {r['variant']:18s} {r['image_size']:4d} {r['batch']:5d} "
              f"{r['params_M']:7.2f}M {r['precision']:>5s} {r['step_s']:8.3f} {r['images_per_s']:9.1f} "
              f"{r['speedup']:5.2f}")
    report = {"align": rows}
    if not args.skip_compress:
        cf = compress_fit_time()
        report["compress_fit"] = cf
        print(f"\ncompress + fit, {cf['n']} embeddings D={cf['D']} M={cf['M']} N={cf['N']} K={cf['K']}: "
              f"compress {cf['compress_s']:.1f} s, fit {cf['fit_s']:.1f} s ({cf['fit_epochs']} epochs, early "
              f"stopping), total {cf['total_s']:.1f} s (target < 30 s on CPU); val PLCC {cf['val_plcc']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
