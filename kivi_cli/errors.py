"""Errors, mapped once at the CLI boundary.

Commands and helpers raise ordinary exceptions (library `ValueError`s, `OSError` from loading,
`torch.OutOfMemoryError`) or the two below; `boundary()` wraps every command when it is registered and
turns whatever escapes into one line on stderr — what was wrong, naming the value, and the fix — and an
exit code: 0 ok, 1 runtime failure, 2 bad usage. `KIVI_DEBUG=1` adds the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Callable

import typer

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A flag, argument or input the user can fix. Exit code 2."""


class RuntimeFailure(Exception):
    """The command was well-formed but could not finish (missing optional dependency, no memory...). Exit 1."""


def debug_enabled() -> bool:
    return os.environ.get("KIVI_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def describe(exc: BaseException) -> tuple[str, int]:
    """Map an exception to (message, exit code). The one place that knows library exceptions."""
    import torch

    if isinstance(exc, UsageError):
        return one_line(exc), EXIT_USAGE
    if isinstance(exc, RuntimeFailure):
        return one_line(exc), EXIT_RUNTIME
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return ("out of memory: " + one_line(exc).split(". ")[0]
                + ". Use a smaller --batch/--ctx, --bits 2, or `kivi profile --find-max-batch`."), EXIT_RUNTIME
    if isinstance(exc, ModuleNotFoundError):
        return f"missing Python package {exc.name!r}: pip install {exc.name}.", EXIT_RUNTIME
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or one_line(exc)}.", EXIT_USAGE
    if isinstance(exc, (ValueError, TypeError, NotImplementedError)):
        return f"{type(exc).__name__}: {one_line(exc)}", EXIT_RUNTIME
    return f"{type(exc).__name__}: {one_line(exc)} (set KIVI_DEBUG=1 for the traceback)", EXIT_RUNTIME


def report(message: str) -> None:
    from kivi_cli.output import stderr_console

    stderr_console().print(f"[bold red]Error:[/] {message}", markup=True, highlight=False, soft_wrap=True)


def boundary(command: Callable) -> Callable:
    """Wrap a command so that any exception becomes one message and an exit code (see module doc)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                traceback.print_exc(file=sys.stderr)
            report("interrupted.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 — this is the boundary
            message, code = describe(exc)
            if debug_enabled():
                traceback.print_exc(file=sys.stderr)
            report(message)
            raise typer.Exit(code) from None

    return wrapper
