"""The one output sink.

People get Rich tables and streamed text on stdout; scripts (`--json`) get exactly one JSON document on
stdout (JSON Lines for `generate`), nothing else. Progress, hints and status lines always go to stderr,
in both modes, so `kivi ... --json | jq` stays clean. Consoles are created per call, not at import, so
that redirected streams (pipes, test runners) are honoured.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table


def stdout_console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Output:
    """`json=True`: stdout carries only JSON. Every command takes one of these and writes through it."""

    json: bool = False
    quiet: bool = False

    # --- stdout -------------------------------------------------------------------------------------
    def document(self, obj: dict) -> None:
        """The single JSON document of a `--json` run."""
        sys.stdout.write(json.dumps(_jsonable(obj), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def record(self, obj: dict) -> None:
        """One JSON Lines record (`generate --json`)."""
        sys.stdout.write(json.dumps(_jsonable(obj), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              caption: str | None = None) -> None:
        if self.json:
            return
        table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        stdout_console().print(table)

    def text(self, text: str, style: str | None = None) -> None:
        """Plain text for people (replies, completions); ignored in --json mode."""
        if not self.json:
            stdout_console().print(text, style=style, markup=False, highlight=False)

    def stream(self, piece: str) -> None:
        """Streamed reply text, written as it comes."""
        if not self.json:
            sys.stdout.write(piece)
            sys.stdout.flush()

    # --- stderr -------------------------------------------------------------------------------------
    def hint(self, message: str) -> None:
        if not self.quiet:
            stderr_console().print(message, style="dim", markup=False, highlight=False)

    def status(self, message: str) -> None:
        """A status line for people (after a chat reply); stderr, so stdout keeps only content."""
        if not self.quiet:
            stderr_console().print(message, style="cyan", markup=False, highlight=False)

    def warn(self, message: str) -> None:
        stderr_console().print(f"[yellow]Warning:[/] {message}", markup=True, highlight=False)

    def progress(self, description: str):
        """A spinner on stderr while a slow step runs (only when stderr is a terminal)."""
        return stderr_console().status(description) if sys.stderr.isatty() and not self.quiet else _Null()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *args, **kwargs):
        pass


# --- number formatting for people (JSON always gets raw numbers) ----------------------------------------
def fmt_bytes(n: float | int | None) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def fmt_num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def fmt_seconds(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"
