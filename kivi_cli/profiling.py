"""`kivi profile`'s measurements: the full-precision baseline and each KIVI setting, in this process, with
the same decode loop (`kivi_cli.decode.run`), on random prompts of `ctx - gen` tokens decoded `gen` steps
(greedy, no early stop): `ctx` tokens in all, of which the cache holds ctx - 1 at the end (the last
sampled token is never fed back).

Out of memory is a result, not a crash: the side is marked `oom`, everything it allocated is dropped
(the exception and its traceback too, since its frames hold tensors), the allocator cache is emptied,
and the next side runs.
"""

from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from kivi_cli.decode import Sampler, Session, new_cache, run, sync
from kivi_cli.max_batch import REFINE_PROBES, predict_largest, search_max_batch
from kivi_cli.metrics import (STATUS_ERROR, STATUS_OK, STATUS_OOM, Memory, NvmlPeakSampler, ProfileReport, Side,
                              Timing, cache_bytes, compute_ratios, environment)
from kivi_cli.models import Loaded
from kivi_cli.output import fmt_bytes

# Extra decode steps run under the torch profiler (CUDA) to measure GPU busy time per step.
KERNEL_PROFILE_STEPS = 3


class _Done(Exception):
    """Ends a lean-loop attempt early (its measurement is complete) through the same cleanup path."""


@dataclass(frozen=True)
class SideSpec:
    name: str
    kivi: object  # KiviConfig or None for the baseline


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc).lower() or "CUBLAS_STATUS_ALLOC_FAILED" in str(exc)))


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def random_prompt(loaded: Loaded, batch: int, length: int, seed: int) -> torch.Tensor:
    vocab = loaded.model.config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g).to(loaded.device)


def _lean_run(loaded: Loaded, spec: SideSpec, ids: torch.Tensor, gen: int, prefill_chunk: int,
              prefill_batch: Optional[int] = None):
    """The lean loop (kivi_core.engine): static caches, CUDA graphs on CUDA; both sides prefill
    `prefill_batch` rows at a time (None: automatic), so the prefill's transient is a slice's and the
    largest batch is bounded by the cache. Timing covers the steps from the first graph replay on (CUDA
    events; no host work between replays, so GPU time = wall)."""
    from kivi_core.engine import lean_generate

    res = lean_generate(loaded.model, ids, gen, spec.kivi, prefill_chunk=prefill_chunk, prefill_batch=prefill_batch)
    if res.steady_ms_per_step is not None:
        steps, wall = res.steady_steps, res.steady_ms_per_step * res.steady_steps / 1000
    else:
        steps, wall = gen - 1, res.decode_s
    timing = Timing(ids.shape[0], res.prefill_s, steps, wall, res.steady_ms_per_step)
    return res.cache, timing


def _attempt(loaded: Loaded, spec: SideSpec, batch: int, prompt_len: int, gen: int, seed: int,
             measure: bool, kernel_steps: int = 0, prefill_chunk: int = 0,
             loop: str = "lean", prefill_batch: Optional[int] = None) -> tuple[str, Optional[str], Optional[Memory], Optional[Timing]]:
    """One run; returns (status, error, memory, timing). With `measure`, memory is filled in whether the
    run finished or not (peaks up to the failure); `kernel_steps` > 0 adds a profiler pass (CUDA only)."""
    from kivi_core import analytic_cache_bytes

    device = loaded.device
    dims = loaded.dims
    free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    status, error, timing = STATUS_OK, None, None
    tokens, held, parts = prompt_len + gen - 1, None, None
    with NvmlPeakSampler(device) as nvml:
        try:
            ids = random_prompt(loaded, batch, prompt_len, seed)
            if loop == "lean" and gen > 1:
                cache, lean_timing = _lean_run(loaded, spec, ids, gen, prefill_chunk, prefill_batch)
                if measure:
                    held, parts = cache_bytes(cache)
                    timing = lean_timing
                raise _Done
            session = Session(loaded.model, new_cache(loaded.model, spec.kivi), device)
            result = run(session, ids, None, gen, Sampler(), stop_at_eos=False, prefill_chunk=prefill_chunk)
            if measure:
                tokens = session.tokens
                held, parts = cache_bytes(session.cache)
                timing = result.timing
                if kernel_steps and device.type == "cuda":
                    timing.gpu_busy_ms_per_step = kernel_ms_per_step(session, result.tokens[:, -1], kernel_steps)
            del session, ids, result
        except _Done:
            cache = ids = None  # noqa: F841 — drop the lean run's cache before emptying the allocator
        except Exception as exc:  # noqa: BLE001 — OOM and other failures are results of this side
            status = STATUS_OOM if is_oom(exc) else STATUS_ERROR
            error = " ".join(str(exc).split())[:300]
            del exc  # drop the traceback (its frames hold the tensors) before emptying the cache
    memory = None
    if measure:
        memory = Memory(analytic_cache_bytes(spec.kivi, batch, dims["kv_heads"], dims["head_dim"], dims["layers"],
                                             tokens, loaded.dtype), held, parts)
        if device.type == "cuda":
            memory.torch_peak_allocated_bytes = torch.cuda.max_memory_allocated(device)
            memory.nvml_peak_used_bytes = nvml.peak
    free(device)
    return status, error, memory, timing


def kernel_ms_per_step(session: Session, tok: torch.Tensor, steps: int) -> Optional[float]:
    """GPU busy time per decode step: the sum of kernel times over `steps` extra steps, from the torch
    profiler. CUDA events (Timing.gpu_ms_per_step) span the step on the stream, launch gaps included, so
    when the CPU is the bottleneck they read like wall time; this reads what the GPU actually worked."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the profiler warns about clearing events between cycles
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(steps):
                    tok = session.step(tok).argmax(dim=-1)
                sync(session.device)
            events = prof.key_averages()
        total_us = 0.0
        for evt in events:
            total_us += getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0.0)
        return total_us / 1000 / steps if total_us else None
    except Exception:  # noqa: BLE001 — a profiler problem leaves the row n/a, never fails the run
        return None


def measure(loaded: Loaded, spec: SideSpec, batch: int, prompt_len: int, gen: int, seed: int,
            prefill_chunk: int = 0, loop: str = "lean", prefill_batch: Optional[int] = None) -> Side:
    """Run the side twice with identical shapes and keep the second: the first pays the one-time costs
    (Triton compilation and autotuning per shape, cuBLAS heuristics, lazy imports; on the H200 the tiny
    preset's first KIVI run took 173 ms per step, the second 2.3). If the first runs out of memory, so
    would the second: it is reported as OOM straight away, with the peaks it reached."""
    status, error, memory, timing = _attempt(loaded, spec, batch, prompt_len, gen, seed, measure=True,
                                             prefill_chunk=prefill_chunk, loop=loop, prefill_batch=prefill_batch)
    if status == STATUS_OK:
        status, error, memory, timing = _attempt(loaded, spec, batch, prompt_len, gen, seed, measure=True,
                                                 kernel_steps=KERNEL_PROFILE_STEPS, prefill_chunk=prefill_chunk,
                                                 loop=loop, prefill_batch=prefill_batch)
    return Side(spec.name, _kivi_dict(spec.kivi), batch, status, error, memory, timing)


def find_max_batch(loaded: Loaded, spec: SideSpec, ctx: int, start: int, seed: int,
                   progress: Callable[[str], None], prefill_chunk: int = 0, loop: str = "lean",
                   prefill_batch: Optional[int] = None) -> int:
    """Largest batch whose prefill of ctx-2 tokens plus one decode step fits (0 if none). The cache then
    holds ctx-1 tokens, as at the end of a full run. `kivi_cli.max_batch.search_max_batch` picks the
    batches: doubling from `start` until one fails, then, on CUDA, the batch predicted from the torch
    peaks of the runs that fit, verified to one row (it fits, one more does not)."""
    device = loaded.device
    peaks: dict[int, int] = {}  # batch -> torch peak allocated of a run that fit
    row_bytes: dict[int, float] = {}  # batch -> cache bytes per row held by that run

    def fits(b: int) -> bool:
        status, error, memory, _ = _attempt(loaded, spec, b, max(1, ctx - 2), 2, seed, measure=True,
                                            prefill_chunk=prefill_chunk, loop=loop, prefill_batch=prefill_batch)
        progress(f"{spec.name}: batch {b} {'fits' if status == STATUS_OK else status}")
        if status == STATUS_ERROR:
            raise RuntimeError(f"{spec.name} at batch {b}: {error}")
        if status == STATUS_OK and memory is not None and memory.torch_peak_allocated_bytes:
            peaks[b] = memory.torch_peak_allocated_bytes
            if memory.cache_bytes:
                row_bytes[b] = memory.cache_bytes / b
        return status == STATUS_OK

    def predict() -> Optional[int]:
        if device.type != "cuda" or not peaks:
            return None
        # what torch could hold: _attempt emptied the allocator's cache, so reserved is what stays (weights)
        # and free is the rest. The peak allocated leaves out the allocator's fragmentation, so the guess
        # errs high, the cheaper side: a probe that fits runs the whole prefill, one that fails stops at
        # the failure (right after the first slice when the batch-wide cache itself does not fit).
        free_now, _ = torch.cuda.mem_get_info(device)
        usable = free_now + torch.cuda.memory_reserved(device)
        b = max(peaks)
        guess = predict_largest(peaks, usable, row_bytes.get(b))
        progress(f"{spec.name}: peak {fmt_bytes(peaks[b])} at batch {b}, {fmt_bytes(usable)} usable"
                 + ("" if guess is None else f": predicting batch {guess}"))
        return guess

    res = search_max_batch(fits, start, predict)
    if res.fails is None:
        progress(f"{spec.name}: batch {res.best} fits; the search stops there")
    elif res.exact:
        progress(f"{spec.name}: largest batch {res.best} (batch {res.fails} does not fit; {res.probes} probes)")
    else:
        progress(f"{spec.name}: largest batch found {res.best}, not exact: batch {res.fails} does not fit, the "
                 f"batches between were not tried (stopped after {REFINE_PROBES} probes past the bracket)")
    return res.best


def profile(loaded: Loaded, specs: list[SideSpec], batch: int, ctx: int, gen: int, seed: int,
            find_max: bool, progress: Callable[[str], None], prefill_chunk: int = 0,
            loop: str = "lean", safety_margin: float = 0.05, prefill_batch: Optional[int] = None) -> ProfileReport:
    """Each side in turn (`find_max`: search its largest batch, then measure a `safety_margin` below it).
    The lean loop prefills `prefill_batch` rows at a time on both sides (None: automatic, see
    `kivi_core.engine.prefill_rows`), so neither side's largest batch is set by its prefill."""
    prompt_len = ctx - gen
    sides: list[Side] = []
    for spec in specs:
        if find_max:
            progress(f"{spec.name}: searching the largest batch at ctx {ctx}")
            best = find_max_batch(loaded, spec, ctx, batch, seed, progress, prefill_chunk, loop, prefill_batch)
            side = None
            # the search runs 2 decode steps; the full run may fragment more: step down until it fits
            # measure a stated margin below the largest batch that fits: a long-running server keeps
            # headroom for fragmentation and other allocations
            for b in _descending(max(1, int(best * (1 - safety_margin))) if best else 0):
                progress(f"{spec.name}: measuring at batch {b}")
                side = measure(loaded, spec, b, prompt_len, gen, seed, prefill_chunk, loop, prefill_batch)
                if side.status != STATUS_OOM:
                    break
            if side is None:
                side = measure(loaded, spec, batch, prompt_len, gen, seed, prefill_chunk, loop, prefill_batch)
            side.max_batch = best
        else:
            progress(f"{spec.name}: batch {batch}, prompt {prompt_len} + {gen} new tokens")
            side = measure(loaded, spec, batch, prompt_len, gen, seed, prefill_chunk, loop, prefill_batch)
        sides.append(side)
    base = sides[0]
    for side in sides[1:]:
        side.ratios = compute_ratios(base, side)
    return ProfileReport(
        model=loaded.name, device=str(loaded.device), dtype=str(loaded.dtype).removeprefix("torch."), batch=batch,
        ctx=ctx, prompt_len=prompt_len, gen=gen, sides=sides, environment=environment(loaded.device),
        find_max_batch=find_max, prefill_chunk=prefill_chunk, loop=loop,
        prefill_batch=prefill_batch if loop == "lean" else 0,
        safety_margin=safety_margin if find_max else None,
    )


def _descending(best: int) -> list[int]:
    if best <= 0:
        return []
    out = [best]
    for _ in range(3):
        nxt = max(1, int(out[-1] * 0.95))
        if nxt == out[-1]:
            break
        out.append(nxt)
    return out


def _kivi_dict(cfg) -> Optional[dict]:
    if cfg is None:
        return None
    return {"k_bits": cfg.k_bits, "v_bits": cfg.v_bits, "group_size": cfg.group_size,
            "residual_length": cfg.residual_length, "backend": cfg.backend}
