"""The lean decode loop: greedy decoding over a static cache, each step replayed as a CUDA graph.

`lean_generate(model, input_ids, new_tokens, kivi=cfg | None)` prefills the prompt, continues the cache
as a static one (`kivi_core.static`) and decodes `new_tokens` tokens. On CUDA every step kind (for KIVI:
whether the step flushes the key tail / slides the value window; known on the host from the step
count) is run once eagerly (which compiles its kernels), captured as a CUDA graph at its next
occurrence, and replayed from then on: the model forward, the cache update, the attention kernels and
the argmax all run without Python between them. The fp16 side (`kivi=None`) uses the same loop over
dense buffers of the same maximum length, so the comparison stays fair. On CPU the same steps run
eagerly (no graphs), which is what the CPU tests compare with `model.generate`.

Left-padded prompts are not continued statically (the static attention reads no padding mask, and rows
in several padding phases have their own flush schedules), nor are the settings `static_unsupported`
names (R = 0, sinks, rotated keys): `lean_generate` then decodes with plain `model.generate` over a
`KiviCache`, which is exact, and says so in `LeanResult.graphs`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from .cache import KiviCache
from .compat import cache_kwarg
from .config import KiviConfig
from .static import DecodeSchedule, StaticFp16Cache, StaticKiviCache, static_unsupported


@dataclass
class LeanResult:
    tokens: torch.Tensor  # [B, new_tokens] (greedy)
    cache: object
    graphs: str  # "cuda graphs" | "eager" | "generate (padded prompt or unsupported setting)"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    step_kinds: dict = field(default_factory=dict)  # kind -> "eager" / "captured" counts
    steady_steps: int = 0  # steps from the first graph replay on (CUDA), timed with CUDA events
    steady_ms_per_step: float | None = None


class GraphStepper:
    """Runs `step()` (a function of static buffers only) eagerly once per kind, then as a captured graph."""

    def __init__(self, step, schedule: DecodeSchedule, graphs: bool):
        self.step, self.schedule, self.graphs = step, schedule, graphs
        self.seen: set = set()
        self.captured: dict = {}
        self.pool = torch.cuda.graph_pool_handle() if graphs else None
        self.counts: dict = {}
        self.start_event = None  # recorded before the first replay: steady-state timing, no host sync
        self.steady_steps = 0

    def __call__(self) -> None:
        kind = self.schedule.kind()
        if not self.graphs:
            self.step()
            how = "eager"
        elif kind in self.captured:
            if self.start_event is None:
                self.start_event = torch.cuda.Event(enable_timing=True)
                self.start_event.record()
            self.captured[kind].replay()
            how = "replay"
        elif kind in self.seen:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self.pool):  # records only: nothing runs, no state moves
                self.step()
            self.captured[kind] = g
            g.replay()
            how = "capture"
        else:
            self.step()  # compiles the kernels of this kind; a real step
            self.seen.add(kind)
            how = "eager"
        self.counts[(kind, how)] = self.counts.get((kind, how), 0) + 1
        self.steady_steps += self.start_event is not None
        self.schedule.advance()

    def steady_ms_per_step(self) -> float | None:
        """GPU time a step from the first replay on (call after a synchronize)."""
        if self.start_event is None or not self.steady_steps:
            return None
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self.start_event.elapsed_time(end) / self.steady_steps


def _greedy_step(model, cache, ids: torch.Tensor, pos: torch.Tensor):
    kw = {cache_kwarg(model): cache}

    def step():
        logits = model(input_ids=ids, position_ids=pos, use_cache=True, **kw).logits
        cache.end_step()
        ids.copy_(logits[:, -1:].argmax(-1))
        pos.add_(1)

    return step


def _prefill(model, input_ids, attention_mask, cache, chunk: int, after_chunk=None) -> torch.Tensor:
    """Run the prompt through `model` into `cache`, `chunk` tokens at a time; the last position's
    greedy token [B, 1]. Only the last position's logits are computed (a [B, T, vocab] tensor would
    be larger than the KIVI cache at large batch)."""
    T = input_ids.shape[1]
    chunk = chunk or T
    kw = {cache_kwarg(model): cache}
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        mask = None if attention_mask is None else attention_mask[:, :b]
        out = model(input_ids=input_ids[:, a:b], attention_mask=mask, use_cache=True, logits_to_keep=1, **kw)
        if after_chunk is not None:
            after_chunk(b)
    return out.logits[:, -1:].argmax(-1)


@torch.no_grad()
def lean_generate(model, input_ids: torch.Tensor, new_tokens: int, kivi: KiviConfig | None = None,
                  attention_mask: torch.Tensor | None = None, graphs: bool | None = None,
                  prefill_chunk: int = 0) -> LeanResult:
    """Greedy-decode `new_tokens` tokens after `input_ids` [B, T] with the lean loop (see module doc).
    `prefill_chunk` > 0 feeds the prompt that many tokens at a time (bounds prefill activations)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens={new_tokens} must be >= 1")
    if prefill_chunk < 0:
        raise ValueError(f"prefill_chunk={prefill_chunk} must be >= 0 (0: the whole prompt at once)")
    B, T = input_ids.shape
    device = input_ids.device
    graphs = device.type == "cuda" if graphs is None else graphs
    max_len = T + new_tokens - 1  # the last sampled token is never fed back
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    if kivi is not None:
        padded = attention_mask is not None and not bool(attention_mask.all())  # one host read, at the prompt
        pre = KiviCache(kivi, model_config=model.config, capacity=max_len)
        first = _prefill(model, input_ids, attention_mask, pre, prefill_chunk)
        # the static attention reads no padding mask: padded prompts (even a single padding phase) and
        # what static_unsupported names decode through plain generate, which is exact
        if padded or static_unsupported(pre) is not None:
            full = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            gc = copy.deepcopy(model.generation_config)
            gc.eos_token_id = None  # exactly new_tokens tokens, nothing suppressed: as the lean loop
            gen = model.generate(input_ids=input_ids, attention_mask=full, max_new_tokens=new_tokens,
                                 do_sample=False, generation_config=gc, past_key_values=KiviCache(kivi))
            return LeanResult(gen[:, T:], None, "generate (padded prompt or unsupported setting)")
        cache = StaticKiviCache.from_cache(pre, max_len)
        del pre
    else:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the fp16 lean loop takes unpadded prompts (attention_mask all ones)")
        cache = StaticFp16Cache.for_model(model, B, max_len)
        first = _prefill(model, input_ids, None, cache, prefill_chunk, cache.prompt_done)
    if attention_mask is not None:
        pos = attention_mask.long().sum(1, keepdim=True)  # next position of each row (left padding)
    else:
        pos = torch.full((B, 1), T, device=device, dtype=torch.long)
    ids = first.clone()
    sync()
    t1 = time.perf_counter()
    stepper = GraphStepper(_greedy_step(model, cache, ids, pos), cache.schedule, graphs)
    tokens = torch.empty(B, new_tokens, dtype=torch.long, device=device)
    tokens[:, 0:1] = first
    for i in range(1, new_tokens):
        stepper()
        tokens[:, i : i + 1] = ids
    sync()
    t2 = time.perf_counter()
    kinds = {f"flush={k[0][0]} slide={k[0][1]} {k[1]}": n for k, n in stepper.counts.items()}
    return LeanResult(tokens, cache, "cuda graphs" if graphs else "eager", t1 - t0, t2 - t1, kinds,
                      stepper.steady_steps, stepper.steady_ms_per_step())
