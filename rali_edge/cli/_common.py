"""Small helpers shared by the CLI modules: the exit-code contract, error reporting, tables.

Exit codes, the same for every command:
  0  everything asked ran and held;
  1  something ran and failed (a failed export or validation, a budget breach, an unreadable image);
  2  bad usage or options, rejected before any work (typer's own usage errors exit 2 as well).
Rows that cannot run on this host (TensorRT without a GPU, Core ML prediction off macOS) are
"not runnable here": listed, never failures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from rali_edge.errors import ConfigError, InputFileError, NotRunnableHere, RaliEdgeError, UnsupportedOptionError

console = Console(soft_wrap=True)  # long paths and tables stay on one line
err_console = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Errors that mean "the request itself cannot be done": bad options, an input file named on the
# command line that cannot be used at all (meta files are read before any work starts), or a single
# artifact asked to run where its runtime is absent (validate/benchmark turn that into a row instead).
USAGE_ERRORS = (ConfigError, UnsupportedOptionError, InputFileError, NotRunnableHere)

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_for(exc: RaliEdgeError) -> int:
    return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED


def friendly_errors(func: F) -> F:
    """Turn a RaliEdgeError into a red message (no traceback) and its exit code (2 usage, 1 failure)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RaliEdgeError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exit_code_for(exc)) from exc

    return wrapper  # type: ignore[return-value]


def renamed(new_value: Any, old_value: Any, new_name: str, old_name: str, default: Any = None) -> Any:
    """One value from an option and its old, hidden spelling (kept working); both given is an error."""
    if old_value is None or old_value == default:
        return new_value
    if new_value is not None and new_value != default:
        raise ConfigError(f"{old_name} is the old spelling of {new_name}: give only one of them")
    return old_value


def report_failures(failures: list[str], not_runnable: list[str]) -> None:
    """List rows that cannot run here, then the failures; exit 1 when there are failures."""
    for line in not_runnable:
        console.print(f"[yellow]not runnable here:[/] {line}", highlight=False, soft_wrap=True)
    if failures:
        for failure in failures:
            err_console.print(f"[bold red]FAIL[/] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_FAILED)


def print_table(table: Any, min_width: int = 160) -> None:
    """Print a rich table at least `min_width` wide: numbers are never squeezed into '…' when the
    output is a pipe or a narrow terminal (a wide line beats an unreadable one)."""
    Console(width=max(console.width, min_width)).print(table)


# The drift-report options `validate` and `benchmark` share (one definition, one help text).
GATE_OPTION = typer.Option("point", "--gate", help="How a drop meets the budget: point (the measured drop) "
                                                   "or upper (the upper bound of its 95% bootstrap interval).")
SLICE_BY_OPTION = typer.Option(
    None, "--slice-by", help="Meta field(s) to break the drift down by in the reports (repeat or comma "
                             "list; default: every field, plus dataset and gt_quintile).")
