"""`kivi eval`: measured quality vs full precision on real text (decode-mode perplexity, needle retrieval).

The command is thin: it maps flags onto `kivi_core.eval_settings.Setting`s, loads the model and text, runs
`kivi_core.eval_ppl.decode_ppl` / `kivi_core.eval_needle.run_needle` per setting (all in one process, the
same loop for every setting), and renders one report: Rich tables for people or one JSON document
(`--json`). Progress goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from kivi_cli import options as o
from kivi_cli.errors import UsageError
from kivi_cli.output import Output

TASKS = ("ppl", "needle")
EVAL_PANEL = "Evaluation"


def _split(text: str, flag: str, cast, allowed=None) -> list:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            v = cast(part)
        except ValueError:
            raise UsageError(f"{flag} {text!r}: {part!r} is not a {cast.__name__}; use e.g. {flag} "
                             f"{','.join(map(str, allowed)) if allowed else '1,2'}.") from None
        if allowed is not None and v not in allowed:
            raise UsageError(f"{flag} {text!r}: {part!r} is not one of {', '.join(map(str, allowed))}.")
        if v not in values:
            values.append(v)
    return values


def eval_cmd(
    model: o.ModelArg = None,
    arch: o.ArchOpt = None,
    bits: o.BitsListOpt = "2,4",
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated: ppl (decode-mode perplexity), needle (passkey retrieval).", rich_help_panel=EVAL_PANEL)] = "ppl,needle",
    group_size: Annotated[str, typer.Option("--group-size", "-G", help="Group size G, or a comma list to compare (paper: 32).", rich_help_panel=o.KIVI_PANEL)] = "32",
    residual_length: Annotated[str, typer.Option("--residual-length", "-R", help="Full-precision window R, or a comma list (paper: 128; 0 = no window).", rich_help_panel=o.KIVI_PANEL)] = "128",
    ablations: Annotated[str, typer.Option("--ablations", help="Also run the paper's ablations at the lowest --bits: per-token-keys (keys quantized per token too, simulated), no-window (R=0).", rich_help_panel=o.KIVI_PANEL)] = "",
    options: Annotated[str, typer.Option("--options", help="Also run kivi's opt-in options at the lowest --bits: sinks (4 full-precision sink tokens), rotate (Hadamard-rotated keys), sinks+rotate.", rich_help_panel=o.KIVI_PANEL)] = "",
    backend: o.BackendOpt = o.Backend.auto,
    windows: Annotated[int, typer.Option("--windows", min=1, help="PPL: consecutive windows of text.", rich_help_panel=EVAL_PANEL)] = 8,
    window: Annotated[int, typer.Option("--window", min=3, help="PPL: tokens per window T.", rich_help_panel=EVAL_PANEL)] = 1024,
    prefill: Annotated[int, typer.Option("--prefill", min=1, help="PPL: tokens prefilled per window P; the other T-P-1 are scored one decode step each.", rich_help_panel=EVAL_PANEL)] = 512,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="PPL: windows per batch (default: all).", rich_help_panel=EVAL_PANEL, show_default=False)] = None,
    text: Annotated[str, typer.Option("--text", help="PPL text: wiki, tinystories or c4 (from the exllamav2 wheel, cached once).", rich_help_panel=EVAL_PANEL)] = "wiki",
    text_file: Annotated[Optional[Path], typer.Option("--text-file", help="PPL text from your own UTF-8 file instead of --text.", rich_help_panel=EVAL_PANEL, show_default=False)] = None,
    needle_lengths: Annotated[str, typer.Option("--needle-lengths", help="Needle: prompt lengths in tokens (each at most the model's context).", rich_help_panel=EVAL_PANEL)] = "1024,2048,4096",
    needle_depths: Annotated[str, typer.Option("--needle-depths", help="Needle: depths in [0, 1] (0 = start of the filler, 1 = right before the question).", rich_help_panel=EVAL_PANEL)] = "0,0.25,0.5,0.75,1",
    needle_trials: Annotated[int, typer.Option("--needle-trials", min=1, help="Needle: random keys per (length, depth) cell.", rich_help_panel=EVAL_PANEL)] = 2,
    seed: o.SeedOpt = 0,
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = o.Dtype.auto,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    json: o.JsonOpt = False,
) -> None:
    """Measure what a KIVI cache costs in quality: full precision vs each setting, in one run.

    ppl: decode-mode perplexity on real text: each window's first P tokens are prefilled, then every
    later token is fed alone and the next one scored, so each scored token attends to the (quantized)
    cache; reported with the change vs full precision. needle: a random pass key hidden at several
    depths of long filler text; exact-match accuracy per (length, depth). Minutes on CPU.
    """
    import torch

    from kivi_cli import models
    from kivi_core import prepare
    from kivi_core.eval_settings import ABLATIONS, OPTIONS, standard_settings

    out = Output(json=json)
    task_list = _split(tasks, "--tasks", str, TASKS)
    bit_list = o.parse_bits_list(bits)
    g_list = _split(group_size, "--group-size", int)
    r_list = _split(residual_length, "--residual-length", int)
    abl = tuple(_split(ablations, "--ablations", str, ABLATIONS))
    opts = tuple(_split(options, "--options", str, OPTIONS))
    if not task_list:
        raise UsageError("--tasks is empty: use ppl, needle or ppl,needle.")
    if not g_list or not r_list:
        raise UsageError("--group-size and --residual-length need at least one value, e.g. -G 32 -R 128.")
    try:
        settings = standard_settings(tuple(bit_list), tuple(g_list), tuple(r_list), abl, backend.value, opts)
    except ValueError as e:
        raise UsageError(o._flag_names(str(e))) from None
    if prefill > window - 2:
        raise UsageError(f"--prefill {prefill} must be at most --window - 2 = {window - 2}: at least one token is scored.")
    lengths = _split(needle_lengths, "--needle-lengths", int)
    depths = _split(needle_depths, "--needle-depths", float)
    if any(not 0 <= d <= 1 for d in depths):
        raise UsageError(f"--needle-depths {needle_depths!r}: every depth must be in [0, 1].")
    if text_file is not None and not text_file.is_file():
        raise UsageError(f"--text-file {str(text_file)!r} does not exist.")

    loaded = models.load(o.model_choice(model, arch, device, dtype, trust_remote_code, seed), out)
    lm, tok = prepare(loaded.model), loaded.tokenizer
    max_pos = getattr(getattr(lm.config, "get_text_config", lambda: lm.config)(), "max_position_embeddings", None)
    if loaded.device.type == "cpu":
        # Two OpenMP threads that wait on each other on a busy 2-core machine ran decode steps 10x slower.
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    doc: dict = {
        "model": loaded.name, "random_weights": loaded.random_weights, "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."), "versions": _versions(),
        "settings": [s.as_dict() for s in settings],
    }

    if "ppl" in task_list:
        if max_pos and window > max_pos:
            raise UsageError(f"--window {window} exceeds the model's context ({max_pos} tokens); use --window {max_pos}.")
        from kivi_core.eval_ppl import decode_ppl

        if text_file is not None:
            source, corpus = str(text_file), text_file.read_text(encoding="utf-8")
        else:
            from kivi_core.assets import text_corpus, text_kinds

            if text not in text_kinds():
                raise UsageError(f"--text {text!r} is not one of {', '.join(text_kinds())}; or pass --text-file.")
            source, corpus = f"exllamav2 {text}", text_corpus(text)
        ids = torch.tensor(tok(corpus, add_special_tokens=False).input_ids)
        fit = ids.numel() // window
        if fit < 1:
            raise UsageError(f"the text has {ids.numel()} tokens, fewer than one --window of {window}: use a longer "
                             f"text or a smaller --window.")
        if fit < windows:
            out.warn(f"the text holds only {fit} windows of {window} tokens: using {fit} instead of {windows}.")
            windows = fit
        results = []
        for s in settings:
            with _progress(out, f"ppl  {s.name}") as update:
                r = decode_ppl(lm, ids, s, windows, window, prefill, batch_size, progress=update)
            results.append(r.as_dict())
            out.hint(f"ppl  {s.name}: {r.ppl:.3f} ({r.seconds:.0f} s)")
        fp = results[0]["ppl"]
        for r in results:
            r["delta_pct"] = 100.0 * (r["ppl"] / fp - 1.0)
        doc["ppl"] = {"text": source, "text_tokens": int(ids.numel()), "windows": windows, "window": window,
                      "prefill": prefill, "tokens_scored": windows * (window - prefill - 1), "results": results}

    if "needle" in task_list:
        from kivi_core.eval_needle import run_needle

        if max_pos and any(n > max_pos for n in lengths):
            raise UsageError(f"--needle-lengths {needle_lengths!r} exceeds the model's context ({max_pos} tokens).")
        results = []
        for s in settings:
            with _progress(out, f"needle {s.name}") as update:
                r = run_needle(lm, tok, s, lengths, depths, needle_trials, seed, progress=update)
            results.append(r.as_dict())
            out.hint(f"needle {s.name}: {100 * r.mean_accuracy:.0f}% ({r.seconds:.0f} s)")
        fp = results[0]["mean_accuracy"]
        for r in results:
            r["delta_points"] = 100.0 * (r["mean_accuracy"] - fp)
        doc["needle"] = {"lengths": lengths, "depths": depths, "trials": needle_trials, "results": results}

    render(out, doc)


def _versions() -> dict:
    import platform

    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}


class _progress:
    """A Rich progress bar on stderr when it is a terminal; otherwise silent (the hint after each setting says it)."""

    def __init__(self, out: Output, label: str):
        self.out, self.label, self.bar, self.task = out, label, None, None

    def __enter__(self):
        if sys.stderr.isatty() and not self.out.quiet:
            from rich.progress import BarColumn, Progress, TimeRemainingColumn

            from kivi_cli.output import stderr_console

            self.bar = Progress("{task.description}", BarColumn(), "{task.completed}/{task.total}",
                                TimeRemainingColumn(), console=stderr_console(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def render(out: Output, doc: dict) -> None:
    """One JSON document with --json; otherwise a PPL table and a needle grid per setting."""
    from kivi_cli.output import fmt_bytes

    if out.json:
        out.document(doc)
        return
    head = f"{doc['model']} · {doc['device']} · {doc['dtype']}"
    if "ppl" in doc:
        p = doc["ppl"]
        rows = []
        for r in p["results"]:
            delta = "baseline" if r["setting"]["kind"] == "fp" else f"{r['delta_pct']:+.2f}%"
            rows.append((r["setting"]["name"], f"{r['ppl']:.3f}", delta, f"{r['tokens_scored']:,}",
                         fmt_bytes(r["cache_bytes"]) if r["cache_bytes"] is not None else "n/a",
                         f"{r['seconds']:.0f} s"))
        out.table(
            f"Decode-mode perplexity — {head}",
            ["setting", "PPL", "Δ vs full", "scored tokens", "cache bytes", "time"], rows,
            caption=f"{p['text']}: {p['windows']} windows of {p['window']} tokens, prefill {p['prefill']}; "
                    f"cache bytes: one batch's cache after its last step (n/a: simulated ablation, holds full precision).",
        )
    if "needle" in doc:
        n = doc["needle"]
        cols = ["setting", "length"] + [f"depth {d:g}" for d in n["depths"]] + ["mean"]
        rows = []
        for r in n["results"]:
            for length in n["lengths"]:
                cells = [r["accuracy"][f"{length}@{d:g}"] for d in n["depths"]]
                rows.append([r["setting"]["name"], str(length)] + [f"{100 * c:.0f}%" for c in cells]
                            + [f"{100 * sum(cells) / len(cells):.0f}%"])
            delta = "" if r["setting"]["kind"] == "fp" else f" ({r['delta_points']:+.0f} pts)"
            if len(n["lengths"]) == 1:
                rows[-1][-1] += delta
                continue
            rows.append([r["setting"]["name"], "all"] + [""] * len(n["depths"]) + [f"{100 * r['mean_accuracy']:.0f}%{delta}"])
        out.table(f"Needle (passkey) retrieval, exact match — {head}", cols, rows,
                  caption=f"{n['trials']} random keys per cell; depth 0 = start of the filler, 1 = just before the question.")
