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
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_int8 import (  # noqa: E402
    IMAGE_SIZE,
    add_common_arguments,
    bench_inputs,
    build_bundle,
    export_fp32,
    ort_runner,
    quantize_variants,
    time_interleaved,
)


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


def score_changes(runners: dict, inputs: dict[int, np.ndarray]) -> dict[str, float]:
    """Max |score - ORT FP32 score| per runner over all inputs; running every model also warms it up."""
    reference = {b: runners["ort fp32"](pixels) for b, pixels in inputs.items()}
    return {name: max(float(np.max(np.abs(run(pixels) - reference[b]))) for b, pixels in inputs.items())
            for name, run in runners.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(ap, reps=9)
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
    inputs = bench_inputs(batches)
    diff = score_changes(runners, inputs)
    wall, cpu = time_interleaved(runners, inputs, args.reps)
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
