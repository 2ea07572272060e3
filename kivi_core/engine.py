"""The lean decode loop: greedy decoding over a static cache, each step replayed as a CUDA graph.

`lean_generate(model, input_ids, new_tokens, kivi=cfg | None)` prefills the prompt, continues the cache
as a static one (`kivi_core.static`) and decodes `new_tokens` tokens. On CUDA every step kind (for KIVI:
whether the step flushes the key tail / slides the value window; known on the host from the step
count) is run once eagerly (which compiles its kernels), captured as a CUDA graph at its next
occurrence, and replayed from then on: the model forward, the cache update, the attention kernels and
the argmax all run without Python between them. The fp16 side (`kivi=None`) uses the same loop over
dense buffers of the same maximum length, so the comparison stays fair. On CPU the same steps run
eagerly (no graphs), which is what the CPU tests compare with `model.generate`.

The prompt is prefilled a slice of rows at a time (`prefill_batch`; by default as many rows as keep a
slice under `PREFILL_TOKEN_BUDGET` prompt tokens), each slice into its own rows of the batch-wide static
cache, which is allocated once: so the prefill's transient memory (activations, and for KIVI the slice's
own prefilled cache until it is copied into place) is one slice's, and the largest batch that fits is
bounded by the cache, not by the prefill. The fp16 side prefills each slice straight into row views of
its dense buffers; KIVI prefills each slice into a `KiviCache` of the prompt's length and copies its
packed stores into the slice's rows (`StaticKiviCache.load_rows`), then frees it.

Left-padded prompts are not continued statically (the static attention reads no padding mask, and rows
in several padding phases have their own flush schedules), nor are the settings `static_unsupported`
names (R = 0, sinks, rotated keys), nor models `lean_unsupported` names (attention that bypasses
transformers' AttentionInterface, sliding windows that bind, hybrid sliding layers): with KIVI,
`lean_generate` then decodes with plain `model.generate` over a `KiviCache`, which is exact, and says so
in `LeanResult.graphs`; the fp16 side refuses them (ValueError).

`eos_ids` stops the loop once every row has produced one of them (the tokens are the same, the loop is
only shorter); `LeanResult.lengths` then says how many tokens of each row count, up to and including
its first eos.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .attention import WRAPPED
from .cache import KiviCache, _layer_types
from .compat import cache_kwarg
from .config import KiviConfig
from .static import DecodeSchedule, StaticFp16Cache, StaticKiviCache, config_unsupported, static_unsupported


# Prompt tokens prefilled together (rows x prompt_len) when `prefill_batch` is not given. Besides the
# batch-wide cache, the prefill's transient is what bounds the largest batch. Per prompt token of a slice
# (Llama-2-7B shape, fp16): ~100 KB of one layer's activations (the MLP's 3 x 11008 x 2 bytes, q/k/v and
# hidden states), and for KIVI also the slice's own prefilled cache (~112 KB a token over 32 layers at
# k2v2 G=32) until it is copied into its rows: ~0.8 GB (fp16) / ~1.7 GB (KIVI) for 8192 tokens, under
# one fp16 sequence of 4096 tokens (2.1 GB) and ~4 KIVI ones (0.47 GB). Measured on the H200 at ctx 4096
# (prompt 4094 + 2 tokens; torch peak minus weights minus cache): fp16 batch 48, all rows at once in
# chunks of 1024: 4.9 GB, by rows (2 at a time): 0.84 GB; KIVI-2 batch 64: 15.5 GB vs 2.2 GB; KIVI-2
# batch 192, which ran out of memory in prefill with all rows at once, fits with 3.0 GB. `kivi profile
# --find-max-batch` there: fp16 62, KIVI-2 280, 4.52x (cache bytes 4.57x). 8192 tokens a forward are
# still GEMMs of 8192 rows: prefill was not slower (fp16 batch 48: 6.3 s by rows vs 8.9 s, one run each).
# With kernel round 4 (its p scratch, one more split) the same search gave KIVI-2 273 (280 did not fit):
# at 4096 tokens (one row of a 4096 context) the transient is about half of the 2-row one, ~6 KIVI rows.
PREFILL_TOKEN_BUDGET = 4096


@dataclass
class LeanResult:
    tokens: torch.Tensor  # [B, n] greedy; n = new_tokens, or fewer when every row stopped at an eos
    cache: object
    graphs: str  # "cuda graphs" | "eager" | "generate (padded prompt or unsupported setting)"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    step_kinds: dict = field(default_factory=dict)  # kind -> "eager" / "captured" counts
    steady_steps: int = 0  # steps from the first graph replay on (CUDA), timed with CUDA events
    steady_ms_per_step: float | None = None
    # per row: tokens that count, up to and including the first of `eos_ids` (n without one). Past it a
    # row holds its greedy continuation (or, from the generate fallback, padding): to be ignored.
    lengths: list[int] = field(default_factory=list)


def lean_unsupported(model, kivi: KiviConfig | None = None, positions: int | None = None) -> str | None:
    """Why the lean loop cannot decode for `model` with `kivi` (None for fp16), or None when it can, from
    what is known before a prompt runs. `positions`: the most a row will hold (prompt + new tokens - 1);
    a sliding window at least that long never binds (None: any sliding layer counts). Left padding and
    the padding phases are the prompt's business (`lean_generate` checks them)."""
    if kivi is not None and (why := config_unsupported(kivi)):
        return why
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in WRAPPED or not getattr(model, "_supports_attention_backend", False):
        # The static layers attend when kivi_core.attention's dispatcher hands them the call; a model that
        # runs its own attention on what the cache returns (Falcon; attn_implementation="eager") would
        # attend to the step's token alone.
        return (f"{type(model).__name__} with attn_implementation={impl!r} does not call attention through "
                "transformers' AttentionInterface")
    types = _layer_types(model.config) or []
    if "sliding_attention" in types:
        if kivi is not None and "full_attention" in types:  # KiviCache keeps these as fp sliding caches
            return "hybrid sliding-window layers (not KIVI layers)"
        text = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
        window = text.sliding_window
        # transformers' window lets a query see the last `window` positions, itself included: a row of at
        # most `window` positions is never cut, and the static caches (which attend to all) are exact
        if positions is None or positions > window:
            return (f"sliding-window attention (window {window}) over {positions or 'any number of'} positions "
                    "(the static caches attend to every position)")
    return None


def eos_lengths(tokens: torch.Tensor, eos_ids: Sequence[int]) -> list[int]:
    """Per row of `tokens` [B, n]: up to and including the first of `eos_ids`, else n (one host read)."""
    eos, n = set(eos_ids), tokens.shape[1]
    return [next((j + 1 for j, t in enumerate(row) if t in eos), n) for row in tokens.tolist()]


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


def _generate_fallback(model, input_ids, attention_mask, new_tokens: int, kivi: KiviConfig,
                       eos_ids: Sequence[int] = ()) -> LeanResult:
    """Plain greedy `generate` over a `KiviCache`: exact for what the static cache cannot continue."""
    full = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    gc = copy.deepcopy(model.generation_config)
    # exactly new_tokens tokens, nothing suppressed: as the lean loop; with eos_ids generate stops as the
    # lean loop does, once every row has one (a finished row gets padding, which eos_lengths cuts off)
    gc.eos_token_id = list(eos_ids) or None
    if eos_ids and gc.pad_token_id is None:
        gc.pad_token_id = eos_ids[0]
    gen = model.generate(input_ids=input_ids, attention_mask=full, max_new_tokens=new_tokens,
                         do_sample=False, generation_config=gc, past_key_values=KiviCache(kivi))
    tokens = gen[:, input_ids.shape[1]:]
    return LeanResult(tokens, None, "generate (padded prompt or unsupported setting)",
                      lengths=eos_lengths(tokens, eos_ids))


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


def prefill_rows(batch: int, prompt_len: int, prefill_batch: int | None = None) -> int:
    """Rows prefilled together: `prefill_batch` rows (0: all), or with None as many as keep
    rows x prompt_len <= PREFILL_TOKEN_BUDGET (at least one row)."""
    if prefill_batch is None:
        return max(1, min(batch, PREFILL_TOKEN_BUDGET // max(1, prompt_len)))
    if isinstance(prefill_batch, bool) or not isinstance(prefill_batch, int) or prefill_batch < 0:
        raise ValueError(f"prefill_batch={prefill_batch!r} must be an int >= 0 (rows prefilled together; "
                         "0: all at once) or None (automatic)")
    return batch if prefill_batch == 0 else min(batch, prefill_batch)


@torch.no_grad()
def lean_generate(model, input_ids: torch.Tensor, new_tokens: int, kivi: KiviConfig | None = None,
                  attention_mask: torch.Tensor | None = None, graphs: bool | None = None,
                  prefill_chunk: int = 0, prefill_batch: int | None = None,
                  eos_ids: Sequence[int] = (), on_step: Callable[[int], None] | None = None) -> LeanResult:
    """Greedy-decode `new_tokens` tokens after `input_ids` [B, T] with the lean loop (see module doc).

    With `eos_ids`, decoding stops early once every row has produced one of them (`LeanResult.lengths`:
    each row's tokens up to and including its first eos); the tokens are those of a run without them.

    `prefill_batch` rows of the prompt are prefilled at a time (0: all rows at once; None: automatic,
    see `prefill_rows`), each slice into its rows of the batch-wide static cache, so the prefill's
    transient memory is one slice's, not the batch's. Each row's computation is the same as with all
    rows at once: the tokens and the cache are the same bits wherever the matmuls round a row the same
    whether it comes alone or with others (the CPU tests check it; see tests/test_engine.py for the one
    exception seen, a few tokens a row). Padded prompts (plain `generate`) take all rows at once.
    `prefill_chunk` > 0 feeds the prompt that many tokens at a time (bounds activations further; with
    KIVI, later chunks attend to quantized earlier ones, so the numbers change: it is not chosen
    automatically). `on_step(i)` runs on the host after the lean loop's decode step i (1 .. n - 1) is
    queued: progress, or a profiler's step marker (benchmarks/bench_engine.py --kernels); the plain
    `generate` fallback does not call it."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens={new_tokens} must be >= 1")
    if prefill_chunk < 0:
        raise ValueError(f"prefill_chunk={prefill_chunk} must be >= 0 (0: the whole prompt at once)")
    B, T = input_ids.shape
    rows = prefill_rows(B, T, prefill_batch)
    slices = [(a, min(B, a + rows)) for a in range(0, B, rows)]
    device = input_ids.device
    graphs = device.type == "cuda" if graphs is None else graphs
    max_len = T + new_tokens - 1  # the last sampled token is never fed back
    eos_ids = [int(i) for i in eos_ids]
    if why := lean_unsupported(model, kivi, max_len):
        if kivi is None:
            raise ValueError(f"the fp16 lean loop cannot run this model: {why}")
        return _generate_fallback(model, input_ids, attention_mask, new_tokens, kivi, eos_ids)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    first = torch.empty(B, 1, dtype=torch.long, device=device)  # each row's first greedy token
    if kivi is not None:
        # the static attention reads no padding mask: padded prompts (even a single padding phase) and
        # what static_unsupported names decode through plain generate, which is exact
        if attention_mask is not None and not bool(attention_mask.all()):  # one host read, at the prompt
            return _generate_fallback(model, input_ids, attention_mask, new_tokens, kivi, eos_ids)
        cache = None
        for a, b in slices:
            # One slice: the prefill's stores are allocated for max_len and continued without a copy.
            # Several: the slice's cache holds the prompt only and is copied into its rows, then freed.
            pre = KiviCache(kivi, model_config=model.config, capacity=max_len if len(slices) == 1 else T)
            first[a:b] = _prefill(model, input_ids[a:b], None, pre, prefill_chunk)
            if cache is None and static_unsupported(pre) is not None:
                del pre
                return _generate_fallback(model, input_ids, attention_mask, new_tokens, kivi, eos_ids)
            if cache is None:  # the batch-wide cache, allocated once, shaped after the first slice
                # (room for one decode step even when new_tokens = 1 takes none: from_cache needs it)
                cache = StaticKiviCache.from_cache(pre, max(max_len, T + 1), None if len(slices) == 1 else B)
            else:
                cache.load_rows(pre, a)
            del pre
    else:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the fp16 lean loop takes unpadded prompts (attention_mask all ones)")
        cache = StaticFp16Cache.for_model(model, B, max_len)
        for a, b in slices:  # each slice writes into its rows of the batch-wide buffers (views)
            part = cache if len(slices) == 1 else cache.rows(a, b)
            first[a:b] = _prefill(model, input_ids[a:b], None, part, prefill_chunk, part.prompt_done)
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
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device) if eos_ids else None
    done = torch.isin(first.view(B), eos) if eos is not None else None  # [B]: the row has had its eos
    n = new_tokens
    for i in range(1, new_tokens):
        # With eos_ids, one host read a step (none without): it makes the host wait for the step before
        # queueing the next replay, so the GPU idles for the loop's Python and one graph launch (tens of
        # us, estimated, not measured) per step of 6.5 ms (7B, batch 1, H200), under 1%; stopping is
        # what a command that stops at eos needs (a reply of 20 tokens under -n 512 runs 20 steps, not
        # 512). A finished row keeps decoding its own greedy continuation while others run (rows do not
        # interact), which `lengths` cuts off.
        if done is not None and bool(done.all()):
            n = i
            break
        stepper()
        tokens[:, i : i + 1] = ids
        if on_step is not None:
            on_step(i)
        if done is not None:
            done |= torch.isin(ids.view(B), eos)
    sync()
    t2 = time.perf_counter()
    tokens = tokens[:, :n]
    kinds = {f"flush={k[0][0]} slide={k[0][1]} {k[1]}": c for k, c in stepper.counts.items()}
    return LeanResult(tokens, cache, "cuda graphs" if graphs else "eager", t1 - t0, t2 - t1, kinds,
                      stepper.steady_steps, stepper.steady_ms_per_step(), eos_lengths(tokens, eos_ids))
