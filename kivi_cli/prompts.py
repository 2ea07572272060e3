"""Reading prompts for `kivi generate`: arguments, a file (plain lines or JSONL), or stdin.

A bad line never stops the others: it becomes a `PromptError` carrying its line number, reported in
order with the results.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from kivi_cli.errors import UsageError


@dataclass(frozen=True)
class Prompt:
    index: int  # position among all inputs (good and bad), 0-based
    text: str
    line: Optional[int] = None  # 1-based line in the file/stdin; None for arguments


@dataclass(frozen=True)
class PromptError:
    index: int
    line: int
    error: str


Item = Union[Prompt, PromptError]


def parse_lines(lines: Iterable[str]) -> list[Item]:
    """One prompt per non-empty line; a line starting with `{` is JSON and must have a string `prompt`."""
    items: list[Item] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        index = len(items)
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                items.append(PromptError(index, number, f"invalid JSON ({e.msg} at column {e.colno})"))
                continue
            prompt = obj.get("prompt") if isinstance(obj, dict) else None
            if not isinstance(prompt, str) or not prompt:
                items.append(PromptError(index, number, 'JSON line has no non-empty string field "prompt"'))
                continue
            items.append(Prompt(index, prompt, number))
        else:
            items.append(Prompt(index, line, number))
    return items


def collect(args: list[str], file: Optional[Path]) -> list[Item]:
    if args and file is not None:
        raise UsageError("got prompts as arguments and --file: pass one of them.")
    if args:
        return [Prompt(i, text) for i, text in enumerate(args)]
    if file is not None and str(file) != "-":
        if not file.is_file():
            raise UsageError(f"--file {str(file)!r} does not exist or is not a file.")
        with file.open(encoding="utf-8", errors="replace") as fh:
            items = parse_lines(fh)
    elif file is not None or not sys.stdin.isatty():
        items = parse_lines(sys.stdin)
    else:
        raise UsageError("no prompt: pass it as an argument, with --file PATH, or on stdin (e.g. echo hi | kivi generate).")
    if not items:
        raise UsageError("no prompt: the input has no non-empty lines.")
    return items
