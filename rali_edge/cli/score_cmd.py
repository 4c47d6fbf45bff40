"""`rali-edge score`: score image collections with a bundle or any exported artifact, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rali_edge.batch.options import EngineName
from rali_edge.cli._common import console, err_console, friendly_errors


class _PrintSink:
    """No --out: one `score<TAB>path` line per scored image on stdout (the summary lists failures)."""

    def __init__(self, out, metadata, resume: bool):
        from rali_edge.batch.rows import ScoredRows
        from rali_edge.errors import UnsupportedOptionError

        if resume:
            raise UnsupportedOptionError("--resume needs --out (a .parquet folder of parts)")
        self.existing = ScoredRows.empty()

    def write(self, rows) -> None:
        for path, score, error in zip(rows.paths, rows.scores, rows.errors):
            if not error:
                console.print(f"{score:.4f}\t{path}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _report(summary, out: Path | None) -> None:
    if out is not None:
        skipped = f" ({summary.skipped} of them already there)" if summary.skipped else ""
        console.print(f"scored {summary.total - summary.errors} images -> {out}{skipped}", highlight=False)
    for path, reason in summary.failures:
        err_console.print(f"[red]failed:[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if summary.errors > len(summary.failures):
        err_console.print(f"... and {summary.errors - len(summary.failures)} more (the error column of {out})",
                          highlight=False)
    if summary.errors:
        err_console.print(f"[red]{summary.errors} of {summary.total} inputs could not be scored[/]")
        raise typer.Exit(code=1)


def _check_gpu_options(device: str, engine: EngineName, gpus_per_actor: float | None) -> None:
    """GPUs asked for are used, and a GPU device on Ray gets one (Ray hides GPUs from other actors)."""
    from rali_edge.errors import UnsupportedOptionError

    if gpus_per_actor and device == "cpu":
        raise UnsupportedOptionError("--gpus-per-actor needs a bundle and --device cuda (artifacts run on CPUs)")
    if device != "cpu" and engine is EngineName.ray and not gpus_per_actor:
        raise UnsupportedOptionError(f"--device {device} on Ray needs --gpus-per-actor (e.g. 1): Ray shows an "
                                     "actor only the GPUs it asked for")


@friendly_errors
def score(
    bundle: Path = typer.Argument(..., exists=True, help="Scorer bundle folder, or an exported artifact "
                                                         "(.onnx, .ort, .tflite, .pte, ...) run in its own runtime."),
    images: list[str] = typer.Argument(..., help="Image files, folders (recursive), list files (.txt, or .csv / "
                                                 ".parquet with a path column) and s3:// / gs:// URIs."),
    out: Optional[Path] = typer.Option(None, "--out", help="FILE.csv, FILE.json, or FOLDER.parquet (part files, "
                                                           "resumable). Rows: path, score, error."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per runner call."),
    device: str = typer.Option("cpu", "--device", help="torch device for a bundle, e.g. cpu or cuda."),
    engine: EngineName = typer.Option(EngineName.local, "--engine", help="local: this process; ray: Ray Data "
                                                                       "actors (needs the ray extra)."),
    resume: bool = typer.Option(False, "--resume", help="Score only the inputs not yet in the --out .parquet folder."),
    decode_threads: Optional[int] = typer.Option(None, "--decode-threads", help="local: threads reading and "
                                                 "decoding ahead (default: cores, <= 8)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="ray: cluster to join (default: "
                                              "RAY_ADDRESS, else a running local one, else start one)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="ray: actors (default: all that fit, 0.5 CPU "
                                         "kept free)."),
    threads_per_actor: Optional[int] = typer.Option(None, "--threads-per-actor", help="ray: CPUs (decode and "
                                                    "runtime threads) per actor (default 1)."),
    gpus_per_actor: Optional[float] = typer.Option(None, "--gpus-per-actor", help="ray: GPUs per actor (bundles "
                                                   "with --device cuda)."),
) -> None:
    """Score images with a bundle or an artifact (scores on the [1, 5] scale), locally or on Ray.

    Every input becomes one row (path, score, error); an unreadable file is a row with its reason.
    Exit status: 0 all scored; 1 an input could not be read or scored; 2 bad options or inputs.
    """
    from rali_edge.batch.api import score_collection
    from rali_edge.batch.options import make_engine
    from rali_edge.batch.writers import writer_class
    from rali_edge.errors import ConfigError
    from rali_edge.runtime import is_bundle

    sink_factory = writer_class(out) if out is not None else _PrintSink
    if not is_bundle(bundle) and device != "cpu":
        raise ConfigError(f"--device {device} applies to bundles (PyTorch); {bundle} runs in its own runtime")
    _check_gpu_options(device, engine, gpus_per_actor)
    runner_engine = make_engine(engine, batch_size, device=device if is_bundle(bundle) else None,
                                decode_threads=decode_threads, address=ray_address, actors=actors,
                                threads_per_actor=threads_per_actor, gpus_per_actor=gpus_per_actor)
    summary = score_collection(bundle, images, runner_engine, sink_factory, out=out, resume=resume)
    _report(summary, out)
