"""INT8 vs FP32 of a RALI scorer in every CPU runtime, against this CPU's own GEMM peaks.

Not a test: run it by hand,
    PYTHONPATH=. .venv/bin/python benchmarks/bench_int8.py [--model b16|tiny] [--reps 5] [--threads 2]
        [--runtimes ort,openvino,litert] [--steps all] [--profile 3] [--workdir /tmp/rali-bench-int8]
        [--json out.json]

One run, on one machine, interleaved (each rep runs every variant once at each batch size, a different
one first each time, then every GEMM), so load drifts hit everything alike and only same-run ratios
are compared; a 1-minute load average above the CPU count is flagged (`busy`), as it makes them noise:
- the CPU model and flags (AMX, VNNI, BF16 decide which INT8 kernels run);
- the GEMM peaks of the runtime at the model's own weight-GEMM shapes at batch 8: ORT MatMul FP32,
  ORT MatMulInteger u8 x s8, the Q/DQ MatMul as the INT8 scorer runs it, and torch bf16 where the CPU
  has it (`_gemm_peaks.py`); `gemm_int8_over_fp32` = ORT MatMulInteger / ORT MatMul;
- per variant (FP32 and INT8 artifact of each runtime in --runtimes, made by `export_bundle` /
  `quantize` and run by the project's runners; `--steps` adds the ORT steps of `_int8_steps.py`):
  ms at batch 1 and 8, speed-up vs ORT FP32 and vs its own runtime's FP32, the rate of the model's
  GEMM work at batch 8 and its share of ORT's GEMM peak of its precision, and the max |score change|
  vs the float PyTorch scorer on the six sample photographs;
- the target that applies to this CPU (AMX: ORT INT8 >= 6x ORT FP32 at batch 8 and >= 50% of the
  INT8 GEMM peak; otherwise >= 0.9 x the GEMM ratio of this run), what was achieved, met or not;
- with --profile, ORT's per-op time of every ORT variant at batch 8 (`_ort_profile.py`).
A runtime that is not installed, or not in the format table, is listed as not runnable, with why.
History and analysis: benchmarks/RESULTS_int8.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))       # this folder: the _*.py helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root: rali_edge

import _bench_variants as bv  # noqa: E402
import _int8_report as report  # noqa: E402
from _gemm_peaks import gemm_calls, peaks  # noqa: E402
from _gemm_work import gemm_work  # noqa: E402
from _int8_steps import STEPS  # noqa: E402
from _ort_profile import as_json, print_profiles, profile_models  # noqa: E402
from _timing import load_average, time_interleaved  # noqa: E402

# Issue 31: ORT, OpenVINO and LiteRT in one run; --reps 1 from an empty --workdir stays < 10 min on 2 cores.
DEFAULT_RUNTIMES = "ort,openvino,litert"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("b16", "tiny"), default="b16")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rali-bench-int8"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib", type=int, default=16, help="random calibration images (speed only)")
    ap.add_argument("--runtimes", default=DEFAULT_RUNTIMES,
                    help=f"comma list of {', '.join(bv.RUNTIME_FORMATS)} (default {DEFAULT_RUNTIMES})")
    ap.add_argument("--steps", default="", help=f"ORT INT8 steps to time too: 'all' or a comma list of "
                    f"{', '.join(STEPS)} (benchmarks/RESULTS_int8.md)")
    ap.add_argument("--profile", type=int, default=0, metavar="ROUNDS",
                    help="also profile every ORT variant at batch 8 (ORT's profiler, ROUNDS interleaved runs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    args.runtimes = _names(ap, args.runtimes, bv.RUNTIME_FORMATS, "--runtimes")
    if "ort" not in args.runtimes:
        ap.error("--runtimes must include ort: every ratio is against ORT FP32")
    args.steps = list(STEPS) if args.steps == "all" else _names(ap, args.steps, STEPS, "--steps")
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    return args


def _names(ap: argparse.ArgumentParser, text: str, known, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"{option}: unknown {unknown}; choose from {', '.join(known)}")
    return names


def build_variants(args, bundle: Path) -> tuple[list[bv.Variant], dict[str, str]]:
    calibration = bv.random_calibration(bundle, args.calib)
    variants, not_runnable = [], {}
    for runtime in args.runtimes:
        made, why = bv.runtime_variants(runtime, bundle, args.workdir, calibration)
        variants += made
        if why:
            not_runnable[runtime] = why
    fp32 = bv.ort_fp32(bundle, args.workdir)
    variants += [STEPS[name](fp32, args.workdir, calibration) for name in args.steps]
    return variants, not_runnable


def measure(args, env: dict) -> dict:
    """Build every variant, then time all of them and the GEMM peaks in the same interleaved reps."""
    bundle = bv.build_bundle(args.model, args.workdir)
    variants, not_runnable = build_variants(args, bundle)
    work = gemm_work(bv.ort_fp32(bundle, args.workdir))
    bf16 = any(f in env["cpu_flags"] for f in ("avx512_bf16", "amx_bf16"))
    gemms = gemm_calls(work.peak_shapes(), 8, args.threads, bf16)
    runs = {v.name: bv.open_variant(v, args.threads) for v in variants}
    samples, reference = bv.reference_scores(bundle)
    changes = {name: bv.score_change(run, reference, samples) for name, run in runs.items()}
    size = bv.image_size(bundle)
    rng = np.random.default_rng(1)
    inputs = {b: rng.integers(0, 256, (b, 3, size, size), dtype=np.uint8) for b in report.BATCHES}
    models = {(name, b): (lambda run=run, x=x: run(x)) for b, x in inputs.items() for name, run in runs.items()}
    load_before = load_average()
    seconds, least = time_interleaved(models, gemms, args.reps)
    load_after = load_average()
    gemm = peaks({k: least[k] for k in gemms}, 8)   # a peak: the least time any round gave
    ms, ms_min = ({k: t[k] * 1000 for k in models} for t in (seconds, least))
    rows = report.variant_rows(variants, ms, ms_min, work.ops_per_image, gemm["gops"], changes)
    profiles = {}
    if args.profile:
        ort_models = {v.name: v.path for v in variants if v.runtime == "ort"}
        profiles = profile_models(ort_models, inputs[8], args.threads, args.profile, args.workdir)
    return {"size": size, "work": work, "gemm": gemm, "rows": rows, "not_runnable": not_runnable,
            "load_before": load_before, "load_after": load_after, "profiles": profiles}


def document(args, env: dict, m: dict) -> dict:
    """The JSON document: the keys issue 31 asks for, then every figure behind them."""
    gops = m["gemm"]["gops"]
    ratio = gops["int8"] / gops["fp32"]
    default = m["rows"].get(report.DEFAULT_INT8, {})
    return {
        "cpu_model": env["cpu_model"], "cpu_flags": env["cpu_flags"], "gemm_int8_over_fp32": ratio,
        "gemm_bf16_over_fp32": gops["bf16"] / gops["fp32"] if "bf16" in gops else None,
        "speedup_b1": default.get("x_ort_fp32_b1"), "speedup_b8": default.get("x_ort_fp32_b8"),
        "max_score_change": default.get("max_score_change"), "runtimes": report.runtime_summary(m["rows"]),
        "target": report.target(env["cpu_flags"], ratio, m["rows"].get(report.DEFAULT_INT8)),
        "busy": any(x is not None and x[0] > env["usable_cpus"] for x in (m["load_before"], m["load_after"])),
        "model": args.model, "threads": args.threads, "reps": args.reps, "load_before": m["load_before"],
        "load_after": m["load_after"], "gemm": m["gemm"], "model_gemm_gop_per_image": m["work"].ops_per_image / 1e9,
        "uncounted_gemm_nodes": list(m["work"].uncounted), "variants": m["rows"], "not_runnable": m["not_runnable"],
        "ort_profiles_b8_ms": as_json(m["profiles"]), "environment": env,
    }


def print_report(args, env: dict, m: dict, doc: dict) -> None:
    print(f"{env['cpu_model']}; flags: {', '.join(env['cpu_flags']) or 'none listed'}; {args.threads} threads; "
          f"{args.model} scorer, {m['size']} px, {m['work'].ops_per_image / 1e9:.2f} GOP of GEMMs per image; "
          f"median of {args.reps} interleaved reps")
    print(f"load average (1/5/15 min) before {_load(m['load_before'])}, after {_load(m['load_after'])} "
          "(other processes share the cores)")
    if doc["busy"]:
        print("WARNING: the 1-minute load average exceeded the CPU count: other processes took turns on the "
              "cores, so the ratios below (the GEMM peaks' above all) are unreliable; rerun on a quiet machine")
    report.print_gemm(m["gemm"], 8)
    report.print_rows(m["rows"])
    for runtime, why in m["not_runnable"].items():
        print(f"{runtime}: not runnable here: {why}")
    report.print_target(doc["target"], doc["busy"])
    print_profiles(m["profiles"])


def main(argv: list[str] | None = None) -> int:
    from rali_edge._atomic import atomic_write_json
    from rali_edge.report.environment import collect_environment

    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = collect_environment(threads=args.threads)
    m = measure(args, env)
    doc = document(args, env, m)
    print_report(args, env, m, doc)
    print(f"{time.perf_counter() - started:.0f} s in all (exports included)")
    if args.json is not None:
        atomic_write_json(args.json, {**doc, "seconds_total": time.perf_counter() - started})
    return 0


def _load(load: tuple[float, float, float] | None) -> str:
    return "unknown" if load is None else "/".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    sys.exit(main())
