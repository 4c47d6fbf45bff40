"""One benchmark row per variant: build it (`export_bundle`), measure it with the evaluation core,
gate its drift rows, time it where it runs here. `BenchRows` holds one run's shared state.

A failed export, a failed run or a budget breach becomes the row's status and an entry of
`failures`; a format whose runtime is absent here and that has no simulator is "not runnable here".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rali_edge.errors import NotRunnableHere, RaliEdgeError
from rali_edge.evaluation.budget import DriftBudget
from rali_edge.evaluation.device_preprocess import device_drift_rows, device_reference, measure_reference_on
from rali_edge.evaluation.measure import Measurement, measure_artifact
from rali_edge.export.formats import FormatCaps, Variant
from rali_edge.export.job import ExportResult
from rali_edge.report import drift
from rali_edge.report.table import BenchmarkRow, Status, short_reason


def batch_for(c: FormatCaps) -> int | None:
    """Dynamic batch where the format has one; else batch 1, what a phone app runs (the runner chunks)."""
    return None if c.dynamic_batch else 1


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


class BenchRows:
    """One benchmark run's shared state; `row(key)` makes one table row."""

    def __init__(self, bundle_dir: Path, sets, reference: Measurement, artifacts_dir: Path, calibration,
                 budget: DriftBudget, opset: int | None, batch: int, batch_size: int, repeats: int, warmup: int,
                 threads: int | None, device_sets: list):
        self.bundle_dir, self.sets, self.reference, self.artifacts_dir = bundle_dir, sets, reference, artifacts_dir
        self.device_sets = device_sets   # [(DevicePreprocess, its eval sets)]
        self.device_refs = [device_reference(reference, sets, dsets) for _, dsets in device_sets]
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
            self.bundle_dir, c.name, v.precision, batch=batch_for(c), opset=self.opset if c.opsets is not None else None,
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
        for (device, dsets), dref in zip(self.device_sets, self.device_refs, strict=True):
            rows = device_drift_rows(label, measure(dsets), dsets, dref, device)
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
