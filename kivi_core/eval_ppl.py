"""Decode-mode perplexity: every scored token is predicted by a decode step that attends to the cache.

A plain forward pass over a text never reads a decode-time cache, so its perplexity says nothing about a
KV-cache scheme. Here, for each window of T consecutive tokens x[0..T-1]:

    prefill x[0..P-1] into a fresh cache          (its logits are not scored: prefill attention is exact)
    for i = P .. T-2: feed x[i] alone, score log p(x[i+1] | x[0..i])      (teacher forcing)

so each window scores T - P - 1 tokens, x[P+1..T-1] (8 windows of T=1024, P=512: 8 x 511 = 4,088), and
each of them is predicted by a step whose attention reads the P + (i - P) cached tokens. With a full
precision cache this equals one plain forward over the window scored at the same positions
(`plain_forward_ppl`), which the tests check: any difference under KIVI is the cache's.

Windows are consecutive and non-overlapping from the start of the token stream, and run as one batch
(`batch_size` windows at a time); all windows have the same length, so there is no padding.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .compat import cache_kwarg
from .eval_settings import Setting, cache_bytes

Progress = Callable[[int, int], None]  # (steps done, steps total)


@dataclass(frozen=True, slots=True)
class PplResult:
    setting: dict  # Setting.as_dict()
    ppl: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens_scored: int
    windows: int
    window: int
    prefill: int
    cache_bytes: int | None  # bytes held by one batch's cache after the last step (None: simulated)
    cache_tokens: int  # tokens in that cache (batch x length)
    seconds: float

    def as_dict(self) -> dict:
        return {
            "setting": self.setting, "ppl": self.ppl, "nll": self.nll, "tokens_scored": self.tokens_scored,
            "windows": self.windows, "window": self.window, "prefill": self.prefill,
            "cache_bytes": self.cache_bytes, "cache_tokens": self.cache_tokens, "seconds": self.seconds,
        }


def check_protocol(n_tokens: int, windows: int, window: int, prefill: int) -> None:
    """ValueError naming the bad value if the windows do not fit the text or the prefill does not fit a window."""
    if windows < 1:
        raise ValueError(f"windows={windows}: need at least 1.")
    if not 1 <= prefill <= window - 2:
        raise ValueError(f"prefill={prefill} must be between 1 and window - 2 = {window - 2} (window={window}).")
    if windows * window > n_tokens:
        raise ValueError(
            f"{windows} windows of {window} tokens need {windows * window} tokens; the text has {n_tokens}: "
            f"use fewer/shorter windows or a longer text."
        )


def make_windows(token_ids: torch.Tensor, windows: int, window: int, prefill: int) -> torch.Tensor:
    """[windows, window] consecutive non-overlapping windows from the start of a 1-D token stream."""
    token_ids = token_ids.reshape(-1)
    check_protocol(token_ids.numel(), windows, window, prefill)
    return token_ids[: windows * window].view(windows, window)


@torch.inference_mode()
def decode_nll(model, batch: torch.Tensor, setting: Setting, prefill: int, progress: Progress | None = None):
    """Sum of NLL (fp64) over the scored tokens of `batch` [B, T], and the cache after the last step."""
    B, T = batch.shape
    device = next(model.parameters()).device
    batch = batch.to(device)
    kw = cache_kwarg(model)
    cache = setting.make_cache(model)
    # Prefill: only the cache matters, so skip the [B, P, vocab] logits.
    model(input_ids=batch[:, :prefill], use_cache=True, logits_to_keep=1, **{kw: cache})
    nll = torch.zeros((), dtype=torch.float64, device=device)
    steps = T - 1 - prefill
    for s, i in enumerate(range(prefill, T - 1)):
        out = model(input_ids=batch[:, i : i + 1], use_cache=True, **{kw: cache})
        logits = out.logits[:, -1].float()  # [B, vocab]
        nll += F.cross_entropy(logits, batch[:, i + 1], reduction="sum").double()
        if progress is not None:
            progress(s + 1, steps)
    return nll.item(), cache


def decode_ppl(
    model,
    token_ids: torch.Tensor,
    setting: Setting,
    windows: int = 8,
    window: int = 1024,
    prefill: int = 512,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> PplResult:
    """Decode-mode perplexity of `setting` over `windows` windows of `window` tokens (see module docstring).

    batch_size: windows per batch (default: all at once).
    """
    wins = make_windows(token_ids, windows, window, prefill)
    bs = batch_size or windows
    t0 = time.perf_counter()
    total, done, n_steps = 0.0, 0, (window - 1 - prefill) * math.ceil(windows / bs)
    cache = None
    for start in range(0, windows, bs):
        offset = done

        def step(s: int, _total: int, offset=offset) -> None:
            if progress is not None:
                progress(offset + s, n_steps)

        nll, cache = decode_nll(model, wins[start : start + bs], setting, prefill, step)
        total += nll
        done += window - 1 - prefill
    n = windows * (window - 1 - prefill)
    mem = cache_bytes(cache)
    return PplResult(
        setting=setting.as_dict(),
        ppl=math.exp(total / n),
        nll=total / n,
        tokens_scored=n,
        windows=windows,
        window=window,
        prefill=prefill,
        cache_bytes=None if mem is None else mem.total,
        cache_tokens=min(bs, windows - (math.ceil(windows / bs) - 1) * bs) * (window - 1),
        seconds=time.perf_counter() - t0,
    )


@torch.inference_mode()
def plain_forward_ppl(model, token_ids: torch.Tensor, windows: int, window: int, prefill: int) -> float:
    """Perplexity from one ordinary forward per window (no cache), scored at exactly the decode-mode positions:
    targets x[P+1..T-1]. Equal to `decode_ppl` with a full-precision cache (up to float rounding)."""
    wins = make_windows(token_ids, windows, window, prefill).to(next(model.parameters()).device)
    logits = model(input_ids=wins, use_cache=False).logits.float()  # [W, T, vocab]
    pred = logits[:, prefill : window - 1]  # logits at positions P..T-2 predict x[P+1..T-1]
    nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), wins[:, prefill + 1 :].reshape(-1), reduction="sum")
    return math.exp(nll.double().item() / pred.shape[0] / pred.shape[1])


def stderr_progress(label: str) -> Progress:
    """A minimal progress line on stderr (used when no richer progress display is supplied)."""
    state = {"last": -1.0}

    def update(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - state["last"] > 2.0:
            state["last"] = now
            end = "\n" if done == total else "\r"
            print(f"  {label}: {done}/{total} steps", end=end, file=sys.stderr, flush=True)

    return update
