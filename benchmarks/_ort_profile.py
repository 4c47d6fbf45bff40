"""Where ONNX Runtime spends a run, per op type and output shape, from its own profiler.

The models are profiled interleaved (each round runs every model once), and each (op type, output
shape) group keeps its least time over the rounds: on a shared machine other processes stretch some
kernels of every run, and the minimum is the closest to what an idle machine would show. The total
is the sum of those minima, so it is a little below any single run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _session(path: Path, threads: int, prefix: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(prefix)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _per_run(trace: Path) -> list[dict[tuple[str, str], float]]:
    """ms per (op type, first output shape) for each model_run in the trace, in order."""
    events = json.loads(trace.read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    runs: list[dict[tuple[str, str], float]] = [{} for _ in starts]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0:
            continue
        args = e.get("args", {})
        shapes = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
        key = (args.get("op_name", "?"), "x".join(map(str, shapes[0])) if shapes else "")
        runs[i][key] = runs[i].get(key, 0.0) + e["dur"] / 1000.0
    return runs


def profile_models(models: dict[str, Path], pixels: np.ndarray, threads: int, rounds: int,
                   scratch: Path) -> dict[str, dict[tuple[str, str], float]]:
    """{name: {(op type, output shape): least ms over the rounds}}, largest first."""
    sessions = {name: _session(p, threads, scratch / f"profile-{name}") for name, p in models.items()}
    for _ in range(rounds + 1):   # the first round is a warm-up, dropped below
        for sess in sessions.values():
            sess.run(None, {sess.get_inputs()[0].name: pixels})
    out = {}
    for name, sess in sessions.items():
        trace = Path(sess.end_profiling())
        runs = _per_run(trace)[1:]
        trace.unlink()
        best = {key: min(run.get(key, 0.0) for run in runs) for key in runs[0]}
        out[name] = dict(sorted(best.items(), key=lambda kv: -kv[1]))
    return out


def print_profiles(profiles: dict[str, dict[tuple[str, str], float]], top: int = 14) -> None:
    for name, ops in profiles.items():
        total = sum(ops.values())
        print(f"ORT profile, {name}, batch {_batch(ops)}: {total:.0f} ms in kernels (sum of per-op minima)")
        for (op, shape), ms in list(ops.items())[:top]:
            print(f"  {op:<24}{shape:<18}{ms:>8.1f} ms {100 * ms / total:>5.1f}%")


def _batch(ops: dict[tuple[str, str], float]) -> str:
    shapes = [shape for _, shape in ops if shape]
    return shapes[0].split("x")[0] if shapes else "?"


def as_json(profiles: dict[str, dict[tuple[str, str], float]]) -> dict[str, list[dict]]:
    return {name: [{"op": op, "shape": shape, "ms": ms} for (op, shape), ms in ops.items()]
            for name, ops in profiles.items()}
