"""Is the 3x INT8 target out of reach of ORT only, or of this CPU? The same ONNX files in OpenVINO.

Not a test, and not a project dependency: run it by hand after `pip install openvino`,
    PYTHONPATH=. .venv/bin/python benchmarks/bench_int8_openvino.py [--workdir /tmp/rali-bench-int8] [--reps 9]

Uses bench_int8.py's ViT-B/16 scorer (random weights, real size) and its cached exports: the FP32 ONNX,
the default cpu-profile INT8 (`int8`, with ORT's MatMulIntegerToFloat bias fusion) and the same
quantization without the fusion (`int8-nobias`: standard ONNX Q/DQ only, which OpenVINO can read).
OpenVINO turns each Q/DQ pair into a FakeQuantize and fuses it into the neighbouring convolution,
matmul, LayerNorm or eltwise kernels, which ORT's CPU provider cannot do; so if a runtime can get 3x
out of this graph on this CPU, this one should. Every model runs once per rep at each batch size,
interleaved, with the same thread count; ratios are against each runtime's own FP32 and against ORT's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_int8 import IMAGE_SIZE, build_bundle, export_fp32, quantize_variants, session  # noqa: E402


def _openvino():
    try:
        import openvino
    except ImportError as e:
        raise SystemExit("this benchmark needs OpenVINO (not a rali-edge dependency): pip install openvino") from e
    return openvino


def openvino_runner(path: Path, threads: int):
    ov = _openvino()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32"}  # no silent bf16 on CPUs that have it
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    return lambda pixels: np.asarray(request.infer({0: pixels})[0]).copy()


def ort_runner(path: Path, threads: int):
    s = session(path, threads)
    return lambda pixels: s.run(None, {"pixels": pixels})[0]


def measure(runners: dict, batches: tuple[int, ...], reps: int) -> tuple[dict, dict, dict]:
    """Median wall ms and process-CPU ms per (model, batch), and max |score - ORT FP32| per model."""
    rng = np.random.default_rng(1)
    inputs = {b: rng.integers(0, 256, (b, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8) for b in batches}
    reference = {b: runners["ort fp32"](inputs[b]) for b in batches}
    diff = {name: max(float(np.max(np.abs(run(inputs[b]) - reference[b]))) for b in batches)
            for name, run in runners.items()}  # doubles as the warm-up
    wall: dict = {(n, b): [] for n in runners for b in batches}
    cpu: dict = {(n, b): [] for n in runners for b in batches}
    for _ in range(reps):
        for b in batches:
            for name, run in runners.items():
                c, t = time.process_time(), time.perf_counter()
                run(inputs[b])
                wall[(name, b)].append((time.perf_counter() - t) * 1000)
                cpu[(name, b)].append((time.process_time() - c) * 1000)
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    return med(wall), med(cpu), diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rali-bench-int8"))
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib", type=int, default=16, help="random calibration images (speed only)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    ov = _openvino()  # fail before the long export when it is missing

    args.workdir.mkdir(parents=True, exist_ok=True)
    fp32 = export_fp32(build_bundle(args.workdir), args.workdir)
    int8 = quantize_variants(fp32, args.workdir, args.calib, ("int8", "int8-nobias"))
    runners = {"ort fp32": ort_runner(fp32, args.threads), "ort int8": ort_runner(int8["int8"], args.threads),
               "ort int8-nobias": ort_runner(int8["int8-nobias"], args.threads),
               "ov fp32": openvino_runner(fp32, args.threads),
               "ov int8-nobias": openvino_runner(int8["int8-nobias"], args.threads)}
    batches = (1, 8)
    load_before = os.getloadavg()
    wall, cpu, diff = measure(runners, batches, args.reps)
    load_after = os.getloadavg()
    print(f"ViT-B/16 RALI scorer, {IMAGE_SIZE} px, random weights; {args.threads} threads, median of "
          f"{args.reps} interleaved reps; OpenVINO {ov.__version__}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(f"{'model':<17}{'b1 ms':>9}{'b8 ms':>9}{'x own b1':>10}{'x own b8':>10}{'x ORT b8':>10}"
          f"{'cpu x own b8':>14}{'max|dscore|':>13}")
    for name in runners:
        own = "ov fp32" if name.startswith("ov") else "ort fp32"
        print(f"{name:<17}{wall[(name, 1)]:>9.1f}{wall[(name, 8)]:>9.1f}"
              f"{wall[(own, 1)] / wall[(name, 1)]:>10.2f}{wall[(own, 8)] / wall[(name, 8)]:>10.2f}"
              f"{wall[('ort fp32', 8)] / wall[(name, 8)]:>10.2f}{cpu[(own, 8)] / cpu[(name, 8)]:>14.2f}"
              f"{diff[name]:>13.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
