"""The `rali-edge` command line. Each command group lives in its own thin module."""

from __future__ import annotations

import typer

from rali_edge import __version__
from rali_edge.cli import (
    benchmark_cmd,
    data_cmd,
    demo_cmd,
    eval_cmd,
    export_cmd,
    official_cmd,
    quantize_cmd,
    score_cmd,
    teacher_cmd,
    train_cmd,
    validate_cmd,
)

app = typer.Typer(
    name="rali-edge",
    help="Train RALI image-quality scorers end to end and ship them to edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rali-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Train RALI image-quality scorers end to end and ship them to edge devices."""


app.command("demo")(demo_cmd.demo)
app.add_typer(data_cmd.app, name="data")
app.add_typer(teacher_cmd.app, name="teacher")
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.evaluate)
app.command("score")(score_cmd.score)
app.command("import-official")(official_cmd.import_official)
app.command("export")(export_cmd.export)
app.command("quantize")(quantize_cmd.quantize)
app.command("validate")(validate_cmd.validate)
app.command("benchmark")(benchmark_cmd.benchmark)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
