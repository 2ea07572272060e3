"""`kivi generate`: complete prompts from arguments, a file or stdin, batched with left padding."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from kivi_cli import options as o
from kivi_cli.errors import EXIT_RUNTIME, UsageError
from kivi_cli.output import Output

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def split_model(args: list[str], model: Optional[str], arch) -> tuple[Optional[str], list[str]]:
    """`kivi generate [MODEL] [PROMPT...]`: the first argument is the model when it is an existing folder
    or looks like a hub id (`owner/name`) and neither --model nor --arch was given; else all are prompts."""
    if model is None and arch is None and args and (Path(args[0]).expanduser().is_dir() or HUB_ID.match(args[0])):
        return args[0], args[1:]
    return model, args


def generate_cmd(
    args: Annotated[Optional[list[str]], typer.Argument(
        help="Prompts. A first argument that is a folder or a hub id (owner/name) is the model.",
        show_default=False, metavar="[MODEL] PROMPT")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local folder (instead of the first argument).",
                                                 rich_help_panel=o.MODEL_PANEL, show_default=False)] = None,
    file: o.FileOpt = None,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap each prompt in the tokenizer's chat template.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Prompts per batch (left-padded).")] = 8,
    max_new_tokens: o.MaxNewTokensOpt = 64,
    temperature: o.TemperatureOpt = 0.0,
    top_p: o.TopPOpt = 1.0,
    seed: o.SeedOpt = 0,
    arch: o.ArchOpt = None,
    bits: o.BitsOpt = 2,
    k_bits: o.KBitsOpt = None,
    v_bits: o.VBitsOpt = None,
    group_size: o.GroupSizeOpt = 32,
    residual_length: o.ResidualLengthOpt = 128,
    sink_tokens: o.SinkTokensOpt = 0,
    rotate_keys: o.RotateKeysOpt = False,
    backend: o.BackendOpt = o.Backend.auto,
    loop: Annotated[o.Loop, typer.Option("--loop", help=o.LOOP_HELP + " Decided per batch: a batch whose prompts "
                                         "differ in token length takes the plain loop under auto and is an "
                                         "error under lean. Lean stops once every prompt of the batch has reached "
                                         "eos; it does not stream.")] = o.Loop.auto,
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = o.Dtype.auto,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    json: o.JsonOpt = False,
) -> None:
    """Generate text for one or more prompts with a KIVI cache (greedy unless --temperature > 0).

    Prompts come from the arguments, --file, or stdin. With --json, one JSON object per prompt
    (JSON Lines), in input order; a bad input line gives {"index", "line", "error"} and the
    other prompts still run (exit code 1 at the end).
    """
    from kivi_cli import models, prompts
    from kivi_cli.batching import run_prompts
    from kivi_cli.loops import check_settings
    from kivi_cli.render import render_generation, render_generation_summary

    out = Output(json=json)
    model, texts = split_model(args or [], model, arch)
    items = prompts.collect(texts, file)
    kivi = o.kivi_settings(bits, k_bits, v_bits, group_size, residual_length, backend, sink_tokens, rotate_keys)
    check_settings(loop, kivi, temperature)  # before loading: --loop lean with flags it can never run
    loaded = models.load(o.model_choice(model, arch, device, dtype, trust_remote_code, seed), out)
    if chat and not getattr(loaded.tokenizer, "chat_template", None):
        raise UsageError(f"--chat: the tokenizer of {loaded.name} has no chat template; drop --chat.")

    results = run_prompts(loaded, kivi, items, batch_size=batch_size, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p, seed=seed, chat=chat, out=out,
                          on_result=lambda r: render_generation(out, r), loop=loop)
    failed = [r for r in results if r.get("error")]
    render_generation_summary(out, loaded, kivi, results)
    if failed:
        where = ", ".join(str(r.get("line") or f"#{r['index']}") for r in failed[:10])
        out.warn(f"{len(failed)} of {len(results)} prompts failed (line {where}); the others ran.")
        raise typer.Exit(EXIT_RUNTIME)

