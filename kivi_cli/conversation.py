"""A chat conversation held in one cache across turns: each turn feeds only what is new.

The cache holds the tokens of the rendered conversation so far. For a new user message the whole
conversation is rendered again with the chat template; if it starts with the text already consumed
(the usual case), only the new suffix is tokenized and fed, preceded by the reply's last sampled token
when that one was never fed back (reply cut by the length limit or Ctrl-C). If the template rewrote
earlier text (some templates trim replies), the conversation is re-read into a fresh cache instead —
slower, never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from kivi_cli.decode import Sampler, Session, new_cache, run
from kivi_cli.metrics import cache_bytes
from kivi_cli.models import Loaded, eos_ids


@dataclass
class Turn:
    user: str
    reply: str
    new_tokens: int
    prefill_s: float
    tokens_per_s: Optional[float]
    cached_tokens: int
    cache_bytes: int
    cache_bytes_full_precision: int
    stopped: bool  # Ctrl-C cut the reply
    reprefilled: bool  # the whole conversation had to be fed again

    def as_dict(self) -> dict:
        return {"type": "reply", **self.__dict__}


class Conversation:
    def __init__(self, loaded: Loaded, kivi, sampler: Sampler, max_new_tokens: int, system: Optional[str] = None):
        self.loaded, self.kivi, self.sampler, self.max_new_tokens = loaded, kivi, sampler, max_new_tokens
        self.system = system
        self.eos = eos_ids(loaded)
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.session: Optional[Session] = None
        self.consumed = ""  # rendered conversation text whose tokens are in the cache (plus `pending`)
        self.pending: list[int] = []
        self.last: Optional[Turn] = None

    def _render(self, messages: list[dict]) -> str:
        return self.loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _ids(self, text: str) -> list[int]:
        return self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply(self, user: str, on_piece: Callable[[str], None], should_stop: Callable[[], bool]) -> Turn:
        messages = self.messages + [{"role": "user", "content": user}]
        rendered = self._render(messages)
        reprefill = self.session is None or not rendered.startswith(self.consumed)
        if reprefill:
            self.session = Session(self.loaded.model, new_cache(self.loaded.model, self.kivi), self.loaded.device)
            ids = self._ids(rendered)
        else:
            ids = self.pending + self._ids(rendered[len(self.consumed):])
        reprefill = reprefill and bool(self.consumed)

        tok = self.loaded.tokenizer
        new: list[int] = []
        printed = 0
        eos = set(self.eos)
        cut = False

        def on_token(t: torch.Tensor) -> bool:  # stream the new text, holding back partial characters
            nonlocal printed, cut
            value = int(t[0])
            if value in eos:
                return True
            new.append(value)
            text = tok.decode(new, skip_special_tokens=True)
            if not text.endswith("\ufffd"):
                on_piece(text[printed:])
                printed = len(text)
            cut = should_stop()
            return cut

        input_ids = torch.tensor([ids], dtype=torch.long)
        gen = run(self.session, input_ids, None, self.max_new_tokens, self.sampler, eos_ids=self.eos,
                  on_token=on_token)
        text = tok.decode(new, skip_special_tokens=True)
        if len(text) > printed:
            on_piece(text[printed:])
        last = int(gen.tokens[0, -1])
        # the last sampled token is never fed: if it is not eos, the next turn must feed it first
        self.pending = [] if last in eos else [last]
        self.messages = messages + [{"role": "assistant", "content": text}]
        self.consumed = rendered + text
        held, _ = cache_bytes(self.session.cache)
        self.last = Turn(user, text, len(new), gen.timing.prefill_s, gen.timing.decode_tokens_per_s,
                         self.session.tokens, held, self.full_precision_bytes(self.session.tokens), cut,
                         reprefill)
        return self.last

    def full_precision_bytes(self, tokens: int) -> int:
        from kivi_core import analytic_cache_bytes

        d = self.loaded.dims
        return analytic_cache_bytes(None, 1, d["kv_heads"], d["head_dim"], d["layers"], tokens, self.loaded.dtype)

    def stats(self) -> dict:
        tokens = self.session.tokens if self.session else 0
        held = cache_bytes(self.session.cache)[0] if self.session else 0
        return {
            "type": "stats",
            "model": self.loaded.name,
            "kivi": self.kivi.label() if self.kivi is not None else "full precision (--bits 16)",
            "turns": sum(1 for m in self.messages if m["role"] == "user"),
            "cached_tokens": tokens,
            "cache_bytes": held,
            "cache_bytes_full_precision": self.full_precision_bytes(tokens),
            "last_tokens_per_s": self.last.tokens_per_s if self.last else None,
        }

