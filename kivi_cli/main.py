"""The `kivi` command: the Typer app and its commands.

Every command is registered through `errors.boundary`, the one place where exceptions become a
one-line message and an exit code (0 ok, 1 runtime failure, 2 bad usage; KIVI_DEBUG=1 for tracebacks).
Commands import torch/transformers lazily, so `kivi --help` and `--version` stay fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kivi_cli.cmd_chat import chat_cmd
from kivi_cli.cmd_generate import generate_cmd
from kivi_cli.cmd_profile import profile_cmd
from kivi_cli.errors import boundary

app = typer.Typer(
    name="kivi",
    help="Run Hugging Face causal LMs with a KIVI 2/4-bit KV cache (keys per channel, values per token), "
    "and measure its memory and speed against full precision.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs to the terminal width
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("kivi")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        typer.echo(f"kivi {v}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", "-V", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """KIVI: tuning-free asymmetric 2-bit KV cache quantization (Liu et al., ICML 2024)."""


app.command("chat")(boundary(chat_cmd))
app.command("generate")(boundary(generate_cmd))
app.command("profile")(boundary(profile_cmd))

try:  # `kivi eval` is the eval module's; until that file exists the CLI works without it
    from kivi_cli.cmd_eval import eval_cmd
except ModuleNotFoundError as e:
    if e.name != "kivi_cli.cmd_eval":
        raise
    eval_cmd = None
if eval_cmd is not None:
    app.command("eval")(boundary(eval_cmd))


if __name__ == "__main__":
    app()
