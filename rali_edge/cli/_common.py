"""Small helpers shared by the CLI modules: error reporting and the 'not built yet' stub."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from rali_edge.errors import RaliEdgeError

console = Console(soft_wrap=True)  # long paths and tables stay on one line
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn a RaliEdgeError into a red one-line message and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RaliEdgeError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from exc

    return wrapper  # type: ignore[return-value]


def not_built_yet(command: str, issue: str) -> None:
    """For planned commands: say so and exit non-zero instead of pretending to work."""
    err_console.print(f"[yellow]`rali-edge {command}` is planned but not built yet ({issue}).[/]")
    raise typer.Exit(code=3)


def print_table(table: Any, min_width: int = 160) -> None:
    """Print a rich table at least `min_width` wide: numbers are never squeezed into '…' when the
    output is a pipe or a narrow terminal (a wide line beats an unreadable one)."""
    Console(width=max(console.width, min_width)).print(table)
