"""Scale-out scoring on this node, one run: the artifact's own batched throughput, the local engine, Ray.

Not a test: run it by hand,
    PYTHONPATH=. .venv/bin/python benchmarks/bench_scale.py [--model b16|tiny] [--images 64] [--batch 8]
        [--reps 3] [--no-ray] [--workdir /tmp/rali-bench-scale] [--json out.json]

The artifact is an INT8 ONNX made by `export_bundle` (the code behind `rali-edge export`) from the
ViT-B/16-size random scorer of bench_int8.py (`--model b16`, 224 px) or a tiny one (`--model tiny`, to
check the script in seconds); calibration on random pixels (speed only). The photos are JPEGs (quality 90,
480-800 px wide) made from scikit-image's sample pictures. Rows, img/s, each rep interleaved so load
drifts hit every variant alike (median of --reps):
- `artifact, batched`: the runner on pixels decoded and preprocessed beforehand, in batches of --batch
  (the ceiling: no file is read);
- `local engine`: `rali_edge.batch` as `rali-edge score` runs it, decoding in a thread pool ahead of the
  runner (acceptance: >= 80% of the row above);
- `local, no overlap`: the same core, each batch decoded then run (ahead=0, one decode thread);
- `ray`: the Ray engine on a local Ray started here with every core, default actors; its fixed overhead
  is `ray.init` plus the time to the first rows (actor start, the artifact through the object store), and
  `steady` the rate after the first rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))       # this folder: _bench_variants
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root: rali_edge


def build_artifact(model: str, workdir: Path) -> Path:
    from _bench_variants import build_bundle

    from rali_edge.bundle import load_bundle
    from rali_edge.calibration import from_pixels
    from rali_edge.export.api import export_bundle

    bundle = build_bundle(model, workdir)   # the scorers of bench_int8.py: ViT-B/16 size, or tiny
    target = workdir / f"{bundle.name}-int8.onnx"
    if not target.exists():
        size = load_bundle(bundle).config.preprocess.image_size
        pixels = np.random.default_rng(0).integers(0, 256, (16, 3, size, size), dtype=np.uint8)
        cal = from_pixels(pixels, "random uint8 pixels (benchmark only)", seed=0)
        export_bundle(bundle, "onnx", "int8", out_dir=workdir, name=target.stem, calibration=cal, value_check=False)
    return target


def make_photos(folder: Path, n: int) -> list[str]:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"photo{i:04d}.jpg"
        if not path.exists():
            img = Image.fromarray(base[i % len(base)])
            width = int(rng.integers(480, 801))
            img.resize((width, int(width * img.height / img.width))).save(path, quality=90)
        paths.append(str(path))
    return paths


def batched(runner, pixels: np.ndarray, batch: int) -> None:
    for i in range(0, len(pixels), batch):
        runner.run(pixels[i:i + batch])


def drain(session, paths: list[str]) -> tuple[float, float, int]:
    """(seconds to the first rows, seconds in all, rows in the first batch) of one scoring pass."""
    start, first, first_rows, n = time.perf_counter(), None, 0, 0
    for rows in session.score(paths):
        if first is None:
            first, first_rows = time.perf_counter() - start, len(rows)
        n += len(rows)
    assert n == len(paths), f"{n} rows for {len(paths)} paths"
    return first, time.perf_counter() - start, first_rows


def ray_pass(files, paths: list[str], batch: int) -> tuple[float, float, int, int]:
    """(seconds to the first rows, seconds in all, rows in the first batch, actors) of one Ray pass,
    the session's start (the artifact into the object store, the actors) included."""
    from rali_edge.batch.ray_engine import RayEngine

    t = time.perf_counter()
    with RayEngine(batch_size=batch, progress=False).session(files) as session:
        opened = time.perf_counter() - t
        first, total, first_rows = drain(session, paths)
    return opened + first, opened + total, first_rows, session.actors


def ray_summary(runs: list[tuple], n: int, init: float) -> dict:
    first = statistics.median(r[0] for r in runs)
    steady = statistics.median((n - r[2]) / max(r[1] - r[0], 1e-9) for r in runs)
    return {"init_s": init, "first_rows_s": first, "steady_img_s": steady, "actors": runs[0][3]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("b16", "tiny"), default="b16")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true", help="leave the Ray row out")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rali-bench-scale"))
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def run_interleaved(variants: dict, reps: int, ray_run) -> tuple[dict[str, list[float]], list[tuple], float]:
    """Seconds per variant per rep (each rep runs every variant once, then Ray), Ray's passes, ray.init s."""
    from rali_edge.batch.ray_engine import ray_connection

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    ray_runs: list[tuple] = []
    start = time.perf_counter()
    with contextlib.nullcontext() if ray_run is None else ray_connection("local"):   # a new local Ray, every core
        init = time.perf_counter() - start
        for _ in range(reps):
            for name, run in variants.items():
                t = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - t)
            if ray_run is not None:
                ray_runs.append(ray_run())
                seconds.setdefault("ray", []).append(ray_runs[-1][1])
    return seconds, ray_runs, init


def print_table(header: str, rate: dict[str, float], ray: dict | None) -> bool:
    ceiling = rate["artifact, batched"]
    print(header)
    print(f"{'variant':<20}{'img/s':>9}{'x batched':>11}")
    for name, r in rate.items():
        print(f"{name:<20}{r:>9.2f}{r / ceiling:>11.2f}")
    if ray is not None:
        print(f"ray: {ray['actors']} actor(s); fixed overhead {ray['init_s']:.1f} s ray.init + "
              f"{ray['first_rows_s']:.1f} s to the first rows; steady {ray['steady_img_s']:.2f} img/s "
              f"({ray['steady_img_s'] / ceiling:.2f} x batched)")
    ok = rate["local engine"] >= 0.8 * ceiling
    print(f"acceptance (local engine >= 0.80 x batched): {rate['local engine'] / ceiling:.2f} -> "
          f"{'met' if ok else 'NOT met'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    from rali_edge.batch.artifact import ArtifactFiles
    from rali_edge.batch.core import BatchScorer, open_artifact_runner
    from rali_edge.batch.local import LocalEngine, LocalSession
    from rali_edge.report.environment import cpu_model

    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifact = build_artifact(args.model, args.workdir)
    paths = make_photos(args.workdir / f"photos-{args.images}", args.images)
    load_before = os.getloadavg()[0]
    core = BatchScorer(open_artifact_runner(artifact))
    pixels = np.stack([core.prepare(p).pixels for p in paths])
    overlap = LocalSession(LocalEngine(batch_size=args.batch, progress=False), core)
    plain = LocalSession(LocalEngine(batch_size=args.batch, decode_threads=1, ahead=0, progress=False), core)
    variants = {"artifact, batched": lambda: batched(core.runner, pixels, args.batch),
                "local engine": lambda: drain(overlap, paths), "local, no overlap": lambda: drain(plain, paths)}
    batched(core.runner, pixels[: args.batch], args.batch)   # warm-up
    ray_run = None if args.no_ray else (lambda: ray_pass(ArtifactFiles.of(artifact), paths, args.batch))
    seconds, ray_runs, init = run_interleaved(variants, args.reps, ray_run)
    rate = {name: args.images / statistics.median(s) for name, s in seconds.items()}
    ray = None if args.no_ray else ray_summary(ray_runs, args.images, init)
    load = [load_before, os.getloadavg()[0]]
    ok = print_table(f"{cpu_model()}; {os.cpu_count()} cores, load {load[0]:.1f} -> {load[1]:.1f}; {args.model} "
                     f"INT8 ONNX, {core.runner.image_size} px; {args.images} JPEGs, batch {args.batch}; median of "
                     f"{args.reps} interleaved reps", rate, ray)
    if args.json is not None:
        args.json.write_text(json.dumps({"cpu_model": cpu_model(), "cores": os.cpu_count(), "model": args.model,
                                         "images": args.images, "batch": args.batch, "reps": args.reps,
                                         "load": load, "img_s": rate, "ray": ray, "acceptance_met": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
