"""`run_benchmark`: export every requested variant of the format table, measure each with the
evaluation core (the same code `validate` uses), time each that runs here, and write
report.json / report.md / report.html.

Every option is checked for every variant before any work (bad options raise
UnsupportedOptionError / ConfigError: exit 2). Per variant: build it with `export_bundle` (the code
`rali-edge export` runs) -> measure (run, or simulate where the runtime is absent) -> drift per
dataset -> timing. A format whose runtime is absent here and that has no simulator (TensorRT
without CUDA) is still built as far as it can be (its ONNX, validated in ONNX Runtime, and the
trtexec script) and its row is "not runnable here", never a failure. A failed export, a failed run
or a budget breach becomes the row's status and an entry of `report.failures` (exit 1); the other
variants go on (rows: report/bench_rows.py). Then the drift of every measured variant is broken down
(report/analysis.py: slices, worst images) and the reports are written (report/render.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rali_edge.errors import ConfigError, UnsupportedOptionError
from rali_edge.evaluation.budget import POINT, DriftBudget
from rali_edge.evaluation.measure import DEFAULT_BATCH_SIZE
from rali_edge.export.formats import REFERENCE_VARIANT, all_variants, check_options
from rali_edge.report.analysis import AnalysisSettings, analyse
from rali_edge.report.bench_rows import BenchRows, batch_for
from rali_edge.report.gallery import DEFAULT_WORST
from rali_edge.report.images import image_table
from rali_edge.report.results import BenchmarkReport
from rali_edge.report.slices import check_slice_by
from rali_edge.report.table import BenchmarkRow

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
            check_options(c.name, v.precision, batch_for(c), opset if c.opsets is not None else None,
                          c.default_input_kind)
            if c.is_quantized(v.precision):
                c.quant_kind_for(v.precision, v.quant_kind)
        except UnsupportedOptionError as exc:
            raise UnsupportedOptionError(f"--formats {key}: {exc}") from exc
        needs_calibration = c.is_quantized(v.precision) and c.quant_kind_for(v.precision, v.quant_kind).calibration
        if needs_calibration and not Path(calibration_source).exists():
            raise ConfigError(f"--formats {key} needs calibration images; {calibration_source} does not exist")


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
    gate: str = POINT,
    slice_by: str | Sequence[str] | None = None,
    worst: int = DEFAULT_WORST,
    progress: bool = True,
) -> BenchmarkReport:
    """Export, validate and time each requested variant; write the reports into out_dir.

    calibration: meta file or image folder for INT8 (default: the first meta file). batch: the batch
    of the img/s column; batch_size: images per runtime call when measuring accuracy (as validate).
    threads: intra-op threads for PyTorch and ONNX Runtime (None: their defaults, all cores).
    device_preprocess: device preprocessings (names or a comma list, see
    rali_edge.evaluation.device_preprocess) whose drift every measured row also reports and is gated on.
    gate: "point" (the measured drop) or "upper" (the upper bound of its 95% interval) against the budget.
    slice_by: meta fields to slice the drift by (a comma list or names; None: every field, see
    rali_edge.report.slices); worst: images per artifact in the report's gallery.
    """
    from rali_edge.evaluation.device_preprocess import parse_device_preprocess

    keys = parse_formats(formats)
    devices = parse_device_preprocess(device_preprocess)
    budget = DriftBudget(max_plcc_drop, max_srcc_drop, gate)
    if not metas:
        raise ConfigError("the benchmark needs at least one meta file (--meta)")
    _check_counts(threads, batch, batch_size, repeats, warmup, calibration_size)
    calibration_source = calibration if calibration is not None else metas[0]
    check_variant_options(keys, opset, calibration_source)
    analysis = AnalysisSettings(slice_by=check_slice_by(slice_by, metas, image_root), worst=worst)
    with _torch_threads(threads):
        return _run(Path(bundle_dir), keys, metas, image_root, Path(out_dir), calibration_source, calibration_size,
                    budget, batch, batch_size, repeats, warmup, opset, seed, threads, devices, analysis, progress)


def _check_counts(threads, batch: int, batch_size: int, repeats: int, warmup: int, calibration_size: int) -> None:
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if batch < 1 or batch_size < 1 or repeats < 1 or warmup < 0 or calibration_size < 1:
        raise ConfigError("batch, batch size, repeats and calibration size must be >= 1 and warmup >= 0 "
                          f"(got {batch}, {batch_size}, {repeats}, {calibration_size}, {warmup})")


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
         analysis: AnalysisSettings, progress) -> BenchmarkReport:
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
    bench = BenchRows(bundle_dir, sets, reference, out_dir / "artifacts", calibration, budget, opset, batch,
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
        budget=budget.to_dict(), failures=bench.failures, images=image_table(sets, metas, image_root),
    )
    report.analysis = analyse(report.float_scores, _measured(keys, rows), report.images, analysis)
    write_reports(report, out_dir)
    return report


def _measured(keys: list[str], rows: list[BenchmarkRow]) -> list[tuple[str, str, np.ndarray]]:
    """(label, status, scores) of every variant that produced scores, the float reference left out."""
    return [(f"{r.format} {r.precision}", r.status.value, r.scores) for k, r in zip(keys, rows, strict=True)
            if k != REFERENCE_VARIANT and r.scores is not None]


def _threads() -> int:
    import torch

    return torch.get_num_threads()
