"""`run_benchmark`: export every requested variant of the format table, measure each with the
evaluation core (the same code `validate` uses), time each that runs here, and write
report.json / report.md / report.html.

Every option is checked for every variant before any work (bad options raise
UnsupportedOptionError / ConfigError: exit 2). Per variant: build it with `export_bundle` (the code
`rali-edge export` runs) -> measure (run, or simulate where the runtime is absent) -> drift per
dataset -> timing. A format whose runtime is absent here and that has no simulator (TensorRT
without CUDA) is still built as far as it can be (its ONNX, validated in ONNX Runtime, and the
trtexec script) and its row is "not runnable here", never a failure. A failed export, a failed run or a budget breach becomes the row's status and an
entry of `report.failures` (exit 1); the other variants go on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rali_edge.errors import ConfigError, NotRunnableHere, RaliEdgeError, UnsupportedOptionError
from rali_edge.evaluation.budget import DriftBudget
from rali_edge.evaluation.device_preprocess import device_drift_rows, measure_reference_on
from rali_edge.evaluation.measure import DEFAULT_BATCH_SIZE, Measurement, measure_artifact
from rali_edge.export.formats import REFERENCE_VARIANT, FormatCaps, Variant, all_variants, check_options
from rali_edge.export.job import ExportResult
from rali_edge.report import drift
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.table import BenchmarkRow, Status, short_reason

DEFAULT_CALIBRATION_SIZE = 300


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """Variant keys in table order. None/"all": every variant. Unknown names are rejected, never guessed."""
    known = [REFERENCE_VARIANT, *all_variants()]
    if formats is None:
        return known
    names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f).strip() for f in formats]
    names = [n for n in names if n]
    if names == ["all"]:
        return known
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UnsupportedOptionError(f"unknown format(s) {unknown or names}; choose from: all, {', '.join(known)}")
    return [k for k in known if k in names]   # table order, duplicates dropped


def check_variant_options(keys: list[str], opset: int | None, calibration_source) -> None:
    """Reject, before any work, an option that some requested variant cannot take."""
    variants = all_variants()
    for key in keys:
        if key == REFERENCE_VARIANT:
            continue
        c, v = variants[key]
        try:
            check_options(c.name, v.precision, _batch(c), opset if c.opsets is not None else None,
                          c.default_input_kind)
            if c.is_quantized(v.precision):
                c.quant_kind_for(v.precision, v.quant_kind)
        except UnsupportedOptionError as exc:
            raise UnsupportedOptionError(f"--formats {key}: {exc}") from exc
        needs_calibration = c.is_quantized(v.precision) and c.quant_kind_for(v.precision, v.quant_kind).calibration
        if needs_calibration and not Path(calibration_source).exists():
            raise ConfigError(f"--formats {key} needs calibration images; {calibration_source} does not exist")


def _batch(c: FormatCaps) -> int | None:
    """Dynamic batch where the format has one; else batch 1, what a phone app runs (the runner chunks)."""
    return None if c.dynamic_batch else 1


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


class _Bench:
    """One benchmark run's shared state; `row(key)` makes one table row."""

    def __init__(self, bundle_dir: Path, sets, reference: Measurement, artifacts_dir: Path, calibration,
                 budget: DriftBudget, opset: int | None, batch: int, batch_size: int, repeats: int, warmup: int,
                 threads: int | None, device_sets: list):
        self.bundle_dir, self.sets, self.reference, self.artifacts_dir = bundle_dir, sets, reference, artifacts_dir
        self.device_sets = device_sets   # [(DevicePreprocess, its eval sets)]
        self.calibration, self.budget, self.opset = calibration, budget, opset
        self.batch, self.batch_size, self.repeats, self.warmup, self.threads = batch, batch_size, repeats, warmup, threads
        self.failures: list[str] = []

    def reference_row(self) -> BenchmarkRow:
        row = BenchmarkRow("pytorch", "fp32", Status.OK, artifact=str(self.bundle_dir),
                           size_mb=_size_mb(self.bundle_dir))
        self._accuracy(row, "pytorch fp32", self.reference)
        self._device_rows(row, "pytorch fp32", lambda dsets: measure_reference_on(
            self.bundle_dir, dsets, self.batch_size, self.threads))
        self._time(row, self.reference)
        return row

    def row(self, c: FormatCaps, v: Variant) -> BenchmarkRow:
        label = f"{c.label} {v.label}"
        ok, why = c.runnable_here()
        try:
            result = self._build(c, v)
        except NotRunnableHere as exc:
            return self._unmeasured(c, v, Status.NOT_RUNNABLE, str(exc))
        except Exception as exc:  # noqa: BLE001 - backend libraries raise their own types; the row says which
            reason = str(exc) if isinstance(exc, RaliEdgeError) else f"{type(exc).__name__}: {exc}"
            self.failures.append(f"{label}: export failed: {reason}")
            return self._unmeasured(c, v, Status.EXPORT_FAILED, reason)
        path = Path(result.path)
        row = BenchmarkRow(c.label, v.label, Status.OK, artifact=str(path), size_mb=_size_mb(path))
        if path.suffix != c.suffix:   # e.g. TensorRT here: the validated ONNX + trtexec script, no engine
            row.status, row.detail = Status.NOT_RUNNABLE, f"{why}; wrote {path.name} and " + \
                ", ".join(p.name for p in result.extra_files) + " to build and check on the target"
            row.reason = row.timing_reason = short_reason(why)
            return row
        m = measure_artifact(path, self.bundle_dir, self.sets, self.batch_size, self.threads)
        if m.status == drift.FAILED:
            row.status, row.detail = Status.VALIDATION_FAILED, f"running it failed: {m.reason}"
            row.reason, row.timing_reason = short_reason(row.detail), "did not run"
            self.failures.append(f"{label}: {row.detail}")
        elif m.status == drift.NOT_RUNNABLE:
            row.status, row.detail = Status.NOT_RUNNABLE, m.reason
            row.reason = row.timing_reason = short_reason(m.reason)
        else:
            if m.status == drift.SIMULATED:
                row.status, row.reason, row.detail = Status.SIMULATED, "PyTorch simulation", m.reason
                row.timing_reason = short_reason(why)
            self._accuracy(row, label, m)
            self._device_rows(row, label, lambda dsets: measure_artifact(
                path, self.bundle_dir, dsets, self.batch_size, self.threads))
            if m.status == drift.OK:
                self._time(row, m)
        return row

    def _unmeasured(self, c: FormatCaps, v: Variant, status: Status, message: str) -> BenchmarkRow:
        reason = short_reason(message)
        return BenchmarkRow(c.label, v.label, status, reason=reason, detail=message, timing_reason=reason)

    def _build(self, c: FormatCaps, v: Variant) -> ExportResult:
        from rali_edge.export.api import export_bundle

        kind = c.quant_kind_for(v.precision, v.quant_kind) if c.is_quantized(v.precision) else None
        result = export_bundle(
            self.bundle_dir, c.name, v.precision, batch=_batch(c), opset=self.opset if c.opsets is not None else None,
            out_dir=self.artifacts_dir, name=f"model-{v.key}",
            calibration=self.calibration() if kind is not None and kind.calibration else None,
            quant_kind=kind.name if kind is not None else None)
        return result

    def _accuracy(self, row: BenchmarkRow, label: str, m: Measurement) -> None:
        from rali_edge.evaluation.measure import drift_rows

        rows = drift_rows(m, self.sets, self.reference, label)
        row.drift = [r.to_dict() for r in rows]
        row.scores = np.concatenate([m.scores(s.dataset) for s in self.sets])
        for attr in ("plcc", "srcc", "dplcc", "dsrcc"):
            vals = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
            setattr(row, attr, float(np.mean(vals)) if vals else None)
        self._gate(row, rows)

    def _device_rows(self, row: BenchmarkRow, label: str, measure) -> None:
        """Drift on each device preprocessing's pixels (against float on the training pixels), gated alike."""
        for device, dsets in self.device_sets:
            rows = device_drift_rows(label, measure(dsets), dsets, self.sets, self.reference, device)
            row.drift += [r.to_dict() for r in rows]
            self._gate(row, rows)

    def _gate(self, row: BenchmarkRow, rows) -> None:
        problems = self.budget.failures(rows)
        if problems:
            self.failures += problems
            simulated = " (simulated)" if row.status is Status.SIMULATED else ""
            row.status = Status.VALIDATION_FAILED
            row.detail = "; ".join(problems) + simulated + (f"; {row.detail}" if row.detail else "")
            row.reason = short_reason(problems[0].split(": ", 1)[-1]) + (" …" if len(problems) > 1 else "")

    def _time(self, row: BenchmarkRow, m: Measurement) -> None:
        from rali_edge.report.timing import measure_latency

        size = self.sets[0].pixels.shape[-1]
        rng = np.random.default_rng(0)
        latency = measure_latency(m.runner.run, lambda b: rng.integers(0, 256, (b, 3, size, size), dtype=np.uint8),
                                  batch=self.batch, warmup=self.warmup, repeats=self.repeats)
        row.ms_per_img, row.img_per_s, row.timing = latency.ms_per_img, latency.img_per_s, latency.to_dict()


def run_benchmark(
    bundle_dir: str | os.PathLike,
    metas: Sequence[str | os.PathLike],
    image_root: str | os.PathLike,
    formats: str | Sequence[str] | None = None,
    out_dir: str | os.PathLike = "benchmark",
    *,
    calibration: str | os.PathLike | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    max_plcc_drop: float | None = None,
    max_srcc_drop: float | None = None,
    batch: int = 8,
    batch_size: int = DEFAULT_BATCH_SIZE,
    repeats: int = 5,
    warmup: int = 1,
    opset: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    device_preprocess: str | Sequence[str] | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Export, validate and time each requested variant; write the reports into out_dir.

    calibration: meta file or image folder for INT8 (default: the first meta file). batch: the batch
    of the img/s column; batch_size: images per runtime call when measuring accuracy (as validate).
    threads: intra-op threads for PyTorch and ONNX Runtime (None: their defaults, all cores).
    device_preprocess: device preprocessings (names or a comma list, see
    rali_edge.evaluation.device_preprocess) whose drift every measured row also reports and is gated on.
    """
    from rali_edge.evaluation.device_preprocess import parse_device_preprocess

    keys = parse_formats(formats)
    devices = parse_device_preprocess(device_preprocess)
    budget = DriftBudget(max_plcc_drop, max_srcc_drop)
    if not metas:
        raise ConfigError("the benchmark needs at least one meta file (--meta)")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if batch < 1 or batch_size < 1 or repeats < 1 or warmup < 0 or calibration_size < 1:
        raise ConfigError("batch, batch size, repeats and calibration size must be >= 1 and warmup >= 0 "
                          f"(got {batch}, {batch_size}, {repeats}, {calibration_size}, {warmup})")
    calibration_source = calibration if calibration is not None else metas[0]
    check_variant_options(keys, opset, calibration_source)
    with _torch_threads(threads):
        return _run(Path(bundle_dir), keys, metas, image_root, Path(out_dir), calibration_source, calibration_size,
                    budget, batch, batch_size, repeats, warmup, opset, seed, threads, devices, progress)


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


def _calibration_factory(source, image_root, preprocess, size: int, seed: int):
    """Built on first use (only INT8 variants need it)."""
    cache: dict[str, object] = {}

    def get():
        if "set" not in cache:
            from rali_edge.calibration import build_calibration_set

            cache["set"] = build_calibration_set(source, preprocess, size=size, seed=seed, image_root=image_root)
        return cache["set"]

    return get


def _run(bundle_dir: Path, keys, metas, image_root, out_dir: Path, calibration_source, calibration_size,
         budget: DriftBudget, batch, batch_size, repeats, warmup, opset, seed, threads, devices,
         progress) -> BenchmarkReport:
    from tqdm import tqdm

    from rali_edge.bundle import load_bundle
    from rali_edge.evaluation.device_preprocess import load_device_sets
    from rali_edge.evaluation.evalset import load_eval_sets, unreadable
    from rali_edge.evaluation.measure import measure_reference
    from rali_edge.report.environment import collect_environment
    from rali_edge.report.render import write_reports

    pre = load_bundle(bundle_dir).config.preprocess
    sets = load_eval_sets(metas, image_root, pre)
    reference = measure_reference(bundle_dir, sets, batch_size, threads)
    calibration = _calibration_factory(calibration_source, image_root, pre, calibration_size, seed)
    device_sets = [(d, load_device_sets(sets, metas, image_root, pre, d)) for d in devices]
    bench = _Bench(bundle_dir, sets, reference, out_dir / "artifacts", calibration, budget, opset, batch,
                   batch_size, repeats, warmup, threads, device_sets)
    bench.failures += unreadable(sets)
    variants = all_variants()
    rows = []
    bar = tqdm(keys, desc="benchmark", unit="format", file=sys.stderr, disable=not progress)
    for key in bar:
        bar.set_postfix_str(key)
        rows.append(bench.reference_row() if key == REFERENCE_VARIANT else bench.row(*variants[key]))
    report = BenchmarkReport(
        rows=rows, bundle=str(bundle_dir), datasets={s.dataset: len(s) for s in sets},
        float_scores=np.concatenate([reference.scores(s.dataset) for s in sets]),
        gt_scores=np.concatenate([s.gt if s.gt is not None else np.full(len(s), np.nan) for s in sets]),
        environment=collect_environment(threads=threads or _threads()),
        settings={"formats": keys, "batch": batch, "batch_size": batch_size, "repeats": repeats, "warmup": warmup,
                  "opset": opset, "calibration": str(calibration_source), "calibration_size": calibration_size,
                  "seed": seed, "threads": threads, "device_preprocess": [d.to_dict() for d in devices],
                  "skipped_images": [{"dataset": s.dataset, **b} for s in sets for b in s.bad_images],
                  "metas": [str(m) for m in metas], "image_root": str(image_root)},
        budget=budget.to_dict(), failures=bench.failures,
    )
    write_reports(report, out_dir)
    return report


def _threads() -> int:
    import torch

    return torch.get_num_threads()
