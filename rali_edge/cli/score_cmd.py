"""`rali-edge score`: score image files and folders with a bundle."""

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


def _write_csv(out: Path, rows, failures, bundle) -> None:
    from rali_edge._atomic import atomic_write_text

    atomic_write_text(out, _csv_text(rows))


def _write_json(out: Path, rows, failures, bundle) -> None:
    from rali_edge._atomic import atomic_write_json

    atomic_write_json(out, {
        "bundle": str(bundle.path), "bundle_checksum": bundle.checksum,
        "scores": [{"path": p, "score": s} for p, s in rows],
        "failures": [{"path": f.path, "reason": f.reason} for f in failures],
    })


_WRITERS = {".csv": _write_csv, ".json": _write_json}


@friendly_errors
def score(
    bundle: Path = typer.Argument(..., exists=True, help="Scorer bundle folder."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Path | None = typer.Option(None, "--out", help="Write scores to FILE.csv or FILE.json."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Score image files and folders with a bundle (scores on the [1, 5] scale).

    Unreadable files are listed with their reason and the rest are still scored. Exit status: 0 all
    scored; 1 an input could not be read or scored; 2 bad options.
    """
    from rali_edge.errors import ConfigError
    from rali_edge.model.scorer import load_scorer

    if out is not None and out.suffix.lower() not in _WRITERS:
        raise ConfigError(f"--out {out}: unsupported extension {out.suffix!r}; use one of {sorted(_WRITERS)}")
    paths = _expand(images)
    scorer = load_scorer(bundle, device=device)
    result = scorer.score_files(paths, batch_size=batch_size, progress=True)
    rows = [(p, float(s)) for p, s in zip(result.paths, result.scores)]
    if out is None:
        for p, s in rows:
            console.print(f"{s:.4f}\t{p}", highlight=False, soft_wrap=True)
    else:
        _WRITERS[out.suffix.lower()](out, rows, result.failures, scorer.bundle)
        console.print(f"scored {len(rows)} images -> {out}", highlight=False)
    for f in result.failures:
        err_console.print(f"[red]failed:[/] {f.path}: {f.reason}", highlight=False, soft_wrap=True)
    if result.failures:
        err_console.print(f"[red]{len(result.failures)} of {len(paths)} inputs could not be scored[/]")
        raise typer.Exit(code=1)
