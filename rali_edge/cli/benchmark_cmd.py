"""`rali-edge benchmark`: one table across formats and precisions, plus report.json/.md/.html."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.cli._common import (
    GATE_OPTION,
    SLICE_BY_OPTION,
    console,
    friendly_errors,
    print_table,
    renamed,
    report_failures,
)
from rali_edge.export.formats import REFERENCE_VARIANT, all_variants

_FORMATS_HELP = "Comma list of: all, " + ", ".join([REFERENCE_VARIANT, *all_variants()]) + "."


@friendly_errors
def benchmark(
    bundle: Path = typer.Argument(..., exists=True, help="Scorer bundle folder (the float reference)."),
    meta: list[Path] = typer.Option(..., "--meta", exists=True, help="Meta JSON file(s) with gt_score_norm; repeat for several."),
    image_root: Path = typer.Option(..., "--image-root", exists=True, help="Folder the meta files' image paths are relative to."),
    formats: str = typer.Option("all", "--formats", help=_FORMATS_HELP),
    calibration: Optional[Path] = typer.Option(None, "--calibration", exists=True,
                                               help="Calibration meta file or image folder (default: the first --meta file)."),
    calibration_size: int = typer.Option(300, "--calibration-size", min=1, help="Calibration images for INT8."),
    max_plcc_drop: Optional[float] = typer.Option(None, "--max-plcc-drop",
                                                  help="Exit 1 when a measured or simulated row drops PLCC by more."),
    max_srcc_drop: Optional[float] = typer.Option(None, "--max-srcc-drop", help="Exit 1 when SRCC drops by more."),
    out: Path = typer.Option(Path("benchmark"), "--out", help="Folder for artifacts and reports."),
    batch: int = typer.Option(8, "--batch", help="Batch size N for the img/s column."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per runtime call when measuring accuracy."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per measurement (median reported)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed warm-up runs before timing."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads for PyTorch and ONNX Runtime "
                                                                   "(default: theirs, all cores)."),
    device_preprocess: Optional[str] = typer.Option(
        None, "--device-preprocess", help="Also measure drift on the test images prepared as a device would: "
                                          "comma list of bilinear, bilinear-noaa, nearest, jpeg<Q> (gated alike)."),
    gate: str = GATE_OPTION,
    slice_by: Optional[list[str]] = SLICE_BY_OPTION,
    calib: Optional[Path] = typer.Option(None, "--calib", hidden=True, exists=True),
    calib_size: Optional[int] = typer.Option(None, "--calib-size", hidden=True, min=1),
) -> None:
    """Export, validate and time every format; print one table and write reports.

    Exit status: 0 every row ran (or is not runnable here) within budget; 1 an export, a run or the
    budget failed (the rows are named); 2 bad options, rejected before any export.
    """
    from rali_edge.report.benchmark import run_benchmark

    calibration = renamed(calibration, calib, "--calibration", "--calib")
    calibration_size = renamed(calibration_size, calib_size, "--calibration-size", "--calib-size", default=300)
    report = run_benchmark(bundle, meta, image_root, formats, out, calibration=calibration,
                           calibration_size=calibration_size, max_plcc_drop=max_plcc_drop,
                           max_srcc_drop=max_srcc_drop, batch=batch, batch_size=batch_size, repeats=repeats,
                           warmup=warmup, opset=opset, threads=threads, device_preprocess=device_preprocess,
                           gate=gate, slice_by=slice_by)
    _print_report(report, bundle, batch, repeats, warmup)
    report_failures(report.failures, [f"{r.format} {r.precision}: {r.detail}" for r in report.not_runnable])
    console.print("[green]every row within budget[/]" if any(report.budget.values()) else "[green]all rows ran[/]")


def _print_report(report, bundle: Path, batch: int, repeats: int, warmup: int) -> None:
    """The table, its notes, the machine and timing, the gate and where the reports went."""
    from rich.table import Table

    from rali_edge.report.render import gate_text
    from rali_edge.report.table import COLUMNS, notes, row_cells

    table = Table(title=f"rali-edge benchmark: {bundle}", show_lines=False)
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if i < 3 else "right", overflow="fold")
    for row in report.rows:
        table.add_row(*row_cells(row))
    # Ten columns, some holding reasons: never squeeze the table below 160 characters, even in a pipe.
    print_table(table)
    for note in notes(report.rows):
        console.print(f"- {note}", highlight=False, soft_wrap=True)
    env = report.environment
    console.print(f"{env['cpu_model']}, {env['threads']} threads; ms/img at batch 1, img/s at batch {batch}; "
                  f"median of {repeats} after {warmup} warm-up", highlight=False)
    console.print(f"gate: {gate_text(report.budget)}", highlight=False)
    for kind, path in report.paths.items():
        console.print(f"{kind}: {path}", highlight=False)
