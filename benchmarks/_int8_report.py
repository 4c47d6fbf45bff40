"""bench_int8.py's figures: one row per variant, the per-runtime speed-ups, the target that applies to
this CPU, the printed table and the JSON document."""

from __future__ import annotations

from _bench_variants import Variant

BATCHES = (1, 8)
BASELINE = "ort-fp32"
DEFAULT_INT8 = "ort-int8"
AMX_SPEEDUP = 6.0       # issue 31: on an AMX host, ORT INT8 >= 6x ORT FP32 at batch 8 ...
AMX_PEAK_SHARE = 0.5    # ... and >= 50% of the INT8 GEMM peak
GEMM_RATIO_SHARE = 0.9  # elsewhere: >= 90% of the INT8/FP32 GEMM ratio measured in the same run


def variant_rows(variants: list[Variant], ms: dict, ms_min: dict, ops_per_image: float, peaks: dict,
                 changes: dict) -> dict:
    """{name: figures}: median ms per batch, speed-up vs ORT FP32 and vs its own runtime's FP32 (of the
    medians; `min` = of the least times), the achieved rate of the model's GEMM work at batch 8 and
    its share of the GEMM peak of its precision."""
    own_fp32 = {v.runtime: v.name for v in variants if v.precision == "fp32" and v.name == f"{v.runtime}-fp32"}
    rows = {}
    for v in variants:
        own = own_fp32.get(v.runtime)
        rate = ops_per_image * 8 / (ms[(v.name, 8)] / 1000) / 1e9
        peak = peaks.get("int8" if v.precision == "int8" else "fp32")
        rows[v.name] = {
            "runtime": v.runtime, "precision": v.precision, "mb": v.megabytes,
            **{f"ms_b{b}": ms[(v.name, b)] for b in BATCHES},
            **{f"x_ort_fp32_b{b}": _ratio(ms, BASELINE, v.name, b) for b in BATCHES},
            **{f"x_own_fp32_b{b}": _ratio(ms, own, v.name, b) if own else None for b in BATCHES},
            **{f"ms_min_b{b}": ms_min[(v.name, b)] for b in BATCHES},
            "x_ort_fp32_min_b8": _ratio(ms_min, BASELINE, v.name, 8),
            "gops_b8": rate, "share_of_ort_peak_b8": rate / peak if peak else None,
            "max_score_change": changes[v.name],
        }
    return rows


def _ratio(ms: dict, base: str, name: str, b: int) -> float | None:
    return ms[(base, b)] / ms[(name, b)] if (base, b) in ms else None


def runtime_summary(rows: dict) -> dict:
    """{runtime: speed-ups of its INT8 artifact} (vs its own FP32 and vs ORT FP32) and its score change."""
    out = {}
    for name, r in rows.items():
        if r["precision"] == "int8" and name == f"{r['runtime']}-int8":
            out[r["runtime"]] = {"speedup_b1": r["x_own_fp32_b1"], "speedup_b8": r["x_own_fp32_b8"],
                                 "x_ort_fp32_b1": r["x_ort_fp32_b1"], "x_ort_fp32_b8": r["x_ort_fp32_b8"],
                                 "max_score_change": r["max_score_change"]}
    return out


def target(flags: list[str], gemm_ratio: float, int8_row: dict | None) -> dict:
    """The issue-31 target for this CPU, what was achieved and whether it was met."""
    achieved = int8_row["x_ort_fp32_b8"] if int8_row else None
    least = {"achieved_min": int8_row["x_ort_fp32_min_b8"] if int8_row else None}   # of the least times
    if "amx_int8" in flags:
        share = int8_row["share_of_ort_peak_b8"] if int8_row else None
        met = achieved is not None and achieved >= AMX_SPEEDUP and share is not None and share >= AMX_PEAK_SHARE
        return {"cpu_class": "amx", "rule": f"ORT INT8 >= {AMX_SPEEDUP:g}x ORT FP32 at batch 8 and >= "
                f"{AMX_PEAK_SHARE:.0%} of the INT8 GEMM peak", "required": AMX_SPEEDUP, "achieved": achieved,
                "required_peak_share": AMX_PEAK_SHARE, "achieved_peak_share": share, "met": met, **least}
    required = GEMM_RATIO_SHARE * gemm_ratio
    return {"cpu_class": "vnni" if "avx512_vnni" in flags else "no-vnni",
            "rule": f"ORT INT8 / ORT FP32 at batch 8 >= {GEMM_RATIO_SHARE:g} x the INT8/FP32 GEMM ratio "
                    f"measured in the same run ({gemm_ratio:.2f})",
            "required": required, "achieved": achieved, "met": achieved is not None and achieved >= required,
            **least}


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_gemm(gemm: dict, batch: int) -> None:
    g = gemm["gops"]
    print(f"GEMM peaks, the model's weight GEMMs at batch {batch} (GOP/s; mix = count-weighted over the shapes):")
    kinds = list(g)
    print(f"  {'M x K x N':<18}{'count':>6}" + "".join(f"{k:>10}" for k in kinds) + f"{'int8/fp32':>11}")
    for s in gemm["shapes"]:
        shape = f"{s['m']}x{s['k']}x{s['n']}"
        print(f"  {shape:<18}{s['count']:>6}" + "".join(f"{s[k + '_gops']:>10.0f}" for k in kinds)
              + f"{s['int8_gops'] / s['fp32_gops']:>11.2f}")
    print(f"  {'mix':<24}" + "".join(f"{g[k]:>10.0f}" for k in kinds) + f"{g['int8'] / g['fp32']:>11.2f}")


def print_rows(rows: dict) -> None:
    print(f"{'variant':<22}{'MB':>7}{'b1 ms':>9}{'b8 ms':>9}{'xORT b1':>8}{'xORT b8':>8}{'(min)':>7}{'xown b1':>8}"
          f"{'xown b8':>8}{'GOP/s b8':>9}{'%peak':>7}{'max|dscore|':>12}")
    for name, r in rows.items():
        share = r["share_of_ort_peak_b8"]
        print(f"{name:<22}{r['mb']:>7.1f}{r['ms_b1']:>9.1f}{r['ms_b8']:>9.1f}{_f(r['x_ort_fp32_b1'], '.2f'):>8}"
              f"{_f(r['x_ort_fp32_b8'], '.2f'):>8}{_f(r['x_ort_fp32_min_b8'], '.2f'):>7}"
              f"{_f(r['x_own_fp32_b1'], '.2f'):>8}{_f(r['x_own_fp32_b8'], '.2f'):>8}"
              f"{r['gops_b8']:>9.0f}{_f(None if share is None else 100 * share, '.0f'):>7}"
              f"{r['max_score_change']:>12.4f}")


def print_target(t: dict, busy: bool) -> None:
    verdict = ("MET" if t["met"] else "NOT MET") + (" (machine busy: not to be trusted)" if busy else "")
    print(f"target ({t['cpu_class']}): {t['rule']}: required {t['required']:.2f}, achieved "
          f"{_f(t['achieved'], '.2f')} (of the least times: {_f(t['achieved_min'], '.2f')}) -> {verdict}")
