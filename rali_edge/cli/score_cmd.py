"""`rali-edge score`: score image files and folders with a bundle or any exported artifact."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from rali_edge.cli._common import console, err_console, friendly_errors


def _expand(inputs: list[Path]) -> list[Path]:
    """Folders become their images (recursive, sorted); files stay as given, even odd ones."""
    from rali_edge.data.meta import read_image_folder

    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths.extend(r.path for r in read_image_folder(item))
        else:
            paths.append(item)
    return paths


def _csv_text(rows: list[tuple[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "score"])
    writer.writerows((p, f"{s:.6f}") for p, s in rows)
    return buf.getvalue()


def _write_csv(out: Path, rows, failures, runner) -> None:
    from rali_edge._atomic import atomic_write_text

    atomic_write_text(out, _csv_text(rows))


def _write_json(out: Path, rows, failures, runner) -> None:
    from rali_edge._atomic import atomic_write_json

    atomic_write_json(out, {
        "artifact": str(runner.path), "format": runner.metadata.format, "precision": runner.metadata.precision,
        "bundle_checksum": runner.metadata.bundle_checksum,
        "scores": [{"path": p, "score": s} for p, s in rows],
        "failures": [{"path": f.path, "reason": f.reason} for f in failures],
    })


_WRITERS = {".csv": _write_csv, ".json": _write_json}


@friendly_errors
def score(
    bundle: Path = typer.Argument(..., exists=True, help="Scorer bundle folder, or an exported artifact "
                                                         "(.onnx, .ort, .tflite, .pte, ...) run in its own runtime."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Path | None = typer.Option(None, "--out", help="Write scores to FILE.csv or FILE.json."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device for a bundle, e.g. cpu or cuda."),
) -> None:
    """Score image files and folders with a bundle or an artifact (scores on the [1, 5] scale).

    Unreadable files are listed with their reason and the rest are still scored. Exit status: 0 all
    scored; 1 an input could not be read or scored; 2 bad options.
    """
    from rali_edge.errors import ConfigError, NotRunnableHere
    from rali_edge.evaluation.score import score_files
    from rali_edge.runtime import is_bundle, open_runner, runner_class

    if out is not None and out.suffix.lower() not in _WRITERS:
        raise ConfigError(f"--out {out}: unsupported extension {out.suffix!r}; use one of {sorted(_WRITERS)}")
    if not is_bundle(bundle) and device != "cpu":
        raise ConfigError(f"--device {device} applies to bundles (PyTorch); {bundle} runs in its own runtime")
    ok, why = runner_class(bundle).available()
    if not ok:   # before any image is read
        raise NotRunnableHere(f"{bundle}: cannot run here: {why}")
    paths = _expand(images)
    runner = open_runner(bundle, device=device) if is_bundle(bundle) else open_runner(bundle)
    result = score_files(runner, paths, batch_size=batch_size, progress=True)
    rows = [(p, float(s)) for p, s in zip(result.paths, result.scores)]
    if out is None:
        for p, s in rows:
            console.print(f"{s:.4f}\t{p}", highlight=False, soft_wrap=True)
    else:
        _WRITERS[out.suffix.lower()](out, rows, result.failures, runner)
        console.print(f"scored {len(rows)} images -> {out}", highlight=False)
    for f in result.failures:
        err_console.print(f"[red]failed:[/] {f.path}: {f.reason}", highlight=False, soft_wrap=True)
    if result.failures:
        err_console.print(f"[red]{len(result.failures)} of {len(paths)} inputs could not be scored[/]")
        raise typer.Exit(code=1)
