"""`kivi chat`: an interactive conversation kept in one KIVI cache, streamed as it is generated."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated, Optional

import typer

from kivi_cli import options as o
from kivi_cli.output import Output

HELP = "/stats: cache numbers · /reset: new conversation · /exit: quit (or Ctrl-D) · Ctrl-C: stop a reply"


def chat_cmd(
    model: o.ModelArg = None,
    arch: o.ArchOpt = None,
    system: Annotated[Optional[str], typer.Option("--system", help="System prompt.", show_default=False)] = None,
    max_new_tokens: o.MaxNewTokensOpt = 256,
    temperature: o.TemperatureOpt = 0.0,
    top_p: o.TopPOpt = 1.0,
    seed: o.SeedOpt = 0,
    bits: o.BitsOpt = 2,
    k_bits: o.KBitsOpt = None,
    v_bits: o.VBitsOpt = None,
    group_size: o.GroupSizeOpt = 32,
    residual_length: o.ResidualLengthOpt = 128,
    sink_tokens: o.SinkTokensOpt = 0,
    rotate_keys: o.RotateKeysOpt = False,
    backend: o.BackendOpt = o.Backend.auto,
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = o.Dtype.auto,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    json: o.JsonOpt = False,
) -> None:
    """Chat with a model; the conversation stays in one KIVI cache (no re-reading of the history).

    Reads one message per line from the terminal or from piped stdin. After each reply, a
    status line (stderr) gives tokens/s and the KV bytes held vs full precision. With --json,
    replies are not streamed; one JSON document with every turn is printed at the end.
    """
    from kivi_cli import models
    from kivi_cli.conversation import Conversation
    from kivi_cli.decode import Sampler
    from kivi_cli.errors import UsageError
    from kivi_cli.render import chat_status_line, render_chat_stats

    out = Output(json=json)
    kivi = o.kivi_settings(bits, k_bits, v_bits, group_size, residual_length, backend, sink_tokens, rotate_keys)
    loaded = models.load(o.model_choice(model, arch, device, dtype, trust_remote_code, seed), out)
    if not getattr(loaded.tokenizer, "chat_template", None):
        raise UsageError(f"{loaded.name} has no chat template; use `kivi generate` for plain completion.")
    conv = Conversation(loaded, kivi, Sampler(temperature, top_p, seed), max_new_tokens, system)
    interactive = sys.stdin.isatty()
    events: list[dict] = []
    out.hint(f"{loaded.name}, cache {kivi.label() if kivi else 'full precision'}. {HELP}")

    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            line = ""
        except KeyboardInterrupt:
            out.hint("\n(Ctrl-D or /exit to quit)")
            continue
        if not line:  # EOF (Ctrl-D / end of piped input)
            if interactive:
                out.hint("")
            break
        message = line.strip()
        if not message:
            continue
        if message in ("/exit", "/quit"):
            break
        if message == "/reset":
            conv.reset()
            events.append({"type": "reset"})
            out.hint("conversation reset; the cache is empty.")
            continue
        if message == "/stats":
            stats = conv.stats()
            events.append(stats)
            render_chat_stats(out, stats)
            continue
        if message.startswith("/"):
            out.hint(f"unknown command {message.split()[0]!r}. {HELP}")
            continue

        with _ctrl_c_stops() as stop:
            turn = conv.reply(message, out.stream, stop.is_set)
        out.stream("\n")
        events.append(turn.as_dict())
        if turn.reprefilled:
            out.hint("(the chat template rewrote earlier text, so the conversation was re-read into a new cache)")
        out.status(chat_status_line(turn.new_tokens, turn.tokens_per_s, turn.cache_bytes,
                                    turn.cache_bytes_full_precision, turn.cached_tokens)
                   + (" (stopped)" if turn.stopped else ""))

    if out.json:
        out.document({"model": loaded.name, "kivi": conv.stats()["kivi"], "events": events, "final": conv.stats()})


class _ctrl_c_stops:
    """While a reply streams, Ctrl-C sets a flag the decode loop checks between tokens (so the cache is
    never left mid-update) instead of raising KeyboardInterrupt."""

    def __enter__(self) -> threading.Event:
        self.flag = threading.Event()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda *_: self.flag.set())
        return self.flag

    def __exit__(self, *exc) -> bool:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
