"""`rali-edge eval`: PLCC/SRCC/KRCC/MAE of a bundle per meta file, and their average."""

from __future__ import annotations

from pathlib import Path

import typer

from rali_edge.cli._common import console, err_console, friendly_errors, print_table


def _table(report):
    from rich.table import Table

    table = Table(title=f"{report.bundle}\n{report.protocol}", title_justify="left")
    for col in ("dataset", "n", "PLCC", "SRCC", "KRCC", "MAE", "failed"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for d in report.datasets:
        m = d.metrics
        table.add_row(d.dataset, str(d.n), *(f"{m[k]:.4f}" for k in ("plcc", "srcc", "krcc", "mae")),
                      str(len(d.failures)))
    a = report.average
    table.add_row("average", "", *(f"{a[k]:.4f}" for k in ("plcc", "srcc", "krcc", "mae")), str(report.n_failed),
                  style="bold")
    return table


@friendly_errors
def evaluate(
    bundle: Path = typer.Argument(..., exists=True, help="Scorer bundle folder, or an exported artifact "
                                                         "(.onnx, .ort, ...) run in its own runtime."),
    meta: list[Path] = typer.Option(..., "--meta", exists=True, help="Meta JSON file (repeat --meta for several)."),
    image_root: Path = typer.Option(..., "--image-root", exists=True,
                                    help="Folder the meta files' image paths are relative to."),
    logistic: bool = typer.Option(False, "--logistic", help="PLCC after a 4-parameter logistic fit "
                                  "(default: plain correlations, the official protocol)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report (with predictions) here."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device for a bundle, e.g. cpu or cuda."),
) -> None:
    """Evaluate a bundle or artifact: PLCC/SRCC/KRCC/MAE per meta file against gt_score_norm.

    Unreadable images are left out of the metrics and listed. Exit status: 0 evaluated; 1 an image
    could not be read or the evaluation failed; 2 bad options, or an artifact whose runtime is absent
    here (Core ML off macOS: `validate` simulates it against its bundle).
    """
    from rali_edge.evaluate import evaluate_artifact, write_report

    report = evaluate_artifact(bundle, meta, image_root, logistic=logistic, batch_size=batch_size,
                             device=device, progress=True)
    print_table(_table(report), min_width=120)
    if json_out is not None:
        write_report(report, json_out)
        console.print(f"report written to {json_out}", highlight=False)
    for d in report.datasets:
        for f in d.failures:
            err_console.print(f"[red]failed ({d.dataset}):[/] {f['path']}: {f['reason']}", highlight=False,
                              soft_wrap=True)
    if report.n_failed:
        err_console.print(f"[red]{report.n_failed} images could not be scored and were left out[/]")
        raise typer.Exit(code=1)
