"""`rali-edge benchmark`: one table across formats and precisions, plus report.json/.md/.html."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, err_console, friendly_errors, print_table


@friendly_errors
def benchmark(
    bundle: Path = typer.Argument(..., help="Scorer bundle folder (the float reference)."),
    meta: list[Path] = typer.Option(..., "--meta", help="Meta JSON file(s) with gt_score_norm; repeat for several."),
    image_root: Path = typer.Option(..., "--image-root", help="Folder the meta files' image paths are relative to."),
    formats: str = typer.Option(
        "all", "--formats",
        help="Comma list of: all, pytorch-fp32, onnx-fp32, onnx-fp16, onnx-int8-cpu, onnx-int8-tensorrt, "
             "ort-fp32, coreml-fp16, coreml-int8w, tensorrt-fp16, tensorrt-int8."),
    calib: Path | None = typer.Option(None, "--calib", help="Calibration meta file or image folder "
                                                            "(default: the first --meta file)."),
    calib_size: int = typer.Option(300, "--calib-size", help="Calibration images for INT8."),
    max_plcc_drop: float | None = typer.Option(None, "--max-plcc-drop",
                                               help="Exit non-zero when a row that ran drops PLCC by more."),
    out: Path = typer.Option(Path("benchmark"), "--out", help="Folder for artifacts and reports."),
    batch: int = typer.Option(8, "--batch", help="Batch size N for the img/s column."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per measurement (median reported)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed warm-up runs before timing."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads for PyTorch and ONNX Runtime "
                                                                "(default: theirs, all cores)."),
) -> None:
    """Export, validate and time every format; print one table and write reports."""
    from rich.table import Table

    from rali_edge.report.benchmark import run_benchmark
    from rali_edge.report.table import COLUMNS, notes, row_cells

    report = run_benchmark(bundle, meta, image_root, formats, out, calib=calib, calib_size=calib_size,
                           max_plcc_drop=max_plcc_drop, batch=batch, repeats=repeats, warmup=warmup, opset=opset,
                           threads=threads)
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
    for kind, path in report.paths.items():
        console.print(f"{kind}: {path}", highlight=False)
    if report.exceeded:
        names = ", ".join(f"{r.format} {r.precision}" for r in report.exceeded)
        err_console.print(f"[bold red]PLCC drop over {max_plcc_drop}:[/] {names}", highlight=False)
        raise typer.Exit(code=1)
