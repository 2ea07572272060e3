"""The decode loop shared by `generate`, `chat` and `profile`: prefill, then one forward per token.

The same loop runs the full-precision side (transformers' DynamicCache) and every KIVI side, so a
comparison measures the caches, not two loops. It is a plain eager loop over `model(...)`, with
sampling, streaming, EOS stops and left-padded batches: what `chat` needs, and `generate` where the lean
CUDA-graph loop of `kivi_core.engine` does not apply (greedy, unpadded prompts; `kivi_cli.loops`
decides). `profile` defaults to the lean loop (the same loop for both sides); `profile --loop generate`
measures this one.

Left padding: the session keeps the 2D attention mask of everything the cache holds and derives
position ids from it (cumsum − 1), so each row of a padded batch sees the positions it would see alone.
Per decode step the host does no sync except, when `stop_at_eos`, one `.all()` to know when every row
has finished (profile turns it off and runs a fixed number of steps).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from kivi_cli.metrics import Timing
from kivi_core.engine import eos_lengths


def new_cache(model, kivi_config):
    """An empty cache for one run: a KiviCache for a KiviConfig, transformers' DynamicCache for None."""
    if kivi_config is None:
        from transformers import DynamicCache

        return DynamicCache(config=model.config)
    from kivi_core import KiviCache, prepare

    prepare(model)  # idempotent: gives the cache the padding mask and the layer types
    return KiviCache(kivi_config, model_config=model.config)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Sampler:
    """Greedy at temperature 0; else temperature + top-p (nucleus) sampling with a seeded generator."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    _generator: Optional[torch.Generator] = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        # logits: [B, V] -> tokens [B]
        if self.temperature <= 0:
            return logits.argmax(dim=-1)
        if self._generator is None or self._generator.device != logits.device:
            self._generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # keep the smallest prefix whose mass reaches top_p (always at least the top token)
            drop = sorted_p.cumsum(dim=-1) - sorted_p > self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            choice = torch.multinomial(sorted_p, 1, generator=self._generator)
            return order.gather(-1, choice).squeeze(-1)
        return torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)


class Session:
    """A cache plus the attention mask of everything it holds. `feed` appends tokens (prefill or a new
    chat turn), `step` appends one token per row; both return the last position's logits [B, V]."""

    def __init__(self, model, cache, device: torch.device):
        from kivi_core import cache_kwarg

        self.model = model
        self.cache = cache
        self.device = device
        self._kw = cache_kwarg(model)
        params = inspect.signature(model.forward).parameters
        # only the last position's logits are needed: at batch 64 x ctx 4096 the full fp16 logits are 33 GB
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.mask: Optional[torch.Tensor] = None  # [B, T] of all tokens fed so far (view into _mask_buf)
        self._mask_buf: Optional[torch.Tensor] = None
        self._next_pos: Optional[torch.Tensor] = None  # [B] position id of the next token

    @property
    def tokens(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def reserve(self, extra: int) -> None:
        """Make room in the mask buffer for `extra` more tokens (so `step` never reallocates)."""
        if self.mask is None:
            return
        b, t = self.mask.shape
        if self._mask_buf is not None and self._mask_buf.shape[1] >= t + extra:
            return
        buf = torch.ones(b, t + extra, dtype=self.mask.dtype, device=self.device)
        buf[:, :t] = self.mask
        self._mask_buf, self.mask = buf, buf[:, :t]

    def _forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=self.mask, position_ids=position_ids,
                         use_cache=True, **{self._kw: self.cache}, **self._extra)
        return out.logits[:, -1]

    @torch.inference_mode()
    def feed(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
             chunk: int = 0) -> torch.Tensor:
        """Append tokens; `chunk` > 0 feeds them `chunk` positions at a time (chunked prefill), which bounds
        the activations at batch x chunk instead of batch x length. With a KIVI cache, later chunks then
        attend to the already-quantized earlier ones, where a one-shot prefill attends in full precision."""
        # input_ids, attention_mask: [B, L]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(self.device, torch.long)
        input_ids = input_ids.to(self.device)
        past = self.tokens
        full = attention_mask if self.mask is None else torch.cat([self.mask, attention_mask], dim=1)
        self._mask_buf = None
        positions = (full.cumsum(-1) - 1).clamp(min=0)  # [B, past + L]
        length = input_ids.shape[1]
        step = chunk if 0 < chunk < length else length
        for start in range(0, length, step):
            end = min(start + step, length)
            self.mask = full[:, : past + end]
            logits = self._forward(input_ids[:, start:end], positions[:, past + start: past + end])
        self._next_pos = full.sum(-1)
        return logits

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: [B] -> one new position per row
        t = self.mask.shape[1]
        if self._mask_buf is None or self._mask_buf.shape[1] <= t:
            self.reserve(64)
        self.mask = self._mask_buf[:, : t + 1]  # the buffer is pre-filled with ones
        positions = self._next_pos[:, None]
        self._next_pos = self._next_pos + 1
        return self._forward(tokens[:, None], positions)


@dataclass
class Generation:
    tokens: torch.Tensor  # [B, n] new tokens; after a row's eos, pad
    lengths: list[int]  # per row: new tokens up to and including eos
    timing: Timing
    stopped: bool = False  # the on_token callback asked to stop


def run(session: Session, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], max_new_tokens: int,
        sampler: Sampler, eos_ids: Sequence[int] = (), pad_id: int = 0, stop_at_eos: bool = True,
        on_token: Optional[Callable[[torch.Tensor], bool]] = None, prefill_chunk: int = 0) -> Generation:
    """Prefill `input_ids` into the session, then decode up to `max_new_tokens` tokens per row.

    `on_token(tokens[B])` is called for each new token (streaming); returning True stops the run.
    The final token is sampled but not fed back (the next turn or nothing consumes it).
    """
    device = session.device
    batch = input_ids.shape[0]
    cuda = device.type == "cuda"
    eos = torch.tensor(list(eos_ids), device=device, dtype=torch.long)

    sync(device)
    t0 = time.perf_counter()
    logits = session.feed(input_ids, attention_mask, chunk=prefill_chunk)
    tok = sampler(logits)
    sync(device)
    prefill_s = time.perf_counter() - t0

    session.reserve(max_new_tokens)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    out[:, 0] = tok
    finished = torch.isin(tok, eos) if len(eos_ids) else torch.zeros(batch, dtype=torch.bool, device=device)
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    stopped = on_token is not None and bool(on_token(tok))
    steps = 0
    t1 = time.perf_counter()
    for i in range(1, max_new_tokens):
        if stopped or (stop_at_eos and len(eos_ids) and bool(finished.all())):  # the one host sync per step
            break
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        logits = session.step(tok)
        tok = sampler(logits)
        if cuda:
            end.record()
            events.append((start, end))
        if len(eos_ids):
            tok = torch.where(finished, torch.full_like(tok, pad_id), tok)
            finished |= torch.isin(tok, eos)
        out[:, i] = tok
        steps += 1
        stopped = on_token is not None and bool(on_token(tok))
    sync(device)
    decode_s = time.perf_counter() - t1
    gpu_ms = sum(s.elapsed_time(e) for s, e in events) / len(events) if events else None

    n = 1 + steps
    out = out[:, :n]
    lengths = eos_lengths(out, eos_ids)  # the lean loop's rule too (kivi_core.engine)
    timing = Timing(batch=batch, prefill_s=prefill_s, decode_steps=steps, decode_wall_s=decode_s, gpu_ms_per_step=gpu_ms)
    return Generation(out, lengths, timing, stopped)
