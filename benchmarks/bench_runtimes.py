"""One RALI scorer in every CPU runtime that runs here: ONNX Runtime, LiteRT and ExecuTorch, FP32 and INT8.

Not a test: run it by hand,
    PYTHONPATH=. .venv/bin/python benchmarks/bench_runtimes.py [--model b16|tiny] [--reps 5] [--threads 2]
        [--workdir /tmp/rali-bench-runtimes] [--json out.json]

`--model b16` (default) is the ViT-B/16-size scorer of bench_int8.py (224 px, open_clip ViT-B-16 with
QuickGELU, RANDOM weights, 512-d PCA, 250 basis vectors); `--model tiny` a tiny random scorer, to check
the script in seconds. Every variant is made by `rali_edge.export.export_bundle`, the code behind
`rali-edge export` (INT8 calibrated on --calib random images: enough to time a graph, not to judge
accuracy), opened with its `rali_edge.runtime` runner (the runners `validate` and `benchmark` use) and
timed at batch 1 and batch 8, interleaved: each rep runs every variant once at each batch size, so load
drifts hit them alike. Columns: median ms per batch, speed-up against ORT FP32 (its time / this time) and
the max |score change| against the float PyTorch scorer on the six sample photos every export is checked
on. The CPU flags (AMX, VNNI, BF16) are printed with the table: compare ratios within one run only.
A variant whose runtime is not installed is listed as "not runnable here" with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

VARIANTS = (("onnx", "fp32"), ("onnx", "int8"), ("litert", "fp32"), ("litert", "int8"),
            ("executorch", "fp32"), ("executorch", "int8"))
BATCHES = (1, 8)


def build_bundle(model: str, workdir: Path) -> Path:
    if model == "b16":
        from bench_int8 import build_bundle as build_b16

        return build_b16(workdir)
    from rali_edge.model.tiny import make_random_bundle

    out = workdir / "tiny-random-bundle"
    return out if (out / "config.json").is_file() else make_random_bundle(out)


def export_variants(bundle: Path, workdir: Path, calib: int) -> tuple[dict[str, Path], dict[str, str]]:
    """(name -> artifact) for the variants that could be made; (name -> why not) for the others."""
    from rali_edge.bundle import load_bundle
    from rali_edge.calibration import from_pixels
    from rali_edge.export.api import export_bundle
    from rali_edge.export.formats import caps

    size = load_bundle(bundle).config.preprocess.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (calib, 3, size, size), dtype=np.uint8)
    cal = from_pixels(pixels, "random uint8 pixels (benchmark only)", seed=0)
    made, skipped = {}, {}
    for fmt, precision in VARIANTS:
        name = f"{fmt}-{precision}"
        ok, why = caps(fmt).runnable_here()
        if not ok:
            skipped[name] = why
            continue
        target = workdir / f"{bundle.name}-{name}{caps(fmt).suffix}"
        if not target.exists():
            quantized = caps(fmt).is_quantized(precision)
            # random weights and random calibration: time the graph, report (not gate) its score change
            # fixed-batch formats (LiteRT) are exported at batch 1, as an app runs them; batch 8 is then
            # eight invocations (the runner chunks), which is what such an app would do too
            export_bundle(bundle, fmt, precision, batch=None if caps(fmt).dynamic_batch else 1,
                          out_dir=workdir, name=target.stem, calibration=cal if quantized else None,
                          value_check=False)
        made[name] = target
    return made, skipped


def max_score_change(runner, bundle: Path) -> float:
    from rali_edge.bundle import load_bundle
    from rali_edge.export.samples import sample_pixels
    from rali_edge.runtime import open_runner

    pixels = sample_pixels(load_bundle(bundle).config.preprocess)
    ref = open_runner(bundle).run(pixels)["score"]
    return float(np.max(np.abs(runner.run(pixels)["score"] - ref)))


def time_interleaved(runners: dict, inputs: dict[int, np.ndarray], reps: int) -> dict[tuple[str, int], float]:
    """Median wall ms per (variant, batch), after one warm-up run of each."""
    for run in runners.values():
        for pixels in inputs.values():
            run(pixels)
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in runners for b in inputs}
    for _ in range(reps):
        for b, pixels in inputs.items():
            for name, run in runners.items():
                t = time.perf_counter()
                run(pixels)
                times[(name, b)].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    from rali_edge.evaluation.measure import open_runner_for
    from rali_edge.report.environment import cpu_flags, cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("b16", "tiny"), default="b16")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rali-bench-runtimes"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib", type=int, default=16, help="random calibration images (speed only)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(args.model, args.workdir)
    models, skipped = export_variants(bundle, args.workdir, args.calib)
    runners = {name: open_runner_for(path, args.threads) for name, path in models.items()}
    size = next(iter(runners.values())).image_size
    rng = np.random.default_rng(1)
    inputs = {b: rng.integers(0, 256, (b, 3, size, size), dtype=np.uint8) for b in BATCHES}
    change = {name: max_score_change(r, bundle) for name, r in runners.items()}
    ms = time_interleaved({n: r.run for n, r in runners.items()}, inputs, args.reps)
    base = "onnx-fp32"
    print(f"{cpu_model()}; flags: {', '.join(cpu_flags()) or 'none listed'}; {args.threads} threads; "
          f"{args.model} scorer, {size} px; median of {args.reps} interleaved reps")
    print(f"{'variant':<18}{'MB':>8}{'b1 ms':>10}{'b8 ms':>10}{'x b1':>7}{'x b8':>7}{'max|d score|':>14}")
    rows = {}
    for name, path in models.items():
        mb = sum(f.stat().st_size for f in path.rglob("*")) / 2**20 if path.is_dir() else path.stat().st_size / 2**20
        ratio = {b: ms[(base, b)] / ms[(name, b)] for b in BATCHES}
        rows[name] = {"mb": mb, **{f"ms_b{b}": ms[(name, b)] for b in BATCHES},
                      **{f"speedup_b{b}": ratio[b] for b in BATCHES}, "max_score_change": change[name]}
        print(f"{name:<18}{mb:>8.1f}{ms[(name, 1)]:>10.1f}{ms[(name, 8)]:>10.1f}{ratio[1]:>7.2f}{ratio[8]:>7.2f}"
              f"{change[name]:>14.4f}")
    for name, why in skipped.items():
        print(f"{name:<18} not runnable here: {why}")
    if args.json is not None:
        doc = {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "threads": args.threads, "model": args.model,
               "reps": args.reps, "baseline": base, "variants": rows, "not_runnable": skipped}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
