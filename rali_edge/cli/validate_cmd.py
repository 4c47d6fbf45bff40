"""`rali-edge validate`: drift of artifacts vs the float bundle, per meta file; a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.batch.options import EngineName
from rali_edge.cli._common import GATE_OPTION, SLICE_BY_OPTION, console, friendly_errors, print_table, report_failures


def _ci(interval) -> str:
    return "-" if interval is None else f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


@friendly_errors
def validate(
    artifacts: list[Path] = typer.Argument(..., exists=True,
                                           help="Artifacts to check (.onnx, .ort, .mlpackage, .engine)."),
    bundle: Path = typer.Option(..., "--bundle", exists=True, help="The float bundle folder (the reference)."),
    meta: list[Path] = typer.Option(..., "--meta", exists=True, help="Meta JSON file(s) with image and gt_score_norm."),
    image_root: Path = typer.Option(..., "--image-root", exists=True, help="Folder the meta image paths are relative to."),
    max_plcc_drop: Optional[float] = typer.Option(None, "--max-plcc-drop", help="Fail when PLCC drops more (>= 0)."),
    max_srcc_drop: Optional[float] = typer.Option(None, "--max-srcc-drop", help="Fail when SRCC drops more (>= 0)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.json, report.md and report.html "
                                                           "(default: no file)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per runtime call."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads for ONNX Runtime."),
    device_preprocess: Optional[str] = typer.Option(
        None, "--device-preprocess",
        help="Also measure the float model and every artifact on the images prepared as an app might, "
             "comma list: bilinear (PIL, antialiased), bilinear-noaa (no antialiasing: Android, GPU), "
             "nearest, jpeg<Q> (re-encoded at JPEG quality Q, e.g. jpeg90). Rows <dataset>@<name>, "
             "compared with the float model on the training preprocessing, same budget."),
    gate: str = GATE_OPTION,
    slice_by: Optional[list[str]] = SLICE_BY_OPTION,
    engine: EngineName = typer.Option(EngineName.local, "--engine", help="local: every image in this process; "
                                      "ray: scored on Ray Data actors, for sets too big for one (docs/scale_out.md)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="ray: the cluster to join."),
    actors: Optional[int] = typer.Option(None, "--actors", help="ray: actors (default: all that fit)."),
    threads_per_actor: Optional[int] = typer.Option(None, "--threads-per-actor", help="ray: CPUs per actor."),
) -> None:
    """Validate artifacts against the float model: PLCC/SRCC drift, CI gate.

    Exit status: 0 every artifact ran (or is not runnable here) within budget; 1 an artifact failed to
    run, a drop exceeded the budget (on the training or a device preprocessing) or an image could not be
    read; 2 bad options (an unknown --device-preprocess name included).
    """
    from rali_edge.evaluation.device_preprocess import parse_device_preprocess
    from rali_edge.report.render import gate_text
    from rali_edge.batch.options import validator_for

    validate_artifacts = validator_for(engine, address=ray_address, actors=actors,
                                       threads_per_actor=threads_per_actor)

    report = validate_artifacts(artifacts, bundle, meta, image_root, max_plcc_drop=max_plcc_drop,
                                max_srcc_drop=max_srcc_drop, out_dir=out, batch_size=batch_size, threads=threads,
                                device_preprocess=device_preprocess, gate=gate, slice_by=slice_by)
    print_table(_drift_table(report.rows))
    console.print(f"gate: {gate_text(report.budget)}", highlight=False)
    for d in parse_device_preprocess(device_preprocess):
        console.print(f"@{d.name}: {d.description}; vs the float model on the training preprocessing",
                      highlight=False)
    if report.report_path is not None:
        console.print(f"report: {report.report_path}")
    report_failures(report.failures, [f"{r.artifact} on {r.dataset}: {r.reason}" for r in report.not_runnable])
    console.print("[green]within budget[/]")


def _drift_table(rows):
    """One line per (artifact, dataset): drift against float, its interval, ranking, status."""
    from rich.table import Table

    table = Table(title="drift vs float")
    for col in ("artifact", "dataset", "n", "PLCC", "dPLCC", "dPLCC 95% CI", "SRCC", "dSRCC", "MAE", "max|d|",
                "tau vs float", "emb cos", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.artifact, r.dataset, str(r.n), _fmt(r.plcc), _fmt(r.dplcc, True), _ci(r.dplcc_ci),
                      _fmt(r.srcc), _fmt(r.dsrcc, True), _fmt(r.score_mae), _fmt(r.max_abs_change),
                      _fmt(r.ranking["kendall_tau"] if r.ranking else None), _fmt(r.embedding_cosine),
                      r.status + (f" ({r.reason})" if r.reason else ""))
    return table
