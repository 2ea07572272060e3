"""The lean decode loop: greedy decoding over a static cache, each step replayed as a CUDA graph.

`lean_generate(model, input_ids, new_tokens, kivi=cfg | None)` prefills the prompt, continues the cache
as a static one (`kivi_core.static`) and decodes `new_tokens` tokens. On CUDA every step kind (for KIVI:
whether the step flushes the key tail / slides the value window; known on the host from the step
count) is run once eagerly (which compiles its kernels), captured as a CUDA graph at its next
occurrence, and replayed from then on: the model forward, the cache update, the attention kernels and
the argmax all run without Python between them. The fp16 side (`kivi=None`) uses the same loop over
dense buffers of the same maximum length, so the comparison stays fair. On CPU the same steps run
eagerly (no graphs), which is what the CPU tests compare with `model.generate`.

Left-padded batches whose rows fall into several padding phases cannot be continued statically (each
phase has its own flush schedule): `lean_generate` then decodes with plain `model.generate` over a
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
    graphs: str  # "cuda graphs" | "eager" | "generate (several padding phases)"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    step_kinds: dict = field(default_factory=dict)  # kind -> "eager" / "captured" counts


class GraphStepper:
    """Runs `step()` (a function of static buffers only) eagerly once per kind, then as a captured graph."""

    def __init__(self, step, schedule: DecodeSchedule, graphs: bool):
        self.step, self.schedule, self.graphs = step, schedule, graphs
        self.seen: set = set()
        self.captured: dict = {}
        self.pool = torch.cuda.graph_pool_handle() if graphs else None
        self.counts: dict = {}

    def __call__(self) -> None:
        kind = self.schedule.kind()
        if not self.graphs:
            self.step()
            how = "eager"
        elif kind in self.captured:
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
        self.schedule.advance()


def _greedy_step(model, cache, ids: torch.Tensor, pos: torch.Tensor):
    kw = {cache_kwarg(model): cache}

    def step():
        logits = model(input_ids=ids, position_ids=pos, use_cache=True, **kw).logits
        ids.copy_(logits[:, -1:].argmax(-1))
        pos.add_(1)

    return step


@torch.no_grad()
def lean_generate(model, input_ids: torch.Tensor, new_tokens: int, kivi: KiviConfig | None = None,
                  attention_mask: torch.Tensor | None = None, graphs: bool | None = None) -> LeanResult:
    """Greedy-decode `new_tokens` tokens after `input_ids` [B, T] with the lean loop (see module doc)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens={new_tokens} must be >= 1")
    B, T = input_ids.shape
    device = input_ids.device
    graphs = device.type == "cuda" if graphs is None else graphs
    max_len = T + new_tokens
    kw = cache_kwarg(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    if kivi is not None:
        pre = KiviCache(kivi, model_config=model.config, capacity=max_len)
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{kw: pre})
        first = out.logits[:, -1:].argmax(-1)
        del out
        if static_unsupported(pre) is not None:
            full = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            gc = copy.deepcopy(model.generation_config)
            gc.eos_token_id = None  # exactly new_tokens tokens, nothing suppressed: as the lean loop
            gen = model.generate(input_ids=input_ids, attention_mask=full, max_new_tokens=new_tokens,
                                 do_sample=False, generation_config=gc, past_key_values=KiviCache(kivi))
            return LeanResult(gen[:, T:], None, "generate (several padding phases)")
        cache = StaticKiviCache.from_cache(pre, max_len)
        del pre
    else:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the fp16 lean loop takes unpadded prompts (attention_mask all ones)")
        cache = StaticFp16Cache.for_model(model, B, max_len)
        out = model(input_ids=input_ids, use_cache=True, **{kw: cache})
        first = out.logits[:, -1:].argmax(-1)
        del out
        cache.prompt_done(T)
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
    return LeanResult(tokens, cache, "cuda graphs" if graphs else "eager", t1 - t0, t2 - t1, kinds)
