"""`run_benchmark`: export every requested format and precision, validate each against the float
model on the meta files, time each that runs here, and write report.json / report.md / report.html.

Per variant: build (export / quantize) -> run in its own runtime, or simulate (Core ML off macOS),
or say why it cannot run -> drift vs float per dataset (report/drift.py) -> timing at batch 1 and
batch N -> one BenchmarkRow. A failure of one variant becomes its row's status and reason; the
others go on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rali_edge.errors import ConfigError, DataError, NotRunnableHere, RaliEdgeError, UnsupportedOptionError
from rali_edge.report import drift
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import BenchmarkRow, Status, short_reason
from rali_edge.report.variants import DEFAULT_VARIANTS, VARIANTS, BuildContext, Built, Simulation

DEFAULT_CALIB_SIZE = 300


def _row(v, status: Status, message: str = "", **kw) -> BenchmarkRow:
    return BenchmarkRow(v.format, v.precision, status, reason=short_reason(message) if message else "",
                        detail=message, **kw)


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """Variant keys in table order. None/"all": every variant. Unknown names are rejected, never guessed."""
    if formats is None:
        return list(DEFAULT_VARIANTS)
    names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f).strip() for f in formats]
    names = [n for n in names if n]
    if names == ["all"]:
        return list(DEFAULT_VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise UnsupportedOptionError(f"unknown format(s) {unknown or names}; choose from: all, {', '.join(VARIANTS)}")
    return [k for k in VARIANTS if k in names]   # table order, duplicates dropped


@dataclass
class EvalData:
    """Preprocessed uint8 pixels and ground truth per dataset (meta file), images that failed skipped."""

    pixels: dict[str, np.ndarray]
    gt: dict[str, np.ndarray | None]
    skipped: list[dict]


def load_eval_data(meta_paths: Sequence[str | os.PathLike], image_root: str | os.PathLike, preprocess) -> EvalData:
    from rali_edge.data.images import load_images
    from rali_edge.data.meta import read_metas
    from rali_edge.model.preprocess import uint8_batch

    if not meta_paths:
        raise ConfigError("the benchmark needs at least one meta file (--meta)")
    pixels, gts, skipped = {}, {}, []
    for name, records in read_metas(meta_paths, image_root).items():
        good, bad = load_images([r.path for r in records])
        skipped += [{"dataset": name, "path": b.path, "reason": b.reason} for b in bad]
        if not good:
            raise DataError(f"dataset {name!r}: none of its {len(records)} images could be read")
        kept = [records[i] for i, _ in good]
        pixels[name] = uint8_batch([img for _, img in good], preprocess).numpy()
        scores = [r.score for r in kept]
        gts[name] = None if any(s is None for s in scores) else np.asarray(scores, dtype=np.float64)
    return EvalData(pixels, gts, skipped)


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def _calibration_factory(calib, image_root, preprocess, size: int, seed: int, meta_paths):
    """Built on first use (only INT8 variants need it): --calib META|DIR, else the benchmark's metas."""
    cache: dict[str, object] = {}

    def get():
        if "set" not in cache:
            from rali_edge.calibration import build_calibration_set

            source = calib if calib is not None else meta_paths[0]
            cache["set"] = build_calibration_set(source, preprocess, size=size, seed=seed, image_root=image_root)
        return cache["set"]

    return get


def _simulate(bundle_dir: Path, sim: Simulation, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Core ML accuracy off macOS: the folded model in FP16 (and INT8-rounded weights), in PyTorch."""
    from rali_edge.bundle import load_bundle
    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.spec import ExportSpec
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.quantize.coreml import run_simulated, simulate_weight_quantization

    bundle = load_bundle(bundle_dir)
    pre = bundle.config.preprocess
    folded = fold_scorer(RaliScorer.from_bundle(bundle), pre, ExportSpec(image_size=pre.image_size, input_kind="unit"))
    if sim.weights is not None:
        simulate_weight_quantization(folded, sim.weights)
    return run_simulated(folded, pixels, "unit")


class _Bench:
    """One benchmark run's shared state; `row(key)` makes one table row."""

    def __init__(self, bundle_dir: Path, data: EvalData, reference: dict, ctx: BuildContext,
                 batch: int, repeats: int, warmup: int, max_plcc_drop: float | None, threads: int | None):
        self.bundle_dir, self.data, self.reference, self.ctx = bundle_dir, data, reference, ctx
        self.batch, self.repeats, self.warmup, self.max_plcc_drop = batch, repeats, warmup, max_plcc_drop
        self.threads = threads

    def row(self, key: str) -> BenchmarkRow:
        v = VARIANTS[key]
        try:
            built = self.ctx.dependency(key)
        except NotRunnableHere as exc:
            return _row(v, Status.NOT_RUNNABLE, str(exc), timing_reason=short_reason(str(exc)))
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes this row's reported reason
            reason = str(exc) if isinstance(exc, RaliEdgeError) else f"{type(exc).__name__}: {exc}"
            self.ctx.failed[key] = reason
            return _row(v, Status.EXPORT_FAILED, reason)
        row = _row(v, Status.OK, artifact=str(built.path), size_mb=_size_mb(built.path))
        row.extra = {"notes": built.notes, "quantization": built.quant}
        if built.runnable:
            self._measure(row, key, built)
        elif built.simulate is not None:
            outputs = {n: _simulate(self.bundle_dir, built.simulate, px) for n, px in self.data.pixels.items()}
            row.status, row.reason = Status.SIMULATED, built.simulate.short
            row.detail = f"{built.simulate.text}; no timing: {built.reason}"
            row.timing_reason = short_reason(built.reason)
            self._accuracy(row, v.label, outputs, drift.SIMULATED)
        else:
            row.status, row.detail = Status.NOT_RUNNABLE, built.reason
            row.reason = row.timing_reason = short_reason(built.reason)
        return row

    def _measure(self, row: BenchmarkRow, key: str, built: Built) -> None:
        from rali_edge.report.timing import measure_latency

        try:
            runner = open_timed_runner(built.path, self.threads)
            ok, why = runner.available()
            if not ok:
                row.status, row.detail = Status.NOT_RUNNABLE, why
                row.reason = row.timing_reason = short_reason(why)
                return
            outputs = {n: runner.run(px) for n, px in self.data.pixels.items()}
        except Exception as exc:  # noqa: BLE001 - an artifact that exports but does not run fails validation
            row.status = Status.VALIDATION_FAILED
            row.detail = f"running it failed: {exc}" if isinstance(exc, RaliEdgeError) else \
                f"running it failed: {type(exc).__name__}: {exc}"
            row.reason, row.timing_reason = short_reason(row.detail), "did not run"
            return
        self._accuracy(row, VARIANTS[key].label, outputs, drift.REFERENCE if built.reference else drift.OK)
        size = next(iter(self.data.pixels.values())).shape[-1]
        rng = np.random.default_rng(0)
        latency = measure_latency(runner.run, lambda b: rng.integers(0, 256, (b, 3, size, size), dtype=np.uint8),
                                  batch=self.batch, warmup=self.warmup, repeats=self.repeats)
        row.ms_per_img, row.img_per_s, row.timing = latency.ms_per_img, latency.img_per_s, latency.to_dict()

    def _accuracy(self, row: BenchmarkRow, label: str, outputs: dict, mode: str) -> None:
        """Drift rows per dataset; mode: drift.OK (ran here), drift.SIMULATED or drift.REFERENCE."""
        rows, problems = [], []
        for name, out in outputs.items():
            if not np.all(np.isfinite(out["score"])):
                problems.append(f"non-finite scores on {name}")
            ref = self.reference[name]
            if mode == drift.REFERENCE:
                rows.append(drift.reference_row(label, name, self.data.gt[name], ref))
            else:
                rows.append(drift.drift_row(label, name, self.data.gt[name], ref, out, status=mode))
            problems += rows[-1].drops_over(self.max_plcc_drop, None)
        row.drift = [r.to_dict() for r in rows]
        row.scores = np.concatenate([np.asarray(outputs[n]["score"], np.float64) for n in self.data.pixels])
        for attr in ("plcc", "srcc", "dplcc", "dsrcc"):
            vals = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
            setattr(row, attr, float(np.mean(vals)) if vals else None)
        if problems and row.status is Status.OK:
            row.status, row.detail = Status.VALIDATION_FAILED, "; ".join(problems)
            row.reason = short_reason(problems[0].split(": ", 1)[-1]) + (" …" if len(problems) > 1 else "")
        elif problems:   # simulated: report the breach in the notes; it does not gate (nothing ran here)
            row.detail += "; " + "; ".join(problems)


def run_benchmark(
    bundle_dir: str | os.PathLike,
    metas: Sequence[str | os.PathLike],
    image_root: str | os.PathLike,
    formats: str | Sequence[str] | None = None,
    out_dir: str | os.PathLike = "benchmark",
    *,
    calib: str | os.PathLike | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    max_plcc_drop: float | None = None,
    batch: int = 8,
    repeats: int = 5,
    warmup: int = 1,
    opset: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Export, validate and time each requested variant; write the reports into out_dir.

    threads: intra-op threads for PyTorch and ONNX Runtime (None: their defaults, all cores).
    """
    keys = parse_formats(formats)
    if max_plcc_drop is not None and max_plcc_drop < 0:
        raise ConfigError(f"--max-plcc-drop must be >= 0, got {max_plcc_drop}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(f"batch and repeats must be >= 1 and warmup >= 0 (got {batch}, {repeats}, {warmup})")
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    with _torch_threads(threads):
        return _run(bundle_dir, keys, metas, image_root, out_dir, calib, calib_size, max_plcc_drop, batch, repeats,
                    warmup, opset, seed, threads, progress)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def open_timed_runner(path: Path, threads: int | None):
    """open_runner, with the ONNX Runtime session limited to `threads` intra-op threads when given."""
    from rali_edge.runtime import open_runner, runner_class
    from rali_edge.runtime.onnxruntime_runner import OnnxRuntimeRunner

    if threads is not None and issubclass(runner_class(path), OnnxRuntimeRunner):
        return open_runner(path, threads=threads)
    return open_runner(path)


def _run(bundle_dir, keys, metas, image_root, out_dir, calib, calib_size, max_plcc_drop, batch, repeats, warmup,
         opset, seed, threads, progress) -> BenchmarkReport:
    from tqdm import tqdm

    from rali_edge.bundle import load_bundle
    from rali_edge.report.environment import collect_environment
    from rali_edge.report.render import write_reports
    from rali_edge.runtime import open_runner

    pre = load_bundle(bundle_dir).config.preprocess
    data = load_eval_data(metas, image_root, pre)
    float_runner = open_runner(bundle_dir)
    reference = {n: float_runner.run(px) for n, px in data.pixels.items()}
    ctx = BuildContext(bundle_dir, out_dir / "artifacts",
                       _calibration_factory(calib, image_root, pre, calib_size, seed, list(metas)), opset=opset)
    bench = _Bench(bundle_dir, data, reference, ctx, batch, repeats, warmup, max_plcc_drop, threads)
    rows = []
    bar = tqdm(keys, desc="benchmark", unit="format", file=sys.stderr, disable=not progress)
    for key in bar:
        bar.set_postfix_str(VARIANTS[key].label)
        rows.append(bench.row(key))
    report = BenchmarkReport(
        rows=rows, bundle=str(bundle_dir), datasets={n: len(px) for n, px in data.pixels.items()},
        float_scores=np.concatenate([reference[n]["score"] for n in data.pixels]).astype(np.float64),
        gt_scores=np.concatenate([data.gt[n] if data.gt[n] is not None else np.full(len(data.pixels[n]), np.nan)
                                  for n in data.pixels]),
        environment=collect_environment(threads=threads or _threads()),
        settings={"formats": keys, "batch": batch, "repeats": repeats, "warmup": warmup, "opset": opset,
                  "calibration": str(calib) if calib is not None else f"first meta file ({metas[0]})",
                  "calibration_size": calib_size, "seed": seed, "threads": threads, "skipped_images": data.skipped,
                  "metas": [str(m) for m in metas], "image_root": str(image_root)},
        max_plcc_drop=max_plcc_drop,
    )
    write_reports(report, out_dir)
    return report


def _threads() -> int:
    import torch

    return torch.get_num_threads()
